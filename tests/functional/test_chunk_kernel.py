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


def _same(a, b, atol=2e-5, equal_nan=False):
    for x, y in zip(a, b, strict=True):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, equal_nan=equal_nan)


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


def _block_inputs(gates, T, d_k=16, d_v=32, seed=0):
    q, k, v, p_w, p_e, p_r, S0 = make_inputs(B=2, T=T, H=2, d_k=d_k, d_v=d_v, seed=seed)
    p_w, p_e, p_r = (p if on else None for p, on in zip((p_w, p_e, p_r), gates, strict=True))
    return tuple(
        None if x is None else x.detach().float().requires_grad_()
        for x in (q, k, v, p_w, p_e, p_r, S0)
    )


GATE_SETS = [(True, True, True), (True, False, True), (False, True, False), (False, False, False)]


@needs_kernel
@pytest.mark.parametrize("gates", GATE_SETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_block_forward_backward_equal_pytorch_blocks(gates, dtype, monkeypatch):
    # The C block forward and backward (sizes multiples of 16) against the PyTorch block ops
    # on the same prepared blocks: several blocks, a ragged last chunk, padding and a NaN held
    # at padding in one block (a sanitised block through the C kernels too): outputs, final
    # state and all gradients; and (float32) against the naive twin.
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 2 * 2 * 16 * 2)
    inputs = _block_inputs(gates, T=101)
    if dtype != torch.float32:
        inputs = tuple(
            None if x is None else x.detach().to(dtype if i < 6 else x.dtype).requires_grad_()
            for i, x in enumerate(inputs)
        )
    mask = torch.zeros(2, 101, dtype=torch.bool)
    mask[1, 40:44] = True
    with torch.no_grad():
        inputs[0][1, 41, 0, 3] = float("nan")
    calls = []
    for name in ("forward", "backward"):
        real = getattr(kernel, name)
        monkeypatch.setattr(kernel, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    fused = _run(inputs, mask, C=16)
    assert "forward" in calls and "backward" in calls
    monkeypatch.setattr(chunk_mod, "_block_kernel", lambda *a: None)
    plain = _run(inputs, mask, C=16)
    tol = 2e-5 if dtype == torch.float32 else 2e-2
    _same([x.float() for x in fused], [x.float() for x in plain], atol=tol)
    if dtype == torch.float32:  # the naive twin in float32: the same cotangents
        q, k, v, p_w, p_e, p_r, S0 = inputs
        out, st = F.naive_causal_nam_attention(
            q, k, v, p_w, p_e, p_r, initial_state=S0, output_final_state=True,
            key_padding_mask=mask,
        )  # fmt: skip
        ref = [out, st, *grads_with_cotangents(out, st, list(inputs))]
        _same(fused, ref, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("gates", GATE_SETS[:2])
def test_fused_block_kernels_against_float64_autograd(gates):
    # nam_chunk_fwd_f32 / nam_chunk_bwd_f32 called directly on one block (d_k != d_v, C = 32)
    # against autograd through a float64 chunk-by-chunk twin written from the formulas.
    g = torch.Generator().manual_seed(5)
    L, G, C, d_k, d_v = 3, 2, 32, 16, 48
    q, k = (torch.nn.functional.normalize(torch.randn(L, G, C, d_k, generator=g), dim=-1)
            for _ in range(2))  # fmt: skip
    vw = torch.randn(L, G, C, d_v, generator=g)
    e = torch.rand(L, G, C, generator=g) if gates[1] else None
    r = torch.rand(L, G, C, generator=g) if gates[2] else None
    S0t = torch.randn(G, d_k, d_v, generator=g) * 0.3
    dO, D_in = torch.randn(L, G, C, d_v, generator=g), torch.randn(G, d_k, d_v, generator=g)
    X = vw.clone() if e is None else torch.cat([vw, e[..., None] * k], -1)
    St = torch.empty(L + 1, G, d_k, d_v)
    St[0] = S0t
    O = torch.empty(L, G, C, d_v)
    assert kernel.forward(q, k, X, e, St, O)
    D = D_in.clone()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(vw)
    de = None if e is None else torch.empty(L, G, C)
    dr = None if r is None else torch.empty(L, G, C)
    assert kernel.backward(q, k, X, e, r, S0t, dO, D, dq, dk, dv, de, dr)

    leaves = [None if x is None else x.double().requires_grad_() for x in (q, k, vw, e, r, S0t)]
    qd, kd, vd, ed, rd, S = leaves
    outs = []
    for j in range(L):
        U = vd[j]
        if ed is not None:
            A = torch.eye(C, dtype=torch.float64) + ed[j, ..., None] * (kd[j] @ kd[j].mT).tril(-1)
            Y = torch.linalg.solve(A, torch.cat([vd[j], ed[j, ..., None] * kd[j]], -1))
            U = Y[..., :d_v] - Y[..., d_v:] @ S
        o = qd[j] @ S + (qd[j] @ kd[j].mT).tril() @ U
        torch.testing.assert_close(O[j].double(), o, atol=1e-5, rtol=1e-5)
        outs.append(o if rd is None else o * rd[j, ..., None])
        S = S + kd[j].mT @ U
    torch.testing.assert_close(St[-1].double(), S, atol=1e-5, rtol=1e-5)
    loss = (torch.stack(outs) * dO.double()).sum() + (S * D_in.double()).sum()
    used = [x for x in leaves if x is not None]
    grads = torch.autograd.grad(loss, used)
    mine = [x for x in (dq, dk, dv, de, dr, D) if x is not None]
    for a, b in zip(mine, grads, strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


@needs_kernel
def test_fused_block_kernels_decline_sizes_they_do_not_take():
    assert kernel.fits(64, 64, 64) and kernel.fits(16, 32, 48)
    assert not kernel.fits(8, 16, 16) and not kernel.fits(16, 6, 16) and not kernel.fits(16, 16, 5)
    q = torch.zeros(1, 1, 16, 8)
    St, O = torch.zeros(2, 1, 8, 16), torch.zeros(1, 1, 16, 16)
    assert not kernel.forward(q, q, torch.zeros(1, 1, 16, 16), None, St, O)
    with pytest.raises(ValueError, match="contiguous CPU float32"):
        kernel.forward(q.double(), q, O, None, St, O)


@needs_kernel
@pytest.mark.parametrize("which", ["k", "v"])
@pytest.mark.parametrize("t", [5, 16, 40])
def test_fused_blocks_keep_non_finite_writes_from_the_past(which, t, monkeypatch):
    # Through the C block kernels (float32, sizes of 16): a non-finite key or value at a real
    # token t changes no output before t, nothing of the other sequence, and marks the rest.
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 2 * 2 * 16)
    clean = _block_inputs(GATE_SETS[0], T=48)
    i = "qkv".index(which)
    dirty = list(clean)
    dirty[i] = clean[i].detach().clone()
    dirty[i][1, t, 0, 2] = float("nan") if which == "k" else float("inf")
    dirty[i].requires_grad_()
    ref, got = _run(clean, C=16), _run(tuple(dirty), C=16)
    torch.testing.assert_close(got[0][:, :t], ref[0][:, :t])
    torch.testing.assert_close(got[0][0], ref[0][0])
    torch.testing.assert_close(got[1][0], ref[1][0])
    assert not torch.isfinite(got[0][1, t:]).all() and not torch.isfinite(got[1][1]).all()
    torch.testing.assert_close(got[3][0], ref[3][0])  # dk of the clean sequence
    assert not torch.isfinite(got[3][1]).all()


@needs_kernel
def test_fused_tail_writes_gradients_of_strided_inputs(monkeypatch):
    # The backward's fused tail writes the raw inputs' gradients itself (strided q, k, v and
    # gates, ragged last chunk): the same as the PyTorch block ops and tail.
    g = torch.Generator().manual_seed(7)
    base = torch.randn(2, 50, 3, 2, 16, generator=g)
    q, k = base[..., 0, :], base[..., 1, :]
    v = torch.randn(2, 3, 50, 32, generator=g).transpose(1, 2)
    w, e, r = (torch.rand(2, 3, 50, generator=g).transpose(1, 2) for _ in range(3))
    r[0, 3, 1] = 1e-6  # below _R_MIN: that chunk recomputes the output before the read gate;
    r[1, 20:, 0] = 0.0  # the others take it as O / r from the saved output
    leaves = [x.detach().requires_grad_() for x in (q, k, v, w, e, r)]
    S0 = torch.randn(2, 3, 32, 16, generator=g).requires_grad_()

    def run():
        out, st = F.chunk_causal_nam_attention(
            *leaves, initial_state=S0, output_final_state=True, chunk_size=16
        )
        return [out, st, *grads_with_cotangents(out, st, [*leaves, S0])]

    fused = run()
    monkeypatch.setattr(chunk_mod, "_block_kernel", lambda *a: None)
    _same(fused, run())


@needs_kernel
@pytest.mark.parametrize("T", [1, 7, 64, 131])
@pytest.mark.parametrize("gates", [True, False])
def test_non_causal_kernel_equals_pytorch_paths(T, gates, monkeypatch):
    # nam_noncausal_fwd_f32 (no autograd, float32, sizes of 16; ragged token tiles, strided q
    # and non-contiguous gates) against the PyTorch fast path and the naive twin in float64.
    from neural_attention_memory.functional import attention as att

    g = torch.Generator().manual_seed(T)
    base = torch.randn(2, T, 3, 2, 16, generator=g)
    q, k = base[..., 0, :], base[..., 1, :]
    v = torch.randn(2, T, 3, 32, generator=g)
    p_w, p_r = (torch.rand(2, 3, T, generator=g).transpose(1, 2) if gates else None
                for _ in range(2))  # fmt: skip
    calls = []
    real = kernel.noncausal
    monkeypatch.setattr(kernel, "noncausal", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        fused = F.nam_attention(q, k, v, p_w, p_r)
        assert calls
        monkeypatch.setattr(_chunk_kernel, "get", lambda: None)
        plain = F.nam_attention(q, k, v, p_w, p_r)
    torch.testing.assert_close(fused, plain, atol=2e-5, rtol=1e-4)
    ref = F.naive_nam_attention(*(None if x is None else x.double() for x in (q, k, v, p_w, p_r)))
    torch.testing.assert_close(fused.double(), ref, atol=1e-4, rtol=1e-4)
    # a key whose squares overflow float32: the kernel declines, the exact path answers
    big = k.clone()
    big[1, 0, 2] = 1e30
    assert kernel.noncausal(q, big, v, p_w, p_r, 1e-6) is None
    monkeypatch.undo()
    with torch.no_grad():
        out = att.nam_attention(q, big, v, p_w, p_r)
    ref = F.naive_nam_attention(*(None if x is None else x.double() for x in (q, big, v, p_w, p_r)))
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-4)


@needs_kernel
def test_fused_backward_with_an_expanded_output_gradient(monkeypatch):
    # out.sum() hands the backward a broadcast (stride-0) gradient; the C backward reads it
    # in place: the same gradients as the PyTorch block ops.
    inputs = _block_inputs(GATE_SETS[0], T=40)

    def run():
        out, _ = F.chunk_causal_nam_attention(*inputs[:6], initial_state=inputs[6], chunk_size=16)
        return torch.autograd.grad(out.sum(), list(inputs))

    fused = run()
    monkeypatch.setattr(chunk_mod, "_block_kernel", lambda *a: None)
    _same(fused, run())


@needs_kernel
@pytest.mark.parametrize("gates", GATE_SETS)
def test_fused_raw_forward_equals_prepared_blocks(gates, monkeypatch):
    # nam_chunk_fwd_raw_f32 (preparation and forward in one call, straight from the inputs,
    # read gate folded into the query) against the prepared-block C forward and the PyTorch
    # blocks: strided inputs, an initial state, several blocks, a ragged last chunk, one block
    # with padding and one with a NaN value (both declined by the fused call and redone on
    # their own paths): outputs, final state and all gradients.
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 2 * 3 * 16 * 2)
    g = torch.Generator().manual_seed(11)
    base = torch.randn(2, 150, 3, 2, 16, generator=g)
    q, k = base[..., 0, :], base[..., 1, :]
    v = torch.randn(2, 3, 150, 32, generator=g).transpose(1, 2)
    ws = [torch.rand(2, 3, 150, generator=g).transpose(1, 2) for _ in range(3)]
    w, e, r = (p if on else None for p, on in zip(ws, gates, strict=True))
    v[0, 100, 1, 3] = float("nan")  # the block of chunks 6-7
    S0 = torch.randn(2, 3, 32, 16, generator=g)
    leaves = [None if x is None else x.detach().requires_grad_() for x in (q, k, v, w, e, r, S0)]
    mask = torch.zeros(2, 150, dtype=torch.bool)
    mask[1, 40:42] = True  # the block of chunks 2-3

    def run():
        return _run(leaves, mask, C=16)

    calls = []
    real = kernel.forward_raw
    monkeypatch.setattr(kernel, "forward_raw", lambda *a: calls.append(real(*a)) or calls[-1])
    fused = run()
    # blocks 0 and 2 fused; 3 declined (its NaN), 4 after the NaN takes the marking path
    assert calls == [True, True, False]
    monkeypatch.setattr(chunk_mod, "_FUSED_FORWARD", False)
    prepared = run()
    assert len(calls) == 3
    assert torch.isnan(fused[0][0, 100:, 1]).all() and torch.isfinite(fused[0][0, :100]).all()
    _same(fused, prepared, equal_nan=True)
    monkeypatch.setattr(chunk_mod, "_block_kernel", lambda *a: None)
    _same(fused, run(), equal_nan=True)


@needs_kernel
def test_fused_raw_forward_declines():
    # A non-finite row, and sizes that are not multiples of 16, return False.
    q = torch.randn(1, 20, 2, 16)
    v = torch.randn(1, 20, 2, 16)
    S0, S1, O = torch.zeros(2, 16, 16), torch.empty(2, 16, 16), torch.empty(1, 20, 2, 16)
    assert kernel.forward_raw(q, q, v, None, None, None, 0, 2, 16, 1e-6, S0, S1, O)
    bad = q.clone()
    bad[0, 17, 1, 0] = float("inf")
    assert not kernel.forward_raw(q, bad, v, None, None, None, 0, 2, 16, 1e-6, S0, S1, O)
    assert not kernel.forward_raw(q, q, v, None, None, None, 0, 3, 8, 1e-6, S0, S1, O)


@needs_kernel
@pytest.mark.parametrize("gates", GATE_SETS)
def test_fused_raw_backward_equals_prepared_blocks(gates, monkeypatch):
    # nam_chunk_bwd_raw_f32 (preparation, recompute and backward in one call, reading dO and
    # the saved output in place) against the prepared-block C backward and the PyTorch blocks:
    # strided inputs, an initial state, several blocks, a ragged last chunk, a read gate below
    # _R_MIN in one chunk (its output before the gate is recomputed), one block with padding
    # and one with a query whose squares overflow float32 (declined: D restored, the block
    # redone on the exact sanitising path): outputs, final state and all gradients.
    monkeypatch.setattr(chunk_mod, "_BLOCK_ROWS", 2 * 3 * 16 * 2)
    g = torch.Generator().manual_seed(12)
    base = torch.randn(2, 150, 3, 2, 16, generator=g)
    q, k = base[..., 0, :], base[..., 1, :]
    v = torch.randn(2, 3, 150, 32, generator=g).transpose(1, 2)
    ws = [torch.rand(2, 3, 150, generator=g).transpose(1, 2) for _ in range(3)]
    ws[2][1, 70, 2] = 1e-6
    w, e, r = (p if on else None for p, on in zip(ws, gates, strict=True))
    q[0, 100, 1, 3] = 1e30  # in the block of chunks 6-7
    S0 = torch.randn(2, 3, 32, 16, generator=g)
    leaves = [None if x is None else x.detach().requires_grad_() for x in (q, k, v, w, e, r, S0)]
    mask = torch.zeros(2, 150, dtype=torch.bool)
    mask[1, 40:42] = True  # the block of chunks 2-3

    def run():
        return _run(leaves, mask, C=16)

    calls = []
    real = kernel.backward_raw
    monkeypatch.setattr(kernel, "backward_raw", lambda *a: calls.append(real(*a)) or calls[-1])
    fused = run()
    assert calls == [True, False, True, True]  # blocks 4, 3 (declined), 2, 0 (1: padding)
    monkeypatch.setattr(chunk_mod, "_FUSED_BACKWARD", False)
    prepared = run()
    assert len(calls) == 4
    assert all(torch.isfinite(x).all() for x in fused)
    _same(fused, prepared)
    monkeypatch.setattr(chunk_mod, "_block_kernel", lambda *a: None)
    _same(fused, run())


@needs_kernel
def test_fused_raw_backward_declines_sizes_it_does_not_take():
    q = torch.randn(1, 20, 2, 8)
    D = torch.zeros(2, 8, 8)
    grads = [torch.empty(1, 20, 2, 8) for _ in range(3)]
    args = (q, q, q, None, None, None, None, q, 0, 3, 8, 1e-6, 1e-4, D.clone(), D, *grads)
    assert not kernel.backward_raw(*args, None, None, None)
