"""NAM-TM layers (2022, 2023 and the mix): fast path vs line-by-line twin, the paper's formulas,
ablations, padding, state, stepping, double backward, learning, errors."""

import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_attention_memory.models.nam_tm import (
    ACTIONS,
    NAMTMStack,
    NAMTMState,
    NAMTuringMachine,
    nam_tm_2022,
    nam_tm_2023,
)
from neural_attention_memory.models.sequence import build_memory_model

KINDS = {
    "2022": {"controller": "bigru", "tied_erase": True, "key_tape": "position"},
    "2023": {"controller": "lstm", "tied_erase": False, "key_tape": "key"},
    "mix": {"controller": "lstm", "tied_erase": False, "key_tape": "position"},
}
VARIANTS = {
    "full": {},
    "nojump": {"actions": ("noop", "left", "right")},
    "onlyjump": {"actions": ("noop", "jump")},
    "norw": {"rw_prob": False},
    "noerase": {"erase": False},
}
CASES = [(k, v) for k in KINDS for v in VARIANTS]


def _tm(kind="2023", dim=8, tapes=3, d=4, L=6, **kw):
    return NAMTuringMachine(dim, tapes, d, tape_length=L, **KINDS[kind], **kw).double()


def _random_state(m, B, L):
    s = m.init_state(B, dtype=torch.double, tape_length=L)
    return NAMTMState(
        s.tape.normal_(), s.key_tape.normal_(), s.heads.uniform_(), s.h.normal_(), s.c.normal_()
    )


