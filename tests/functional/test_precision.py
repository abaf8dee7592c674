"""Half precision: bfloat16/float16 inputs accumulate in float32 in every NAM attention form."""

import pytest
import torch

import neural_attention_memory.functional as F

from ._helpers import make_inputs

HALF = [torch.bfloat16, torch.float16]


def _errors(fn, args, ref_grads, ref_out, ref_state):
    leaves = [a.detach().clone().requires_grad_() for a in args]
    out, state = fn(*leaves[:6], initial_state=leaves[6], output_final_state=True)
    g = torch.Generator().manual_seed(5)
    cot = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * cot).sum() + state.double().sum(), leaves)
    return (
        (out.double() - ref_out).abs().max().item(),
        (state.double() - ref_state).abs().max().item(),
        max((a.double() - b).abs().max().item() for a, b in zip(grads, ref_grads, strict=True)),
        out.dtype,
        state.dtype,
    )


@pytest.mark.parametrize("dtype", HALF)
def test_half_chunk_is_no_worse_than_recurrent_against_float64(dtype):
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=90, H=2, d_k=8, d_v=6, requires_grad=False)
    args = [x.to(dtype) for x in (q, k, v, p_w, p_e, p_r)] + [S0.float()]
    # float64 reference on the same (rounded) inputs, with the same cotangents
    args64 = [a.double().requires_grad_() for a in args]
    out, state = F.naive_causal_nam_attention(
        *args64[:6], initial_state=args64[6], output_final_state=True
    )
    g = torch.Generator().manual_seed(5)
    cot = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ref_grads = torch.autograd.grad((out * cot).sum() + state.sum(), args64)
    ref = (ref_grads, out.detach(), state.detach())
    chunk = _errors(F.chunk_causal_nam_attention, args, *ref)
    rec = _errors(F.recurrent_causal_nam_attention, args, *ref)
    assert chunk[3] == dtype and chunk[4] == torch.float32  # output in q's dtype, state float32
    for c, r in zip(chunk[:3], rec[:3], strict=True):
        assert c <= 1.01 * r + 1e-6, (chunk, rec)
    # float32 accumulation: the state (never rounded to half) is accurate to float32 level.
    assert chunk[1] < 1e-4
    # outputs: only the final rounding to the half dtype is left
    assert chunk[0] <= 2 * torch.finfo(dtype).eps * out.abs().max().item()


@pytest.mark.parametrize("dtype", HALF)
def test_half_non_causal_accumulates_in_float32(dtype):
    q, k, v, p_w, _, p_r, _ = make_inputs(B=2, T=500, H=2, d_k=8, d_v=6, requires_grad=False)
    args = [x.to(dtype) for x in (q, k, v, p_w, p_r)]
    out = F.nam_attention(*args)
    ref = F.nam_attention(*(a.double() for a in args))
    assert out.dtype == dtype
    err = (out.double() - ref).abs().max().item()
    assert err <= 2 * torch.finfo(dtype).eps * ref.abs().max().item()


def test_half_state_carries_across_segments_in_float32():
    q, k, v, p_w, p_e, p_r, _ = make_inputs(B=1, T=60, H=2, d_k=8, d_v=6, requires_grad=False)
    args = [x.bfloat16() for x in (q, k, v, p_w, p_e, p_r)]
    full, S = F.chunk_causal_nam_attention(*args, output_final_state=True, chunk_size=8)
    a, Sa = F.chunk_causal_nam_attention(*(x[:, :25] for x in args), output_final_state=True)
    b, Sb = F.chunk_causal_nam_attention(
        *(x[:, 25:] for x in args), initial_state=Sa, output_final_state=True, chunk_size=8
    )
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    torch.testing.assert_close(Sb, S)
    with pytest.raises(TypeError, match=r"initial_state: expected dtype torch.bfloat16 or"):
        F.chunk_causal_nam_attention(*args, initial_state=Sa.double())
