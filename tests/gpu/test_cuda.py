"""CUDA checks (skipped without a CUDA device; ``scripts/gpu_check.sh`` runs them).

The chunk form on CUDA, through fla's Triton kernels when fla is importable and through the
pure-PyTorch fallback (``NAM_DISABLE_FLA=1``), against the naive loop in float64 on the CPU:
outputs, final state and all gradients; and NAMAttention under CUDA autocast.
"""

import pytest
import torch

import neural_attention_memory.functional as F
from neural_attention_memory.functional import _fla
from neural_attention_memory.layers import NAMAttention

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TOL = {torch.float64: 1e-9, torch.float32: 2e-3, torch.bfloat16: 3e-2}


def _inputs(gates: str, T: int = 200):
    g = torch.Generator().manual_seed(0)
    B, H, d_k, d_v = 2, 3, 32, 32
    q, k, v = (torch.randn(B, T, H, d, generator=g, dtype=torch.float64) for d in (d_k, d_k, d_v))
    w, e, r = (torch.rand(B, T, H, generator=g, dtype=torch.float64) for _ in range(3))
    S0 = torch.randn(B, H, d_v, d_k, generator=g, dtype=torch.float64) * 0.1
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[1, T - 37 :] = True
    e = {"separate": e, "tied": w, "none": None}[gates]
    return [q, k, v, w, e, r, S0], mask


def _run(args, mask, device, dtype, tied):
    leaves = []
    moved = []
    for i, x in enumerate(args):
        if x is None or (tied and i == 4):
            moved.append(None)
            continue
        y = x.to(device=device, dtype=dtype if i < 6 else torch.float32).requires_grad_()
        leaves.append(y)
        moved.append(y)
    if tied:
        moved[4] = moved[3]  # the same tensor: the delta rule
    q, k, v, w, e, r, S0 = moved
    out, S = F.chunk_causal_nam_attention(
        q, k, v, w, e, r, initial_state=S0, output_final_state=True,
        key_padding_mask=mask.to(device),
    )  # fmt: skip
    g = torch.Generator().manual_seed(1)
    cot = torch.randn(out.shape, generator=g, dtype=torch.float64)
    loss = (out.double() * cot.to(device)).sum() + S.double().sum()
    grads = torch.autograd.grad(loss, leaves)
    return [t.detach().double().cpu() for t in (out, S, *grads)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("gates", ["separate", "tied", "none"])
@pytest.mark.parametrize("path", ["fla", "pytorch"])
def test_cuda_chunk_matches_the_naive_loop(path, gates, dtype, monkeypatch):
    if path == "fla" and _fla.fla_kernels() is None:
        pytest.skip("fla (flash-linear-attention with triton) not importable")
    if path == "fla" and dtype == torch.float64:
        pytest.skip("fla's Triton kernels do not take float64")
    monkeypatch.setenv("NAM_DISABLE_FLA", "1" if path == "pytorch" else "0")
    args, mask = _inputs(gates)
    tied = gates == "tied"
    rounded = [None if x is None else x.to(dtype).double() for x in args[:6]] + [args[6]]
    if tied:
        rounded[4] = rounded[3]
    got = _run(args, mask, "cuda", dtype, tied)
    ref = _run(rounded, mask, "cpu", torch.float64, tied)
    for a, b in zip(got, ref, strict=True):
        err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-12)
        assert err < TOL[dtype], (path, gates, dtype, err)


def test_layer_under_cuda_autocast_keeps_the_chunk_form():
    torch.manual_seed(0)
    m = NAMAttention(64, 4, causal=True, gates=("write", "erase", "read")).cuda()
    x = torch.randn(2, 300, 64, device="cuda")
    ref, _ = m(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, state = m(x)
        out.float().square().sum().backward()
    assert out.dtype == torch.bfloat16 and state.memory.dtype == torch.float32
    assert (out.float() - ref).abs().max() < 0.03 * ref.abs().max()
