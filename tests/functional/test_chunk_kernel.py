"""The chunk form's fused C block preparation (``_chunk_kernel.c``) against its PyTorch twins."""

import pytest
import torch

import neural_attention_memory.functional as F
from neural_attention_memory.functional import _chunk_kernel
from neural_attention_memory.functional import chunk as chunk_mod

from ._helpers import grads_with_cotangents, make_inputs

kernel = _chunk_kernel.get()
needs_kernel = pytest.mark.skipif(kernel is None, reason="no C compiler: chunk kernel unavailable")


def _run(inputs, mask=None, C=8):
    q, k, v, p_w, p_e, p_r, S0 = inputs
    out, state = F.chunk_causal_nam_attention(
        q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True,
        key_padding_mask=mask, chunk_size=C,
    )  # fmt: skip
    used = [q, k, v, p_w, p_e, p_r, S0]
    return [out, state, *grads_with_cotangents(out, state, used)]


def _float_inputs(gates, T=45, seed=0):
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=T, H=2, d_k=6, d_v=5, seed=seed)
    p_w, p_e, p_r = (p if on else None for p, on in zip((p_w, p_e, p_r), gates, strict=True))
    return tuple(
        None if x is None else x.detach().float().requires_grad_()
        for x in (q, k, v, p_w, p_e, p_r, S0)
    )


def _same(a, b, atol=2e-5):
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, atol=atol, rtol=1e-4)


@needs_kernel
@pytest.mark.parametrize("gates", [(True, True, True), (True, False, True), (False, True, False)])
def test_kernel_blocks_equal_pytorch_blocks(gates, monkeypatch):
    # Several blocks, a ragged last chunk, padding in one block (that block takes the
    # sanitising path, the others the kernel): outputs, final state and all gradients against
    # the same run with the PyTorch fast path, and against the naive twin in float64.
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 2 * 2 * 8)
    inputs = _float_inputs(gates)
    mask = torch.zeros(2, 45, dtype=torch.bool)
    mask[1, 20] = True
    calls = []
    real = kernel.prep
    monkeypatch.setattr(kernel, "prep", lambda *a: calls.append(1) or real(*a))
    fused = _run(inputs, mask)
    assert len(calls) >= 4  # the kernel did run, in both the forward and the backward
    monkeypatch.setattr(_chunk_kernel, "get", lambda: None)
    _same(fused, _run(inputs, mask))
    q, k, v, p_w, p_e, p_r, S0 = inputs  # the naive twin in float32: the same cotangents
    out, st = F.naive_causal_nam_attention(
        q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True, key_padding_mask=mask
    )
    ref = [out, st, *grads_with_cotangents(out, st, list(inputs))]
    _same(fused, ref, atol=1e-4)


@needs_kernel
def test_kernel_strided_inputs_and_declined_rows(monkeypatch):
    # q, k, v as strided views (unit last stride) and non-contiguous gates; a huge key whose
    # squares overflow float32 and a NaN value make the kernel decline that block (exact
    # sanitising path), with the outputs before the NaN untouched.
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, 40, 3, 2, 8, generator=g)
    q, k = base[..., 0, :], base[..., 1, :]
    v = torch.randn(2, 3, 40, 8, generator=g).transpose(1, 2)
    w, e, r = (torch.rand(2, 3, 40, generator=g).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous() and not v.is_contiguous() and not w.is_contiguous()
    args = (q, k, v, w, e, r)
    fused = F.chunk_causal_nam_attention(*args, chunk_size=16, output_final_state=True)
    with monkeypatch.context() as m:
        m.setattr(_chunk_kernel, "get", lambda: None)
        plain = F.chunk_causal_nam_attention(*args, chunk_size=16, output_final_state=True)
    _same(fused, plain)
    big = k.clone()
    big[0, 5, 1] = 1e30
    assert not kernel.prep(q, big, v, w, e, r, 0, 1, 16, 1e-6, _buffers(q, v))
    nan_v = v.clone()
    nan_v[1, 30, 2, 0] = float("nan")
    assert not kernel.prep(q, k, nan_v, w, e, r, 1, 1, 16, 1e-6, _buffers(q, v))
    out, _ = F.chunk_causal_nam_attention(q, big, nan_v, w, e, r, chunk_size=16)
    ref, _ = F.naive_causal_nam_attention(*(x.double() for x in (q, big, nan_v, w, e, r)))
    torch.testing.assert_close(out[1, :30].double(), ref[1, :30], atol=1e-4, rtol=1e-4)
    assert torch.isnan(out[1, 30:, 2]).all() and torch.isfinite(out[0]).all()


def _buffers(q, v):
    B, _, H, d = q.shape
    base = (1, B, H, 16)
    out = {n: torch.empty(base + (d,)) for n in ("q", "k")}
    out["x"] = torch.empty(base + (v.shape[-1] + d,))
    for n in ("gq", "bq", "gk", "bk", "w", "e", "r"):
        out[n] = torch.empty(base)
    return out


def test_kernel_can_be_disabled(monkeypatch):
    monkeypatch.setenv("NAM_CHUNK_KERNEL", "0")
    assert _chunk_kernel.get() is None
