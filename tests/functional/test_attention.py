"""NAM attention: the fast forms against the naive loops (outputs, final state, all gradients)."""

import pytest
import torch

import neural_attention_memory.functional as F
from neural_attention_memory.functional import chunk as chunk_mod
from neural_attention_memory.functional.chunk import ChunkNAMFunction

from ._helpers import DT, grads_with_cotangents, make_inputs

CAUSAL = {
    "recurrent": F.recurrent_causal_nam_attention,
    "chunk16": lambda *a, **kw: F.chunk_causal_nam_attention(*a, chunk_size=16, **kw),
    "chunk64": lambda *a, **kw: F.chunk_causal_nam_attention(*a, chunk_size=64, **kw),
    "chunk7": lambda *a, **kw: F.chunk_causal_nam_attention(*a, chunk_size=7, **kw),
}


def _run(fn, inputs, mask=None, with_state=True):
    q, k, v, p_w, p_e, p_r, S0 = inputs
    out, state = fn(
        q,
        k,
        v,
        p_w,
        p_e,
        p_r,
        initial_state=S0 if with_state else None,
        output_final_state=True,
        key_padding_mask=mask,
    )
    used = [q, k, v, p_w, p_e, p_r] + ([S0] if with_state else [])
    return out, state, grads_with_cotangents(out, state, used)


def _assert_same(a, b, atol=1e-10):
    out_a, st_a, g_a = a
    out_b, st_b, g_b = b
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=1e-8)
    torch.testing.assert_close(st_a, st_b, atol=atol, rtol=1e-8)
    assert len(g_a) == len(g_b)
    for x, y in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-8)


@pytest.fixture(params=[1, 8192], ids=["block=1chunk", "block=all"])
def block_rows(request, monkeypatch):
    """Run the chunk form with one chunk per block and with one block for everything."""
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", request.param)
    return request.param


@pytest.mark.parametrize("T", [1, 63, 64, 65, 200])
@pytest.mark.parametrize("form", sorted(CAUSAL))
def test_causal_forms_match_naive(T, form, block_rows):
    inputs = make_inputs(B=2, T=T, H=2, d_k=5, d_v=4)
    ref = _run(F.naive_causal_nam_attention, inputs)
    _assert_same(_run(CAUSAL[form], inputs), ref)


@pytest.mark.parametrize(
    "gates", [(False, False, False), (True, False, False), (False, True, True)]
)
def test_chunk_matches_naive_with_any_subset_of_gates(gates):
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(T=37)
    p_w, p_e, p_r = (p if on else None for p, on in zip((p_w, p_e, p_r), gates, strict=True))
    inputs = (q, k, v, p_w, p_e, p_r, S0)
    _assert_same(_run(CAUSAL["chunk16"], inputs), _run(F.naive_causal_nam_attention, inputs))


def test_causal_without_initial_state_and_float32():
    inputs = make_inputs(T=50, dtype=torch.float32)
    ref = _run(F.naive_causal_nam_attention, inputs, with_state=False)
    _assert_same(_run(CAUSAL["chunk16"], inputs, with_state=False), ref, atol=1e-4)
    _assert_same(_run(CAUSAL["recurrent"], inputs, with_state=False), ref, atol=1e-4)


@pytest.mark.parametrize("form", ["naive", "recurrent", "chunk16"])
def test_padded_batch_equals_each_sequence_alone(form):
    fn = F.naive_causal_nam_attention if form == "naive" else CAUSAL[form]
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=3, T=30, requires_grad=False)
    lengths = [30, 17, 1]
    mask = torch.arange(30)[None, :] >= torch.tensor(lengths)[:, None]
    out, state = fn(
        q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True, key_padding_mask=mask
    )
    for b, n in enumerate(lengths):
        o_b, s_b = fn(
            *(x[b : b + 1, :n] for x in (q, k, v, p_w, p_e, p_r)),
            initial_state=S0[b : b + 1],
            output_final_state=True,
        )
        torch.testing.assert_close(out[b : b + 1, :n], o_b)
        torch.testing.assert_close(state[b : b + 1], s_b)
        assert torch.all(out[b, n:] == 0)


