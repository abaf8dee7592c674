"""No silent wrong results: non-finite padding, non-finite tokens, double backward, meta, unit_norm."""

import pytest
import torch

import neural_attention_memory.functional as F
from neural_attention_memory.functional import chunk as chunk_mod

from ._helpers import DT, grads_with_cotangents, make_inputs

CAUSAL = {
    "naive": F.naive_causal_nam_attention,
    "recurrent": F.recurrent_causal_nam_attention,
    "chunk8": lambda *a, **kw: F.chunk_causal_nam_attention(*a, chunk_size=8, **kw),
}


def _causal(fn, inputs, mask=None):
    q, k, v, p_w, p_e, p_r, S0 = inputs
    out, state = fn(
        q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True, key_padding_mask=mask
    )
    return out, state, grads_with_cotangents(out, state, [q, k, v, p_w, p_e, p_r, S0])


def _poison(x: torch.Tensor, where, value: float) -> torch.Tensor:
    y = x.detach().clone()
    y[where] = value
    return y.requires_grad_()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("form", sorted(CAUSAL))
def test_non_finite_values_at_padding_change_nothing(form, value, monkeypatch):
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 1)  # several blocks
    clean = make_inputs(B=2, T=20, H=2, d_k=4, d_v=3)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[0, 3:6] = True  # inside a chunk
    mask[1, 15:] = True  # the tail
    pad = mask.nonzero(as_tuple=True)
    dirty = [_poison(x, pad, value) for x in clean[:6]] + [clean[6]]
    ref = _causal(CAUSAL[form], clean, mask)
    got = _causal(CAUSAL[form], dirty, mask)
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])
    assert torch.all(got[0][pad] == 0)
    for a, b in zip(got[2], ref[2], strict=True):
        torch.testing.assert_close(a, b)  # finite, and zero at padding
    for g in got[2][:6]:
        assert torch.all(g[pad] == 0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("fn", [F.nam_attention, F.naive_nam_attention])
def test_non_causal_non_finite_padding_changes_nothing(fn, value):
    q, k, v, p_w, _, p_r, _ = make_inputs(B=2, T=12, gates=True)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, 7:] = True
    pad = mask.nonzero(as_tuple=True)
    dirty = [_poison(x, pad, value) for x in (q, k, v, p_w, p_r)]
    ref = fn(q, k, v, p_w, p_r, key_padding_mask=mask)
    got = fn(*dirty, key_padding_mask=mask)
    torch.testing.assert_close(got, ref)
    g_ref = grads_with_cotangents(ref, None, [q, k, v, p_w, p_r])
    g_got = grads_with_cotangents(got, None, dirty)
    for a, b in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("which", ["k", "v"])  # NaN gates are rejected up front
@pytest.mark.parametrize("t", [0, 5, 11, 12, 23])
@pytest.mark.parametrize("form", sorted(CAUSAL))
def test_a_non_finite_write_at_t_never_changes_earlier_outputs(form, t, which, monkeypatch):
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 4)  # chunks of 8: t = 5 and 11 sit mid-chunk
    names = ["q", "k", "v", "p_w", "p_e", "p_r", "S0"]
    clean = make_inputs(B=2, T=24, H=2, d_k=4, d_v=3)
    i = names.index(which)
    dirty = list(clean)
    dirty[i] = _poison(clean[i], (1, t), float("nan") if which != "v" else float("inf"))
    ref = _causal(CAUSAL[form], clean)
    out, state, grads = _causal(CAUSAL[form], dirty)
    torch.testing.assert_close(out[:, :t], ref[0][:, :t])  # the past is untouched
    torch.testing.assert_close(out[0], ref[0][0])  # so is the other sequence
    torch.testing.assert_close(state[0], ref[1][0])
    assert not torch.isfinite(out[1, t:]).all()  # the damage shows from t on, never silently
    assert not torch.isfinite(state[1]).all()
    assert not torch.isfinite(grads[1][1]).all()  # dk of the damaged sequence
    torch.testing.assert_close(grads[1][0], ref[2][1][0])  # dk of the clean one


