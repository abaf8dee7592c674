"""NAMAttention: step == forward, state carry, padding, modes and argument checks."""

import pytest
import torch

from neural_attention_memory.layers import NAMAttention, NAMAttentionState

DT = torch.float64


def layer(**kw):
    torch.manual_seed(0)
    return NAMAttention(16, 4, **kw).to(DT)


@pytest.mark.parametrize("gates", [(), ("write", "erase", "read"), ("erase",)])
def test_step_equals_forward(gates):
    m = layer(causal=True, gates=gates)
    x = torch.randn(2, 23, 16, dtype=DT)
    full, state = m(x)
    s = None
    outs = []
    for t in range(23):
        o, s = m.step(x[:, t], s)
        outs.append(o)
    torch.testing.assert_close(torch.stack(outs, 1), full)
    torch.testing.assert_close(s, state)


def test_modes_agree_including_gradients():
    m = layer(causal=True, gates=("write", "erase", "read"))
    x = torch.randn(2, 40, 16, dtype=DT)
    ref = None
    for mode in ("naive", "recurrent", "chunk", "auto"):
        m.zero_grad()
        out, _ = m(x, mode=mode)
        out.pow(2).sum().backward()
        got = (out.detach(), [p.grad.clone() for p in m.parameters()])
        if ref is None:
            ref = got
        else:
            torch.testing.assert_close(got[0], ref[0])
            for a, b in zip(got[1], ref[1], strict=True):
                torch.testing.assert_close(a, b)


def test_state_carry_equals_one_pass():
    m = layer(causal=True, gates=("write", "erase"))
    x = torch.randn(3, 50, 16, dtype=DT)
    full, state = m(x)
    a, s = m(x[:, :20])
    b, s = m(x[:, 20:], s)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    torch.testing.assert_close(s, state)
    assert torch.equal(m.init_state(3).memory, torch.zeros(3, 4, 4, 4, dtype=DT))


@pytest.mark.parametrize("causal", [False, True])
def test_padded_batch_equals_each_alone(causal):
    m = layer(causal=causal, gates=("write", "read"))
    x = torch.randn(2, 12, 16, dtype=DT)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[1, 5:] = True
    out, _ = m(x, padding_mask=mask)
    torch.testing.assert_close(out[1:, :5], m(x[1:, :5])[0])
    torch.testing.assert_close(out[:1], m(x[:1])[0])
    assert torch.all(out[mask] == 0)


def test_non_causal_output_is_permutation_equivariant():
    m = layer()
    x = torch.randn(1, 9, 16, dtype=DT)
    perm = torch.randperm(9)
    torch.testing.assert_close(m(x)[0][:, perm], m(x[:, perm])[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"embed_dim": 10, "num_heads": 4}, r"num_heads: expected a divisor of embed_dim=10"),
        ({"embed_dim": 16, "num_heads": 0}, r"num_heads: expected a positive int"),
        ({"embed_dim": 16, "num_heads": 4, "gates": ("erase",)}, r"'erase' needs causal=True"),
        (
            {"embed_dim": 16, "num_heads": 4, "gates": ("forget",)},
            r"gates: expected distinct names",
        ),
        ({"embed_dim": 16, "num_heads": 4, "mode": "fast"}, r"mode: expected one of"),
        (
            {"embed_dim": 16, "num_heads": 4, "dropout": 1.0},
            r"dropout: expected a float in \[0, 1\)",
        ),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NAMAttention(**kwargs)


def test_call_errors():
    m = NAMAttention(16, 4)
    with pytest.raises(
        ValueError, match=r"x: expected shape \[B, T, E\] with E = 16, got \(2, 5, 8\)"
    ):
        m(torch.randn(2, 5, 8))
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor, got torch.int64"):
        m(torch.ones(2, 5, 16, dtype=torch.long))
    with pytest.raises(ValueError, match=r"only causal NAMAttention carries a state"):
        m(torch.randn(2, 5, 16), NAMAttentionState(torch.zeros(2, 4, 4, 4)))
    with pytest.raises(NotImplementedError, match=r"causal=False\) cannot step"):
        m.step(torch.randn(2, 16))
    c = NAMAttention(16, 4, causal=True)
    with pytest.raises(ValueError, match=r"x_t: expected shape \[B, E\]"):
        c.step(torch.randn(2, 1, 16))
    with pytest.raises(TypeError, match=r"state: expected a NAMAttentionState, got Tensor"):
        c(torch.randn(2, 5, 16), torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"state: expected memory of shape \(2, 4, 4, 4\)"):
        c(torch.randn(2, 5, 16), NAMAttentionState(torch.zeros(3, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"x: expected a non-empty sequence"):
        c(torch.randn(2, 0, 16))


def test_tied_erase_equals_erase_gate_set_to_write_gate():
    torch.manual_seed(0)
    tied = NAMAttention(16, 4, causal=True, gates=("write", "read"), tie_erase=True).to(DT)
    x = torch.randn(2, 13, 16, dtype=DT)
    out, state = tied(x)
    # Reference: the naive kernel with p_e = p_w given explicitly.
    from neural_attention_memory.functional import naive_causal_nam_attention

    B, T, H, d = 2, 13, 4, 4
    q, k, v = tied.qkv_proj(x).view(B, T, 3, H, d).unbind(2)
    p_w, p_r = torch.sigmoid(tied.gate_proj(x)).view(B, T, 2, H).unbind(2)
    ref, mem = naive_causal_nam_attention(q, k, v, p_w, p_w, p_r, output_final_state=True)
    torch.testing.assert_close(out, tied.out_proj(ref.reshape(B, T, H * d)))
    torch.testing.assert_close(state.memory, mem)
    with pytest.raises(ValueError, match="tie_erase: needs causal=True"):
        NAMAttention(16, 4, gates=("write",), tie_erase=True)