@pytest.mark.parametrize(
    "present", [(False, False, False), (True, False, True), (False, True, False)]
)
def test_padding_with_absent_gates_matches_naive(present):
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=20)
    gates = [p if on else None for p, on in zip((p_w, p_e, p_r), present, strict=True)]
    inputs = (q, k, v, *gates, S0)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[1, 12:] = True
    mask[0, 2] = True
    ref = _run(F.naive_causal_nam_attention, inputs, mask=mask)
    _assert_same(_run(CAUSAL["chunk7"], inputs, mask=mask), ref)
    _assert_same(_run(CAUSAL["recurrent"], inputs, mask=mask), ref)


def test_padding_in_the_middle_matches_naive_with_gradients(block_rows):
    inputs = make_inputs(B=2, T=40)
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, 3:9] = True
    mask[1, ::3] = True
    ref = _run(F.naive_causal_nam_attention, inputs, mask=mask)
    _assert_same(_run(CAUSAL["chunk16"], inputs, mask=mask), ref)
    _assert_same(_run(CAUSAL["recurrent"], inputs, mask=mask), ref)


@pytest.mark.parametrize("form", sorted(CAUSAL))
def test_split_sequence_with_carried_state_equals_one_pass(form, block_rows):
    fn = CAUSAL[form]
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(T=90, requires_grad=False)
    out, state = fn(q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True)
    s = S0
    outs = []
    for a, b in [(0, 31), (31, 32), (32, 90)]:
        o, s = fn(
            *(x[:, a:b] for x in (q, k, v, p_w, p_e, p_r)), initial_state=s, output_final_state=True
        )
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, dim=1), out)
    torch.testing.assert_close(s, state)


def test_final_state_is_none_unless_asked():
    q, k, v, *_ = make_inputs(requires_grad=False)
    for fn in (F.naive_causal_nam_attention, *CAUSAL.values()):
        assert fn(q, k, v)[1] is None


def test_causal_outputs_do_not_depend_on_the_future():
    q, k, v, p_w, p_e, p_r, _ = make_inputs(T=40, requires_grad=False)
    out, _ = CAUSAL["chunk16"](q, k, v, p_w, p_e, p_r)
    v2 = v.clone()
    v2[:, 25:] += 1.0
    out2, _ = CAUSAL["chunk16"](q, k, v2, p_w, p_e, p_r)
    torch.testing.assert_close(out[:, :25], out2[:, :25])
    assert not torch.allclose(out[:, 25:], out2[:, 25:])


