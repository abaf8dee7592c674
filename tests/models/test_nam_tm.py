"""NAM-TM: fast path vs line-by-line twin, tape length, ablations, padding, state, learning, errors."""

import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_attention_memory.models.nam_tm import ACTIONS, NAMTuringMachine
from neural_attention_memory.models.sequence import build_memory_model

VARIANTS = {
    "full": {},
    "nojump": {"actions": ("noop", "left", "right")},
    "onlyjump": {"actions": ("noop", "jump")},
    "norw": {"rw_prob": False},
    "noerase": {"erase": False},
}


def _tm(dim=8, tapes=3, d=4, L=6, **kw):
    return NAMTuringMachine(dim, tapes, d, tape_length=L, **kw).double()


def _random_state(m, B, L):
    vt, kt, heads = m.init_state(B, L, dtype=torch.double)
    return vt.normal_(), kt.normal_(), heads.uniform_()


def test_shapes_and_dtypes():
    m = NAMTuringMachine(8, 3, 4, tape_length=5)
    out, (vt, kt, heads) = m(torch.randn(2, 7, 8))
    assert out.shape == (2, 7, 8) and out.dtype == torch.float32
    assert vt.shape == kt.shape == (2, 3, 4, 5) and heads.shape == (2, 3, 2, 5)
    out, (vt, _, heads) = m(torch.randn(2, 7, 8), tape_length=11)
    assert vt.shape[-1] == heads.shape[-1] == 11
    vt, kt, heads = m.init_state(2)
    assert torch.all(heads[..., 0] == 1) and torch.all(heads[..., 1:] == 0)
    assert torch.all(vt == 0) and torch.all(kt == 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_path_equals_reference_outputs_state_and_all_gradients(variant):
    m = _tm(**VARIANTS[variant])
    B, T, L = 3, 7, 6
    x = torch.randn(B, T, 8, dtype=torch.double, requires_grad=True)
    vt, kt, heads = (s.requires_grad_() for s in _random_state(m, B, L))
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[0, [0, 3]] = True  # padding before real tokens too
    pad[1, 5:] = True
    pad[2, 2:] = True
    fast = m(x, (vt, kt), heads, padding_mask=pad)
    ref = m.forward_reference(x, (vt, kt), heads, padding_mask=pad)
    outs_f, outs_r = [fast[0], *fast[1]], [ref[0], *ref[1]]
    for a, b in zip(outs_f, outs_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    cots = [torch.randn_like(o) for o in outs_f]
    params = [x, vt, kt, heads, *m.parameters()]

    def grads(outs):
        loss = sum((o * c).sum() for o, c in zip(outs, cots))
        return torch.autograd.grad(loss, params, allow_unused=True)

    for name, ga, gb in zip(
        ["x", "tape", "key_tape", "heads"] + [n for n, _ in m.named_parameters()],
        grads(outs_f),
        grads(outs_r),
    ):
        assert (ga is None) == (gb is None), name
        if ga is not None:
            torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-10, msg=name)


def test_gradcheck_float64_tiny():
    m = _tm(dim=3, tapes=2, d=2, L=4)
    x = torch.randn(1, 3, 3, dtype=torch.double, requires_grad=True)
    vt, kt, heads = (s.requires_grad_() for s in _random_state(m, 1, 4))

    def f(x, vt, kt, heads):
        out, (a, b, c) = m(x, (vt, kt), heads)
        return out, a, b, c

    assert torch.autograd.gradcheck(f, (x, vt, kt, heads))


def test_step_and_split_sequences_equal_forward():
    m = _tm()
    x = torch.randn(2, 8, 8, dtype=torch.double)
    out, state, hc = m(x, return_controller_state=True)
    st = None
    for t in range(8):
        y, st = m.step(x[:, t], st)
        torch.testing.assert_close(y, out[:, t], rtol=1e-10, atol=1e-10)
    a, (vt, kt, heads), hc1 = m(x[:, :3], return_controller_state=True)
    b, st2, hc2 = m(x[:, 3:], (vt, kt), heads, controller_state=hc1, return_controller_state=True)
    torch.testing.assert_close(torch.cat([a, b], 1), out, rtol=1e-10, atol=1e-10)
    for u, v in zip([*st2, *hc2], [*state, *hc]):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)
    for u, v in zip(st[:3], state):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