def _assert_close_all(xs, ys, tol=1e-10):
    for a, b in zip(xs, ys, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_shapes_dtypes_and_state_type():
    for kind, key_shape in (("2022", (2, 3, 4, 5)), ("2023", (2, 3, 5, 4))):
        m = NAMTuringMachine(8, 3, 4, tape_length=5, **KINDS[kind])
        out, state = m(torch.randn(2, 7, 8))
        assert isinstance(state, NAMTMState)
        assert out.shape == (2, 7, 8) and out.dtype == torch.float32
        assert state.tape.shape == (2, 3, 4, 5) and state.key_tape.shape == key_shape
        assert state.heads.shape == (2, 3, 2, 5)
        width = 8 if kind == "2023" else 0  # a bidirectional controller carries nothing
        assert state.h.shape == state.c.shape == (2, width)
        out, state = m(torch.randn(2, 7, 8), tape_length=11)
        assert state.tape.shape[-1] == state.heads.shape[-1] == 11
        s = m.init_state(2, None, torch.float64)
        assert isinstance(s, NAMTMState) and s.tape.dtype == torch.float64
        assert torch.all(s.heads[..., 0] == 1) and torch.all(s.heads[..., 1:] == 0)
        assert all(torch.all(t == 0) for t in (s.tape, s.key_tape, s.h, s.c))


def test_named_models_are_the_papers_two_versions():
    m22, m23 = nam_tm_2022(16, 2, 4), nam_tm_2023(16, 2, 4)
    assert isinstance(m22, NAMTMStack) and m22.num_layers == 2 and m22.handoff == "tape"
    layer = m22.layers[0]
    assert isinstance(layer.controller, torch.nn.GRU) and layer.controller.bidirectional
    assert layer.controller.hidden_size == 8  # half the width per direction
    assert layer.tied_erase and layer.key_tape == "position"
    assert layer.ctrl_proj.out_features == 2 * (10 + 4)  # 10 logits per tape + jump query
    assert isinstance(m23.controller, torch.nn.LSTM) and not m23.controller.bidirectional
    assert not m23.tied_erase and m23.key_tape == "key"
    assert m23.ctrl_proj.out_features == 2 * (11 + 4)  # 11 logits per tape + jump query


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_fast_path_equals_reference_outputs_state_and_all_gradients(kind, variant):
    m = _tm(kind, **VARIANTS[variant])
    B, T, L = 3, 7, 6
    x = torch.randn(B, T, 8, dtype=torch.double, requires_grad=True)
    st0 = NAMTMState(*(s.requires_grad_() for s in _random_state(m, B, L)))
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[0, [0, 3]] = True  # padding before real tokens too
    pad[1, 5:] = True
    pad[2, 2:] = True
    fast = m(x, st0, padding_mask=pad)
    ref = m.forward_reference(x, st0, padding_mask=pad)
    outs_f, outs_r = [fast[0], *fast[1]], [ref[0], *ref[1]]
    _assert_close_all(outs_f, outs_r)
    assert torch.all(fast[0][pad] == 0)  # padded tokens output zeros
    cots = [torch.randn_like(o) for o in outs_f]
    params = [x, *st0, *m.parameters()]

    def grads(outs):
        loss = sum((o * c).sum() for o, c in zip(outs, cots))
        return torch.autograd.grad(loss, params, allow_unused=True)

    names = ["x", *NAMTMState._fields] + [n for n, _ in m.named_parameters()]
    for name, ga, gb in zip(names, grads(outs_f), grads(outs_r), strict=True):
        assert (ga is None) == (gb is None), name
        if ga is not None:
            torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_and_gradgradcheck_float64_tiny(kind):
    m = _tm(kind, dim=4, tapes=2, d=2, L=4)
    x = torch.randn(1, 3, 4, dtype=torch.double, requires_grad=True)
    st0 = [s.requires_grad_() for s in _random_state(m, 1, 4)[:3]]

    def f(x, tape, key_tape, heads):
        s = m.init_state(1, dtype=torch.double, tape_length=4)
        out, st = m(x, s._replace(tape=tape, key_tape=key_tape, heads=heads))
        return out, st.tape, st.key_tape, st.heads

    assert torch.autograd.gradcheck(f, (x, *st0))
    # Double backward through the hand-written backward is exact (recomputed through autograd).
    assert torch.autograd.gradgradcheck(f, (x, *st0))


def test_double_backward_matches_the_twin():
    m = _tm("2023")
    x = torch.randn(2, 5, 8, dtype=torch.double, requires_grad=True)
    results = []
    for run in (m, m.forward_reference):
        out, _ = run(x)
        (g,) = torch.autograd.grad((out**2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad((g**2).sum(), [x, *m.parameters()]))
    _assert_close_all(*results, tol=1e-9)


@pytest.mark.parametrize("kind", ["2023", "mix"])
def test_step_and_split_sequences_equal_forward(kind):
    m = _tm(kind)
    x = torch.randn(2, 8, 8, dtype=torch.double)
    out, state = m(x)
    st = None
    for t in range(8):
        y, st = m.step(x[:, t], st)
        torch.testing.assert_close(y, out[:, t], rtol=1e-10, atol=1e-10)
    assert isinstance(st, NAMTMState)
    _assert_close_all(st, state)
    a, st1 = m(x[:, :3])
    b, st2 = m(x[:, 3:], st1)
    torch.testing.assert_close(torch.cat([a, b], 1), out, rtol=1e-10, atol=1e-10)
    _assert_close_all(st2, state)


def test_bidirectional_models_cannot_step():
    with pytest.raises(NotImplementedError, match="bidirectional controller"):
        _tm("2022").step(torch.randn(2, 8, dtype=torch.double))
    with pytest.raises(NotImplementedError, match="cannot run token by token"):
        nam_tm_2022(8, 2, 4).step(torch.randn(2, 8))
    one = NAMTMStack(8, 2, 4, num_layers=1)  # one unidirectional layer can
    y, st = one.step(torch.randn(2, 8))
    assert y.shape == (2, 8) and isinstance(st, NAMTMState)


@pytest.mark.parametrize("handoff", ["tape", "all"])
def test_stack_hands_the_tape_to_the_next_layer(handoff):
    stack = NAMTMStack(8, 2, 4, num_layers=2, tape_length=6, handoff=handoff, **KINDS["mix"])
    stack = stack.double()
    x = torch.randn(2, 5, 8, dtype=torch.double)
    y, st = stack(x)
    l1, l2 = stack.layers
    h, s1 = l1(x)
    blank = l2.init_state(2, dtype=torch.double, tape_length=6)
    if handoff == "tape":  # the 2022 model: value tape only, heads back at cell 0
        s2 = blank._replace(tape=s1.tape)
    else:
        s2 = blank._replace(tape=s1.tape, key_tape=s1.key_tape, heads=s1.heads)
    y2, st2 = l2(h, s2)
    torch.testing.assert_close(y, y2, rtol=1e-12, atol=1e-12)
    _assert_close_all(st, st2, tol=1e-12)
    ref, ref_st = stack.forward_reference(x)
    _assert_close_all(st, ref_st)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_stack_layer_input_source_feeds_the_stack_input_to_every_layer():
    # The authors' two-layer task model: layer 2 reads the embedded input again, starting from
    # layer 1's tape; layer 1's outputs are unused.
    stack = NAMTMStack(8, 2, 4, num_layers=2, tape_length=6, layer_input="source", **KINDS["2022"])
    stack = stack.double()
    x = torch.randn(2, 5, 8, dtype=torch.double)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    y, st = stack(x, padding_mask=pad)
    l1, l2 = stack.layers
    _, s1 = l1(x, padding_mask=pad)
    blank = l2.init_state(2, dtype=torch.double, tape_length=6)
    y2, st2 = l2(x, blank._replace(tape=s1.tape), padding_mask=pad)
    torch.testing.assert_close(y, y2, rtol=1e-12, atol=1e-12)
    _assert_close_all(st, st2, tol=1e-12)
    ref, ref_st = stack.forward_reference(x, padding_mask=pad)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    _assert_close_all(st, ref_st)
    # "previous" (the default) really differs: layer 2 then reads layer 1's outputs
    prev = NAMTMStack(8, 2, 4, num_layers=2, tape_length=6, **KINDS["2022"]).double()
    prev.load_state_dict(stack.state_dict())
    assert not torch.allclose(prev(x, padding_mask=pad)[0], y)
    with pytest.raises(ValueError, match="layer_input: expected one of previous, source"):
        NAMTMStack(8, 2, 4, layer_input="output")


def test_2023_key_tape_stores_the_raw_write_head_under_the_key():
    # docs/paper.md §4: K <- K + (p_w w - p_e K k) k^T, j = K q (w un-normalised).
    m = _tm("2023", d=4, L=6)
    s = _random_state(m, 2, 6)
    x = torch.randn(2, 1, 8, dtype=torch.double)
    _, new = m(x, s)
    c, _, _ = m._control(x, None, s)
    p = m._plan(c, x, None)
    k, p_w, p_e = p.k[:, 0], p.p_w[:, 0], p.p_e[:, 0]  # [B, N, d], [B, N]
    K, w = s.key_tape, s.heads[:, :, 1]  # [B, N, L, d], raw write head [B, N, L]
    Kk = torch.einsum("bnld,bnd->bnl", K, k)
    want = K + torch.einsum("bnl,bnd->bnld", p_w[..., None] * w - p_e[..., None] * Kk, k)
    torch.testing.assert_close(new.key_tape, want, rtol=1e-12, atol=1e-12)


def test_2022_key_tape_stores_keys_at_positions_with_tied_erase():
    # docs/paper.md §4: K' = WR(K, mu(H_w), mu(W_k x), p_w, p_w) with K [d, L]; j_l = <K_l, q>.
    m = _tm("2022", d=4, L=6)
    s = _random_state(m, 2, 6)
    x = torch.randn(2, 1, 8, dtype=torch.double)
    _, new = m(x, s)
    c, _, _ = m._control(x, None, s)
    p = m._plan(c, x, None)
    k, p_w = p.k[:, 0], p.p_w[:, 0]
    K = s.key_tape  # [B, N, d, L]
    hw = s.heads[:, :, 1] / s.heads[:, :, 1].norm(dim=-1, keepdim=True)
    Kh = torch.einsum("bndl,bnl->bnd", K, hw)
    want = K + torch.einsum("bnd,bnl->bndl", p_w[..., None] * (k - Kh), hw)
    torch.testing.assert_close(new.key_tape, want, rtol=1e-12, atol=1e-12)
    assert m.num_gates == 2 and p.p_e is p.p_w


def test_tape_length_only_matters_once_heads_can_wrap():
    m = _tm("2023", L=9)
    x = torch.randn(2, 12, 8, dtype=torch.double)
    out9, _ = m(x, tape_length=9)
    out40, _ = m(x, tape_length=40)
    # After t moves a head spans cells -t..t; for 2t + 1 <= 9 both tapes are the same up to labels.
    torch.testing.assert_close(out9[:, :5], out40[:, :5], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(out9[:, 5:], out40[:, 5:])
    # Long enough tapes (2T + 1 cells) never wrap: identical outputs and relabelled tapes.
    out25, s25 = m(x, tape_length=25)
    out60, s60 = m(x, tape_length=60)
    torch.testing.assert_close(out25, out60, rtol=1e-10, atol=1e-12)
    relabel = torch.cat([torch.arange(0, 13), torch.arange(60 - 12, 60)])
    torch.testing.assert_close(s60.tape[..., relabel], s25.tape, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s60.heads[..., relabel], s25.heads, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s60.key_tape[..., relabel, :], s25.key_tape, rtol=1e-10, atol=1e-12)


def test_tape_length_keeps_the_output_distribution():
    # Short, wrapping tapes change outputs but not their scale: no parameter depends on L.
    m = NAMTuringMachine(16, 4, 8, tape_length=8, **KINDS["2022"])
    x = torch.randn(16, 30, 16)
    with torch.no_grad():
        s8, s64 = m(x, tape_length=8)[0].std(), m(x, tape_length=64)[0].std()
    assert 0.7 < float(s8 / s64) < 1.4


def _gate_names(m):
    return (["r", "w"] if m.rw_prob else []) + (["e"] if m.erase and not m.tied_erase else [])


def _transplant(full, variant):
    """Copy ``full``'s weights into ``variant`` and pin ``full``'s removed actions/gates so both compute
    the same function (logit -1e9 -> probability 0, +1e9 -> 1, exactly in float64)."""
    with torch.no_grad():
        for name in ("controller", "value_proj", "out_proj"):
            getattr(variant, name).load_state_dict(getattr(full, name).state_dict())
        if variant.key_proj is not None:
            variant.key_proj.load_state_dict(full.key_proj.state_dict())
        A, G = len(full.actions), full.num_gates
        full_gates, var_gates = _gate_names(full), _gate_names(variant)
        rows = []
        W, b = full.ctrl_proj.weight, full.ctrl_proj.bias
        for n in range(full.num_tapes):
            base = n * full.ctrl_size
            rows += [base + full_gates.index(g) for g in var_gates]
            for g in full_gates:  # pin what the variant removes
                if g not in var_gates:
                    W[base + full_gates.index(g)] = 0
                    b[base + full_gates.index(g)] = -1e9 if g == "e" else 1e9
            for head in range(2):
                for i, a in enumerate(full.actions):
                    if a in variant.actions:
                        rows.append(base + G + head * A + i)
                    else:
                        W[base + G + head * A + i] = 0
                        b[base + G + head * A + i] = -1e9
            if variant.jump:
                rows += list(range(base + G + 2 * A, base + full.ctrl_size))
        variant.ctrl_proj.weight.copy_(full.ctrl_proj.weight[rows])
        variant.ctrl_proj.bias.copy_(full.ctrl_proj.bias[rows])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", ["nojump", "onlyjump", "norw", "noerase"])
def test_each_ablation_removes_exactly_its_action_or_gate(kind, variant):
    full_kw = dict(KINDS[kind])
    if variant == "noerase" and full_kw["tied_erase"]:
        # Tied erase has no logit of its own: pin a separate erase gate of an otherwise equal model.
        full_kw["tied_erase"] = False
    full = NAMTuringMachine(8, 3, 4, tape_length=6, **full_kw).double()
    ablated = _tm(kind, **VARIANTS[variant])
    _transplant(full, ablated)
    x = torch.randn(2, 9, 8, dtype=torch.double)
    out_full, st_full = full(x)
    out_abl, st_abl = ablated(x)
    torch.testing.assert_close(out_abl, out_full, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(st_abl.tape, st_full.tape, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(st_abl.heads, st_full.heads, rtol=1e-9, atol=1e-10)
    n_full = sum(p.numel() for p in full.parameters())
    n_abl = sum(p.numel() for p in ablated.parameters())
    N, d, dim = 3, 4, 8
    removed = (full.ctrl_size - ablated.ctrl_size) * N * (dim + 1)
    if variant == "nojump":
        removed += N * d * (dim + 1)  # the key projection
        assert ablated.key_proj is None  # no key tape to write
        assert torch.equal(st_abl.key_tape, torch.zeros_like(st_abl.key_tape))
    assert n_full - n_abl == removed
    expect = {"nojump": 2 + d, "onlyjump": 4, "norw": 2, "noerase": 1}[variant]
    assert full.ctrl_size - ablated.ctrl_size == expect


@pytest.mark.parametrize("kind", KINDS)
def test_only_jump_cannot_leave_cell_zero(kind):
    # docs/paper.md §4: the key tape only stores visited positions, so heads stay on cell 0.
    m = _tm(kind, actions=("noop", "jump"))
    _, st = m(torch.randn(2, 10, 8, dtype=torch.double))
    assert torch.all(st.heads[..., 1:] == 0) and torch.all(st.tape[..., 1:] == 0)


@pytest.mark.parametrize(("kind", "variant"), [(k, v) for k in KINDS for v in ("full", "nojump")])
def test_padded_batch_equals_each_sequence_alone(kind, variant):
    m = _tm(kind, **VARIANTS[variant])
    x = torch.randn(3, 8, 8, dtype=torch.double)
    lengths = [8, 5, 1]
    pad = torch.arange(8)[None, :] >= torch.tensor(lengths)[:, None]
    out, state = m(x, padding_mask=pad)
    for b, n in enumerate(lengths):
        alone, st1 = m(x[b : b + 1, :n])
        torch.testing.assert_close(out[b : b + 1, :n], alone, rtol=1e-10, atol=1e-10)
        assert torch.all(out[b, n:] == 0)
        _assert_close_all([s[b : b + 1] for s in state], st1)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_anywhere_is_skipped(kind):
    m = _tm(kind)
    x = torch.randn(2, 7, 8, dtype=torch.double)
    pad = torch.tensor(
        [
            [True, False, False, True, False, True, True],
            [True, True, False, False, False, False, False],
        ]
    )
    out, state = m(x, padding_mask=pad)
    ref, ref_state = m.forward_reference(x, padding_mask=pad)
    _assert_close_all([out, *state], [ref, *ref_state])
    real = ~pad
    for b in range(2):
        alone, st1 = m(x[b : b + 1, real[b]])
        torch.testing.assert_close(out[b : b + 1, real[b]], alone, rtol=1e-10, atol=1e-10)
        _assert_close_all([s[b : b + 1] for s in state], st1)


def test_all_padding_rows_keep_their_state():
    m = _tm("2023")
    s = _random_state(m, 2, 6)
    pad = torch.tensor([[True] * 4, [False] * 4])
    out, new = m(torch.randn(2, 4, 8, dtype=torch.double), s, pad)
    _assert_close_all([t[0] for t in new], [t[0] for t in s], tol=0)
    assert torch.all(out[0] == 0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="actions: expected distinct names"):
        NAMTuringMachine(8, 2, 4, actions=("left", "right"))
    with pytest.raises(ValueError, match="actions: expected distinct names"):
        NAMTuringMachine(8, 2, 4, actions=("noop", "up"))
    with pytest.raises(ValueError, match="tape_length: expected an int >= 1"):
        NAMTuringMachine(8, 2, 4, tape_length=0)
    with pytest.raises(ValueError, match="num_tapes"):
        NAMTuringMachine(8, 0, 4)
    with pytest.raises(ValueError, match="controller: expected one of lstm, bigru, got 'gru'"):
        NAMTuringMachine(8, 2, 4, controller="gru")
    with pytest.raises(ValueError, match="key_tape: expected one of position, key"):
        NAMTuringMachine(8, 2, 4, key_tape="keys")
    with pytest.raises(ValueError, match="dim: expected an even width"):
        NAMTuringMachine(7, 2, 4, controller="bigru")
    with pytest.raises(ValueError, match="handoff: expected one of tape, all"):
        NAMTMStack(8, 2, 4, handoff="heads")
    m = NAMTuringMachine(8, 2, 4)
    with pytest.raises(ValueError, match=r"x: expected shape \[B, T, dim=8\]"):
        m(torch.randn(2, 3, 5))
    with pytest.raises(TypeError, match="x: expected a floating-point"):
        m(torch.zeros(2, 3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected a non-empty"):
        m(torch.randn(2, 0, 8))
    s = m.init_state(2, tape_length=6)
    with pytest.raises(ValueError, match=r"state.heads: expected shape \(2, 2, 2, 6\)"):
        m(torch.randn(2, 3, 8), s._replace(heads=s.heads[..., :5]))
    with pytest.raises(ValueError, match=r"state.key_tape: expected shape \(2, 2, 6, 4\)"):
        m(torch.randn(2, 3, 8), s._replace(key_tape=s.key_tape[:, :, :5]))
    with pytest.raises(ValueError, match=r"state.h: expected shape \(2, 8\)"):
        m(torch.randn(2, 3, 8), s._replace(h=torch.zeros(1, 2, 8)))
    with pytest.raises(TypeError, match="state.c: expected dtype torch.float32"):
        m(torch.randn(2, 3, 8), s._replace(c=s.c.double()))
    with pytest.raises(ValueError, match="tape_length: expected None or 6"):
        m(torch.randn(2, 3, 8), s, tape_length=7)
    with pytest.raises(TypeError, match="state: expected a NAMTMState"):
        m(torch.randn(2, 3, 8), s.tape)
    with pytest.raises(TypeError, match="padding_mask: expected a bool tensor"):
        m(torch.randn(2, 3, 8), padding_mask=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"x_t: expected shape \[B, dim=8\]"):
        m.step(torch.randn(2, 3, 8))


# -- learning: reverse digit strings ---------------------------------------------------------------

SEP, MASK = 10, 11


def _reverse_batch(gen, B, n_min, n_max):
    """``d_1..d_n SEP MASK^n`` -> the digits reversed at the MASK positions (right padded)."""
    T = 2 * n_max + 1
    n = torch.randint(n_min, n_max + 1, (B,), generator=gen)
    digits = torch.randint(0, 10, (B, n_max), generator=gen)
    tokens = torch.zeros(B, T, dtype=torch.long)
    target = torch.full((B, T), -100)
    pad = torch.ones(B, T, dtype=torch.bool)
    for b, k in enumerate(n.tolist()):
        tokens[b, :k] = digits[b, :k]
        tokens[b, k] = SEP
        tokens[b, k + 1 : 2 * k + 1] = MASK
        target[b, k + 1 : 2 * k + 1] = digits[b, :k].flip(0)
        pad[b, : 2 * k + 1] = False
    return tokens, target, pad


def _sequence_accuracy(model, gen, n_min, n_max, B=512):
    tokens, target, pad = _reverse_batch(gen, B, n_min, n_max)
    with torch.no_grad():
        pred = model(tokens, pad).argmax(-1)
    return float(((pred == target) | (target == -100)).all(1).float().mean())


def _train_reversal(model, n_max, max_steps, lr, seconds):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen, eval_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    start, acc = time.perf_counter(), 0.0
    for step in range(1, max_steps + 1):
        tokens, target, pad = _reverse_batch(gen, 32, 1, n_max)
        loss = torch.nn.functional.cross_entropy(model(tokens, pad).transpose(1, 2), target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0:
            acc = _sequence_accuracy(model, eval_gen, 1, n_max)
            if acc >= 0.95 or time.perf_counter() - start > seconds:
                break
    return acc, step


@pytest.mark.parametrize("name", ["nam-tm-2022", "nam-tm-2023"])
def test_learns_to_reverse_short_digit_strings(name):
    torch.manual_seed(0)
    model = build_memory_model(name, 12, 10, dim=32, num_tapes=2, head_dim=16, num_layers=1)
    acc, steps = _train_reversal(model, n_max=5, max_steps=1500, lr=1e-2, seconds=120)
    assert acc >= 0.95, f"sequence accuracy {acc:.3f} after {steps} steps"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nam-tm-2022", "nam-tm-2023"])
def test_learns_to_reverse_and_generalises_to_longer_strings(name):
    torch.manual_seed(0)
    model = build_memory_model(name, 12, 10, "quick")
    acc, steps = _train_reversal(model, n_max=10, max_steps=3000, lr=3e-3, seconds=500)
    assert acc >= 0.95, f"sequence accuracy {acc:.3f} after {steps} steps"
    # Zero-shot on longer strings: the "auto" tape grows with the sequence.
    longer = _sequence_accuracy(model, torch.Generator().manual_seed(3), 11, 15, B=256)
    assert longer >= 0.5, f"sequence accuracy on 11-15 digits {longer:.3f}"


def test_actions_constant_is_the_paper_order():
    assert ACTIONS == ("noop", "left", "right", "jump")


@pytest.mark.parametrize("kind", ["2022", "2023"])
def test_float32_gradients_stay_accurate_on_long_sequences(kind):
    # The backward rebuilds T_{t-1} = T_t - u h_w^T: compare with float64 over 150 steps.
    m = NAMTuringMachine(8, 2, 4, tape_length=151, **KINDS[kind])
    x = torch.randn(2, 150, 8)
    cot = torch.randn(2, 150, 8)
    g32 = torch.autograd.grad((m(x)[0] * cot).sum(), list(m.parameters()))
    m64 = NAMTuringMachine(8, 2, 4, **KINDS[kind]).double()
    m64.load_state_dict(m.state_dict())
    out64 = m64(x.double(), tape_length=151)[0]
    g64 = torch.autograd.grad((out64 * cot.double()).sum(), list(m64.parameters()))
    for a, b in zip(g32, g64):
        assert float((a.double() - b).norm() / b.norm()) < 1e-3


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 3),
    T=st.integers(1, 6),
    tapes=st.integers(1, 3),
    d=st.integers(1, 3),
    L=st.integers(1, 7),
    kind=st.sampled_from(sorted(KINDS)),
    variant=st.sampled_from(sorted(VARIANTS)),
    seed=st.integers(0, 2**16),
)
def test_property_fast_path_equals_reference(B, T, tapes, d, L, kind, variant, seed):
    torch.manual_seed(seed)
    m = NAMTuringMachine(4, tapes, d, tape_length=L, **KINDS[kind], **VARIANTS[variant]).double()
    x = torch.randn(B, T, 4, dtype=torch.double)
    pad = torch.rand(B, T) < 0.3  # anywhere, whole rows included
    fast = m(x, padding_mask=pad)
    ref = m.forward_reference(x, padding_mask=pad)
    _assert_close_all([fast[0], *fast[1]], [ref[0], *ref[1]])


@pytest.mark.parametrize("kind", list(KINDS))
def test_trace_records_the_heads_each_step_reads_and_writes_at(kind):
    # Every tape's write and read head forced to RIGHT: at step t both sit on cell t (mod L).
    m = _tm(kind, L=5)
    A, G = len(m.actions), m.num_gates
    with torch.no_grad():
        m.ctrl_proj.weight.zero_()
        bias = m.ctrl_proj.bias.view(m.num_tapes, m.ctrl_size)
        bias.zero_()
        for head in (0, 1):
            bias[:, G + head * A + ACTIONS.index("right")] = 60.0
    x = torch.randn(2, 7, 8, dtype=torch.double)
    trace: list = []
    out, st = m.forward_reference(x, trace=trace)
    assert len(trace) == 7
    for t, step in enumerate(trace):
        onehot = torch.zeros(2, m.num_tapes, 5, dtype=torch.double)
        onehot[..., t % 5] = 1.0
        torch.testing.assert_close(step["write_head"], onehot, atol=1e-12, rtol=0)
        torch.testing.assert_close(step["read_head"], onehot, atol=1e-12, rtol=0)
        assert step["p_w"].shape == (2, m.num_tapes) and step["p_r"].shape == (2, m.num_tapes)
    # Tracing changes nothing.
    out2, st2 = m.forward_reference(x)
    _assert_close_all([out, *st], [out2, *st2], tol=0)


def test_trace_of_a_stack_has_one_list_per_layer_and_needs_the_twin():
    model = build_memory_model("nam-tm", 16, 12, dim=8, num_tapes=2, head_dim=4)
    tokens = torch.randint(0, 16, (3, 9))
    trace: list = []
    with torch.no_grad():
        out = model(tokens, reference=True, trace=trace)
        torch.testing.assert_close(out, model(tokens, reference=True), atol=0, rtol=0)
    assert len(trace) == 2 and all(len(layer) == 9 for layer in trace)
    assert trace[1][0]["write_head"].shape == (3, 2, 10)  # tape of T + 1 cells
    with pytest.raises(ValueError, match="trace: only the slow twin records heads"):
        model(tokens, trace=[])