def test_non_causal_equals_loop_of_write_then_read():
    q, k, v, p_w, _, p_r, _ = make_inputs(T=21)
    mask = torch.zeros(2, 21, dtype=torch.bool)
    mask[1, 15:] = True
    fast = F.nam_attention(q, k, v, p_w, p_r, key_padding_mask=mask)
    slow = F.naive_nam_attention(q, k, v, p_w, p_r, key_padding_mask=mask)
    torch.testing.assert_close(fast, slow)
    for a, b in zip(
        grads_with_cotangents(fast, None, [q, k, v, p_w, p_r]),
        grads_with_cotangents(slow, None, [q, k, v, p_w, p_r]),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    # Explicit formula: out_t = p_r[t] * sum_s p_w[s] cos(q_t, k_s) v_s over unpadded s.
    b, t, h = 1, 4, 2
    cos = F.unit_norm(k[b, :15, h]) @ F.unit_norm(q[b, t, h])
    expect = p_r[b, t, h] * ((p_w[b, :15, h] * cos)[:, None] * v[b, :15, h]).sum(0)
    torch.testing.assert_close(fast[b, t, h], expect)
    assert torch.all(fast[1, 15:] == 0)


def test_non_causal_per_head_and_batched_paths_agree():
    from neural_attention_memory.functional.attention import _write_then_read

    q, k, v, *_ = make_inputs(B=3, T=17, H=2, gates=False)
    a = _write_then_read(q, k, v, per_head=True)
    b = _write_then_read(q, k, v, per_head=False)
    torch.testing.assert_close(a, b)
    for x, y in zip(
        grads_with_cotangents(a, None, [q, k, v]),
        grads_with_cotangents(b, None, [q, k, v]),
        strict=True,
    ):
        torch.testing.assert_close(x, y)
    # Both paths are reached through the public function (B * H = 6 <= 16 and 20 * 2 > 16).
    q2, k2, v2, *_ = make_inputs(B=20, T=5, H=2, gates=False, requires_grad=False)
    torch.testing.assert_close(F.nam_attention(q2, k2, v2), F.naive_nam_attention(q2, k2, v2))


def test_non_causal_padded_batch_equals_each_sequence_alone():
    q, k, v, *_ = make_inputs(B=2, T=12, gates=False, requires_grad=False)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, 7:] = True
    out = F.nam_attention(q, k, v, key_padding_mask=mask)
    torch.testing.assert_close(out[:1, :7], F.nam_attention(q[:1, :7], k[:1, :7], v[:1, :7]))
    torch.testing.assert_close(out[1:], F.nam_attention(q[1:], k[1:], v[1:]))


def test_gradcheck_public_functions():
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=1, T=5, H=2, d_k=3, d_v=2)
    mask = torch.tensor([[False, False, True, False, False]])
    assert torch.autograd.gradcheck(
        lambda *a: F.nam_attention(*a, key_padding_mask=mask), (q, k, v, p_w, p_r)
    )
    for fn in (F.naive_causal_nam_attention, F.recurrent_causal_nam_attention, CAUSAL["chunk7"]):
        assert torch.autograd.gradcheck(
            lambda q, k, v, w, e, r, s, fn=fn: fn(
                q, k, v, w, e, r, initial_state=s, output_final_state=True, key_padding_mask=mask
            ),
            (q, k, v, p_w, p_e, p_r, S0),
        )


@pytest.mark.parametrize("block_rows", [4, 8192])
def test_gradcheck_custom_backward_directly(block_rows, monkeypatch):
    # block_rows=4: one chunk per block (the multi-block paths); 8192: one block for everything.
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", block_rows)
    g = torch.Generator().manual_seed(3)
    B, T, H, d_k, d_v = 1, 10, 2, 3, 2

    def rnd(*s, fn=torch.randn):
        return fn(*s, generator=g, dtype=DT).requires_grad_()

    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 4] = True
    gates = [rnd(B, T, H, fn=torch.rand) for _ in range(3)]
    args = (rnd(B, T, H, d_k), rnd(B, T, H, d_k), rnd(B, T, H, d_v), *gates, rnd(B, H, d_v, d_k))
    assert torch.autograd.gradcheck(lambda *a: ChunkNAMFunction.apply(*a, mask, 4), args)
    # And with every gate absent (the no-erase fast path) and no padding.
    args_none = (args[0], args[1], args[2], None, None, None, args[6])
    assert torch.autograd.gradcheck(lambda *a: ChunkNAMFunction.apply(*a, None, 3), args_none)


def test_erase_overwrites_under_a_repeated_key():
    # Theorem 2 through the attention: full write + full erase under one key, read with that key.
    B, T, H, d = 1, 6, 1, 4
    k = torch.randn(1, 1, 1, d, dtype=DT).expand(B, T, H, d).contiguous()
    v = torch.randn(B, T, H, 3, dtype=DT)
    ones = torch.ones(B, T, H, dtype=DT)
    for fn in (F.naive_causal_nam_attention, *CAUSAL.values()):
        out, _ = fn(k, k, v, ones, ones, ones)
        torch.testing.assert_close(out, v)