def test_a_non_finite_query_only_touches_its_own_output():
    clean = make_inputs(B=1, T=20, H=1, d_k=4, d_v=3, requires_grad=False)
    dirty = list(clean)
    dirty[0] = _poison(clean[0], (0, 9), float("nan")).detach()
    for fn in CAUSAL.values():
        a, sa = fn(*clean[:6], initial_state=clean[6], output_final_state=True)
        b, sb = fn(*dirty[:6], initial_state=clean[6], output_final_state=True)
        keep = torch.arange(20) != 9
        torch.testing.assert_close(b[:, keep], a[:, keep])
        torch.testing.assert_close(sb, sa)
        assert torch.isnan(b[:, 9]).all()


@pytest.mark.parametrize("gates", [True, False])
def test_double_backward_through_the_chunk_form_is_exact(gates):
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=1, T=6, H=1, d_k=3, d_v=2, gates=gates)
    mask = torch.tensor([[False, False, True, False, False, False]])
    args = [x for x in (q, k, v, p_w, p_e, p_r) if x is not None] + [S0]

    def fn(*a):
        qkv, rest, s = a[:3], a[3:-1], a[-1]
        g = list(rest) if gates else [None, None, None]
        return F.chunk_causal_nam_attention(
            *qkv, *g, initial_state=s, output_final_state=True, key_padding_mask=mask, chunk_size=4
        )

    assert torch.autograd.gradgradcheck(fn, args)


def test_double_backward_matches_the_naive_twin():
    q, k, v, p_w, p_e, p_r, S0 = inputs = make_inputs(B=1, T=9, H=2, d_k=3, d_v=2)

    def second_order(fn):
        out, st = fn(q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True)
        g = torch.autograd.grad(out.pow(2).sum() + st.sum(), [k, p_e], create_graph=True)
        return torch.autograd.grad(g[0].sum() + g[1].pow(2).sum(), list(inputs))

    for a, b in zip(
        second_order(CAUSAL["chunk8"]), second_order(F.naive_causal_nam_attention), strict=True
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("form", sorted(CAUSAL))
def test_meta_tensors_propagate_shapes(form):
    meta = dict(device="meta")
    q, k = torch.empty(2, 10, 3, 4, **meta), torch.empty(2, 10, 3, 4, **meta)
    v, p = torch.empty(2, 10, 3, 5, **meta), torch.empty(2, 10, 3, **meta)
    mask = torch.zeros(2, 10, dtype=torch.bool, device="meta")
    out, state = CAUSAL[form](q, k, v, p, p, p, output_final_state=True, key_padding_mask=mask)
    assert out.device.type == "meta" and out.shape == (2, 10, 3, 5)
    assert state.device.type == "meta" and state.shape == (2, 3, 5, 4)
    out = F.nam_attention(q, k, v, p, p, key_padding_mask=mask)
    assert out.device.type == "meta" and out.shape == (2, 10, 3, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 2e19, 1e30, 1e38])
def test_unit_norm_is_exact_for_any_finite_input(dtype, scale):
    if scale * 4 > torch.finfo(dtype).max:
        pytest.skip("not representable")
    base = torch.tensor([[3.0, -4.0, 0.0, 1e-3]], dtype=torch.float64)
    x = (base * scale).to(dtype)
    expect = (base / base.norm()).to(dtype)
    if scale * 5 < 1e-6:  # below eps the guard divides by eps (a near-zero vector stays small)
        expect = x / 1e-6
    torch.testing.assert_close(F.unit_norm(x), expect, rtol=1e-6, atol=0)


def test_unit_norm_gradient_matches_the_textbook_formula():
    x = torch.randn(4, 6, dtype=DT) * torch.tensor([1e-9, 1.0, 1e5, 1e200], dtype=DT)[:, None]
    x.requires_grad_()
    assert torch.autograd.gradcheck(F.unit_norm, (torch.randn(3, 5, dtype=DT, requires_grad=True),))
    cot = torch.randn(4, 6, dtype=DT)
    (g,) = torch.autograd.grad((F.unit_norm(x) * cot).sum(), x)
    xd = x.detach()
    n = xd.norm(dim=-1, keepdim=True)
    u = xd / n
    expect = torch.where(n >= 1e-6, (cot - u * (u * cot).sum(-1, keepdim=True)) / n, cot / 1e-6)
    torch.testing.assert_close(g, expect)
