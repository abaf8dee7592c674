"""SoftmaxAttention: causal kernel == masked definition, cache carry, padding, gradients."""

import pytest
import torch

from neural_attention_memory.layers import SoftmaxAttention, SoftmaxAttentionState
from neural_attention_memory.layers.softmax import causal_softmax_attention

DT = torch.float64


def _reference(q, k, v, mask):
    """Explicit causal softmax over non-padded keys, zero output at padded queries."""
    d = q.shape[-1]
    s = torch.einsum("bthd,bshd->bhts", q, k) / d**0.5
    T = q.shape[1]
    allowed = torch.ones(T, T, dtype=torch.bool).tril() & ~mask[:, None, None, :]
    s = s.masked_fill(~allowed, float("-inf"))
    out = torch.einsum("bhts,bshv->bthv", s.softmax(-1).nan_to_num(0.0), v)
    return out.masked_fill(mask[:, :, None, None], 0.0)


def test_causal_kernel_matches_definition_with_padding_and_gradients():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 9, 2, 4, generator=g, dtype=DT, requires_grad=True) for _ in "qkv")
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1, 6:] = True
    out, cache = causal_softmax_attention(q, k, v, None, mask)
    ref = _reference(q, k, v, mask)
    torch.testing.assert_close(out, ref)
    assert cache.keys.shape == (2, 2, 9, 4) and torch.equal(cache.padding, mask)
    cot = torch.randn_like(out)
    ga = torch.autograd.grad((out * cot).sum(), (q, k, v))
    gb = torch.autograd.grad((ref * cot).sum(), (q, k, v))
    for a, b in zip(ga, gb, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def test_cache_grows_by_one_per_step_and_errors():
    torch.manual_seed(0)
    m = SoftmaxAttention(8, 2, causal=True).to(DT)
    s = m.init_state(3)
    assert isinstance(s, SoftmaxAttentionState) and s.keys.shape == (3, 2, 0, 4)
    for t in range(4):
        _, s = m.step(torch.randn(3, 8, dtype=DT), s)
        assert s.keys.shape[2] == t + 1
    with pytest.raises(TypeError, match="state: expected a SoftmaxAttentionState"):
        m(torch.randn(3, 2, 8, dtype=DT), tuple(s))
    with pytest.raises(ValueError, match="attn_dropout: expected a float in"):
        SoftmaxAttention(8, 2, attn_dropout=1.5)
    with pytest.raises(NotImplementedError, match="SoftmaxAttention"):
        SoftmaxAttention(8, 2).step(torch.randn(3, 8))