@pytest.mark.parametrize("C", [1, 5, 8, 9, 37, 64])
def test_unit_lower_inverse_matches_linalg_inv(C):
    from neural_attention_memory.functional.chunk import _unit_lower_inverse

    E = (torch.rand(3, C, C, dtype=DT) * 2 - 1).tril(-1)
    expect = torch.linalg.inv(torch.eye(C, dtype=DT) + E)
    torch.testing.assert_close(_unit_lower_inverse(E), expect)


@pytest.mark.parametrize("gates", [(True, True, True), (True, False, True), (False, False, False)])
@pytest.mark.parametrize("dtype", [DT, torch.bfloat16])
def test_fast_blocks_equal_sanitising_blocks(gates, dtype, monkeypatch):
    # The CPU fast path (views, one-pass normalisation, no sanitising) against the sanitising
    # path on the same inputs: several blocks, a ragged last chunk, padding in one block only
    # (so blocks of both kinds meet in one call), outputs, final state and all gradients.
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 2 * 2 * 8)
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=45, H=2, d_k=6, d_v=5)
    p_w, p_e, p_r = (p if on else None for p, on in zip((p_w, p_e, p_r), gates, strict=True))
    inputs = tuple(
        None if x is None else x.detach().to(dtype).requires_grad_()
        for x in (q, k, v, p_w, p_e, p_r, S0.float() if dtype != DT else S0)
    )
    mask = torch.zeros(2, 45, dtype=torch.bool)
    mask[1, 20] = True

    def run():
        return _run(
            lambda *a, **kw: F.chunk_causal_nam_attention(*a, chunk_size=8, **kw), inputs, mask=mask
        )

    fast = run()
    monkeypatch.setattr(chunk_mod, "_fast_ok", lambda q: False)
    slow = run()
    tol = 1e-12 if dtype == DT else 2e-2
    _assert_same(
        tuple(x.double() if isinstance(x, torch.Tensor) else [g.double() for g in x] for x in fast),
        tuple(x.double() if isinstance(x, torch.Tensor) else [g.double() for g in x] for x in slow),
        atol=tol,
    )


@pytest.mark.parametrize("gates", [True, False])
def test_non_causal_fast_path_equals_general_path(gates, monkeypatch):
    # The CPU fast path (norms folded into the write and the read) against the general path
    # (prepare + unit_norm), outputs and all gradients; huge keys take the general path.
    from neural_attention_memory.functional import attention as att

    q, k, v, p_w, _, p_r, _ = make_inputs(T=19)
    p_w, p_r = (p_w, p_r) if gates else (None, None)
    leaves = [x for x in (q, k, v, p_w, p_r) if x is not None]
    assert att._nam_attention_fast(q, k, v, p_w, p_r) is not None
    fast = F.nam_attention(q, k, v, p_w, p_r)
    monkeypatch.setattr(att, "_nam_attention_fast", lambda *a: None)
    slow = F.nam_attention(q, k, v, p_w, p_r)
    torch.testing.assert_close(fast, slow)
    for a, b in zip(
        grads_with_cotangents(fast, None, leaves),
        grads_with_cotangents(slow, None, leaves),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    big = k.detach().float() * 1e30  # squares overflow float32: the fast path declines
    assert att._nam_attention_fast(q.detach().float(), big, v.detach().float(), None, None) is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_non_causal_no_grad_path_equals_naive_twin(dtype):
    # Without autograd the fast path writes each head straight into one output tensor
    # (_write_then_read_into); it must give the naive twin's numbers, gates and half inputs too.
    q, k, v, p_w, _, p_r, _ = make_inputs(T=23, requires_grad=False)
    q, k, v, p_w, p_r = (x.to(dtype) for x in (q, k, v, p_w, p_r))
    with torch.no_grad():
        out = F.nam_attention(q, k, v, p_w, p_r)
    assert out.dtype == dtype
    args = (x.double() for x in (q, k, v, p_w, p_r))
    ref = F.naive_nam_attention(*args)
    tol = 1e-12 if dtype == torch.float64 else 2e-2 * ref.abs().max().item()
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=tol)