def test_tape_length_only_matters_once_heads_can_wrap():
    m = _tm(L=9)
    x = torch.randn(2, 12, 8, dtype=torch.double)
    out9, _ = m(x, tape_length=9)
    out40, _ = m(x, tape_length=40)
    # After t moves a head spans cells -t..t; for 2t + 1 <= 9 both tapes are the same up to labels.
    torch.testing.assert_close(out9[:, :5], out40[:, :5], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(out9[:, 5:], out40[:, 5:])
    # Long enough tapes (2T + 1 cells) never wrap: identical outputs and relabelled tapes.
    out25, (vt25, _, h25) = m(x, tape_length=25)
    out60, (vt60, _, h60) = m(x, tape_length=60)
    torch.testing.assert_close(out25, out60, rtol=1e-10, atol=1e-12)
    relabel = torch.cat([torch.arange(0, 13), torch.arange(60 - 12, 60)])
    torch.testing.assert_close(vt60[..., relabel], vt25, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h60[..., relabel], h25, rtol=1e-10, atol=1e-12)


def test_tape_length_keeps_the_output_distribution():
    # Short, wrapping tapes change outputs but not their scale: no parameter depends on L.
    m = NAMTuringMachine(16, 4, 8, tape_length=8)
    x = torch.randn(16, 30, 16)
    with torch.no_grad():
        s8, s64 = m(x, tape_length=8)[0].std(), m(x, tape_length=64)[0].std()
    assert 0.7 < float(s8 / s64) < 1.4


def _transplant(full, variant):
    """Copy ``full``'s weights into ``variant`` and pin ``full``'s removed actions/gates so both compute
    the same function (logit -1e9 -> probability 0, +1e9 -> 1, exactly in float64)."""
    with torch.no_grad():
        for name in ("controller", "value_proj", "out_proj"):
            getattr(variant, name).load_state_dict(getattr(full, name).state_dict())
        if variant.key_proj is not None:
            variant.key_proj.load_state_dict(full.key_proj.state_dict())
        A = len(full.actions)
        rows = []
        for n in range(full.num_tapes):
            base = n * full.ctrl_size
            gates = ([0, 1] if variant.rw_prob else []) + ([2] if variant.erase else [])
            rows += [base + g for g in gates]
            for head in range(2):
                rows += [base + 3 + head * A + full.actions.index(a) for a in variant.actions]
            if variant.jump:
                rows += list(range(base + 3 + 2 * A, base + full.ctrl_size))
            # Pin what the variant removes.
            W, b = full.ctrl_proj.weight, full.ctrl_proj.bias
            for g, pinned in ((0, 1e9), (1, 1e9), (2, -1e9)):
                if g not in gates:
                    W[base + g] = 0
                    b[base + g] = pinned
            for head in range(2):
                for i, a in enumerate(full.actions):
                    if a not in variant.actions:
                        W[base + 3 + head * A + i] = 0
                        b[base + 3 + head * A + i] = -1e9
        variant.ctrl_proj.weight.copy_(full.ctrl_proj.weight[rows])
        variant.ctrl_proj.bias.copy_(full.ctrl_proj.bias[rows])


@pytest.mark.parametrize("variant", ["nojump", "onlyjump", "norw", "noerase"])
def test_each_ablation_removes_exactly_its_action_or_gate(variant):
    full, ablated = _tm(), _tm(**VARIANTS[variant])
    _transplant(full, ablated)
    x = torch.randn(2, 9, 8, dtype=torch.double)
    out_full, st_full = full(x)
    out_abl, st_abl = ablated(x)
    torch.testing.assert_close(out_abl, out_full, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(st_abl[0], st_full[0], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(st_abl[2], st_full[2], rtol=1e-9, atol=1e-10)
    n_full = sum(p.numel() for p in full.parameters())
    n_abl = sum(p.numel() for p in ablated.parameters())
    N, d, dim = 3, 4, 8
    removed = {
        "nojump": 2 * N * (dim + 1) + N * d * (dim + 1) + N * d * (dim + 1),  # 2 logits, q, key
        "onlyjump": 2 * 2 * N * (dim + 1),  # LEFT and RIGHT logits of both heads
        "norw": 2 * N * (dim + 1),
        "noerase": N * (dim + 1),
    }[variant]
    assert n_full - n_abl == removed
    if variant == "nojump":
        assert ablated.key_proj is None  # no key tape to write
        assert torch.equal(st_abl[1], torch.zeros_like(st_abl[1]))


def test_only_jump_cannot_leave_cell_zero():
    # PAPER.md §4: the key tape only stores visited positions, so heads stay on cell 0.
    m = _tm(actions=("noop", "jump"))
    _, (vt, _, heads) = m(torch.randn(2, 10, 8, dtype=torch.double))
    assert torch.all(heads[..., 1:] == 0) and torch.all(vt[..., 1:] == 0)


@pytest.mark.parametrize("variant", ["full", "nojump"])
def test_padded_batch_equals_each_sequence_alone(variant):
    m = _tm(**VARIANTS[variant])
    x = torch.randn(3, 8, 8, dtype=torch.double)
    lengths = [8, 5, 1]
    pad = torch.arange(8)[None, :] >= torch.tensor(lengths)[:, None]
    out, state, hc = m(x, padding_mask=pad, return_controller_state=True)
    for b, n in enumerate(lengths):
        alone, st, hca = m(x[b : b + 1, :n], return_controller_state=True)
        torch.testing.assert_close(out[b : b + 1, :n], alone, rtol=1e-10, atol=1e-10)
        for u, v in zip([*state, *hc], [*st, *hca]):
            sl = u[:, b : b + 1] if u.dim() == 3 else u[b : b + 1]  # (h, c) are [1, B, dim]
            torch.testing.assert_close(sl, v, rtol=1e-10, atol=1e-10)


def test_padding_anywhere_is_skipped():
    m = _tm()
    x = torch.randn(2, 7, 8, dtype=torch.double)
    pad = torch.tensor(
        [
            [True, False, False, True, False, True, True],
            [True, True, False, False, False, False, False],
        ]
    )
    out, state, hc = m(x, padding_mask=pad, return_controller_state=True)
    ref, ref_state, ref_hc = m.forward_reference(x, padding_mask=pad, return_controller_state=True)
    real = ~pad
    torch.testing.assert_close(out[real], ref[real], rtol=1e-10, atol=1e-10)
    for u, v in zip([*state, *hc], [*ref_state, *ref_hc]):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)
    for b in range(2):
        alone, st = m(x[b : b + 1, real[b]])
        torch.testing.assert_close(out[b : b + 1, real[b]], alone, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state[0][b : b + 1], st[0], rtol=1e-10, atol=1e-10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="actions: expected distinct names"):
        NAMTuringMachine(8, 2, 4, actions=("left", "right"))
    with pytest.raises(ValueError, match="actions: expected distinct names"):
        NAMTuringMachine(8, 2, 4, actions=("noop", "up"))
    with pytest.raises(ValueError, match="tape_length: expected an int >= 1"):
        NAMTuringMachine(8, 2, 4, tape_length=0)
    with pytest.raises(ValueError, match="num_tapes"):
        NAMTuringMachine(8, 0, 4)
    m = NAMTuringMachine(8, 2, 4)
    with pytest.raises(ValueError, match=r"x: expected shape \[B, T, dim=8\]"):
        m(torch.randn(2, 3, 5))
    with pytest.raises(TypeError, match="x: expected a floating-point"):
        m(torch.zeros(2, 3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="x: expected a non-empty"):
        m(torch.randn(2, 0, 8))
    vt, kt, heads = m.init_state(2, 6)
    with pytest.raises(ValueError, match=r"heads: expected shape \[B, N, 2, L\]"):
        m(torch.randn(2, 3, 8), (vt, kt), heads[..., :5])
    with pytest.raises(ValueError, match=r"tape\[1\]: expected the shape"):
        m(torch.randn(2, 3, 8), (vt, kt[..., :5]))
    with pytest.raises(ValueError, match="tape_length: expected None or 6"):
        m(torch.randn(2, 3, 8), (vt, kt), tape_length=7)
    with pytest.raises(TypeError, match="tape: expected a tuple"):
        m(torch.randn(2, 3, 8), vt)
    with pytest.raises(TypeError, match="padding_mask: expected a bool tensor"):
        m(torch.randn(2, 3, 8), padding_mask=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="controller_state"):
        m(torch.randn(2, 3, 8), controller_state=(torch.zeros(1, 3, 8), torch.zeros(1, 3, 8)))


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


def test_learns_to_reverse_short_digit_strings():
    torch.manual_seed(0)
    model = build_memory_model("nam-tm", 12, 10, dim=32, num_tapes=2, head_dim=16, num_layers=1)
    acc, steps = _train_reversal(model, n_max=5, max_steps=1500, lr=1e-2, seconds=120)
    assert acc >= 0.95, f"sequence accuracy {acc:.3f} after {steps} steps"


@pytest.mark.slow
def test_learns_to_reverse_and_generalises_to_longer_strings():
    torch.manual_seed(0)
    model = build_memory_model("nam-tm", 12, 10, "quick")  # the quick preset, 2 layers
    acc, steps = _train_reversal(model, n_max=10, max_steps=3000, lr=3e-3, seconds=500)
    assert acc >= 0.95, f"sequence accuracy {acc:.3f} after {steps} steps"
    # Zero-shot on longer strings: the "auto" tape grows with the sequence.
    longer = _sequence_accuracy(model, torch.Generator().manual_seed(3), 11, 15, B=256)
    assert longer >= 0.5, f"sequence accuracy on 11-15 digits {longer:.3f}"


def test_actions_constant_is_the_paper_order():
    assert ACTIONS == ("noop", "left", "right", "jump")


def test_float32_gradients_stay_accurate_on_long_sequences():
    # The backward rebuilds T_{t-1} = T_t - u h_w^T: compare with float64 over 150 steps.
    m = NAMTuringMachine(8, 2, 4, tape_length=151)
    x = torch.randn(2, 150, 8)
    cot = torch.randn(2, 150, 8)
    g32 = torch.autograd.grad((m(x)[0] * cot).sum(), list(m.parameters()))
    m64 = NAMTuringMachine(8, 2, 4).double()
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
    variant=st.sampled_from(sorted(VARIANTS)),
    seed=st.integers(0, 2**16),
)
def test_property_fast_path_equals_reference(B, T, tapes, d, L, variant, seed):
    torch.manual_seed(seed)
    m = NAMTuringMachine(4, tapes, d, tape_length=L, **VARIANTS[variant]).double()
    x = torch.randn(B, T, 4, dtype=torch.double)
    pad = torch.rand(B, T) < 0.3  # anywhere, whole rows included
    fast = m(x, padding_mask=pad, return_controller_state=True)
    ref = m.forward_reference(x, padding_mask=pad, return_controller_state=True)
    for a, b in zip([fast[0], *fast[1], *fast[2]], [ref[0], *ref[1], *ref[2]]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
