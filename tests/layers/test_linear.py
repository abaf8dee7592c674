"""LinearAttention: chunk kernel == token loop (outputs, states, all gradients), definition, checks."""

import pytest
import torch
import torch.nn.functional as F

from neural_attention_memory.layers import LinearAttention, LinearAttentionState
from neural_attention_memory.layers.linear import (
    chunk_causal_linear_attention,
    naive_causal_linear_attention,
)

DT = torch.float64


def _inputs(B=2, T=11, H=2, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, H, d, generator=g, dtype=DT, requires_grad=True) for _ in range(3)]


def test_naive_matches_quadratic_definition():
    q, k, v = _inputs()
    out, _ = naive_causal_linear_attention(q, k, v, eps=0.0)
    s = torch.einsum("bthd,bshd->bhts", F.elu(q) + 1, F.elu(k) + 1).tril()
    ref = torch.einsum("bhts,bshv->bthv", s / s.sum(-1, keepdim=True), v)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize(("T", "C"), [(11, 4), (8, 8), (5, 64), (13, 1)])
def test_chunk_equals_naive_outputs_states_and_gradients(T, C):
    q, k, v = _inputs(T=T)
    g = torch.Generator().manual_seed(1)
    s0 = LinearAttentionState(
        torch.rand(2, 2, 3, 3, generator=g, dtype=DT, requires_grad=True),
        torch.rand(2, 2, 3, generator=g, dtype=DT, requires_grad=True),
    )
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[1, T // 2 :] = True
    inputs = [q, k, v, *s0]
    ref, ref_s = naive_causal_linear_attention(q, k, v, s0, mask)
    out, st = chunk_causal_linear_attention(q, k, v, s0, mask, chunk_size=C)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(st.kv, ref_s.kv)
    torch.testing.assert_close(st.z, ref_s.z)
    cots = [torch.randn_like(t) for t in (ref, ref_s.kv, ref_s.z)]

    def grads(o, s):
        loss = sum((a * c).sum() for a, c in zip((o, s.kv, s.z), cots, strict=True))
        return torch.autograd.grad(loss, inputs)

    for a, b in zip(grads(out, st), grads(ref, ref_s), strict=True):
        torch.testing.assert_close(a, b)


def test_chunk_gradcheck_float64():
    q, k, v = _inputs(B=1, T=5, H=1, d=2)
    torch.autograd.gradcheck(
        lambda q, k, v: chunk_causal_linear_attention(q, k, v, chunk_size=2)[0], (q, k, v)
    )


def test_layer_modes_agree_and_errors():
    torch.manual_seed(0)
    m = LinearAttention(8, 2, causal=True, chunk_size=3).to(DT)
    x = torch.randn(2, 10, 8, dtype=DT)
    a, sa = m(x)
    b, sb = m(x, mode="naive")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(sa.kv, sb.kv)
    with pytest.raises(ValueError, match="mode: expected 'chunk' or 'naive'"):
        LinearAttention(8, 2, mode="fast")
    with pytest.raises(TypeError, match="state: expected a LinearAttentionState, got tuple"):
        m(x, (sa.kv, sa.z))
    with pytest.raises(ValueError, match="state: expected kv"):
        m(x, LinearAttentionState(sa.kv[:1], sa.z[:1]))
    with pytest.raises(NotImplementedError, match="LinearAttention"):
        LinearAttention(8, 2).step(x[:, 0])
