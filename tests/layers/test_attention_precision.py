"""NAMAttention under autocast keeps the chunk form and accumulates in float32."""

import torch

from neural_attention_memory.layers import NAMAttention
from neural_attention_memory.layers import attention as attention_mod


def test_autocast_bfloat16_keeps_the_chunk_form(monkeypatch):
    torch.manual_seed(0)
    m = NAMAttention(32, 4, causal=True, gates=("write", "erase", "read"))
    x = torch.randn(2, 100, 32)
    ref, ref_state = m(x)
    used = []
    chunk = attention_mod._CAUSAL_FNS["chunk"]

    def spy(*a, **kw):
        used.append(a[0].dtype)
        return chunk(*a, **kw)

    monkeypatch.setitem(attention_mod._CAUSAL_FNS, "chunk", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = m(x)
        out.float().square().sum().backward()
    assert used == [torch.bfloat16]  # the fast form ran, on bfloat16 inputs
    assert out.dtype == torch.bfloat16 and state.memory.dtype == torch.float32
    assert (out.float() - ref).abs().max() < 0.02 * ref.abs().max()
    assert (state.memory - ref_state.memory).abs().max() < 0.02 * ref_state.memory.abs().max()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
