"""Chunk-parallel causal NAM attention (gated delta rule with separate write and erase gates).

Inside a chunk of ``C`` tokens starting from state ``S`` (`[d_v, d_k]`), the WY/UT representation
turns the recurrence ``M_t = M_{t-1} (I - e_t k_t k_t^T) + w_t v_t k_t^T`` into matrix products::

    A  = I + diag(e) strict_lower(K K^T)            # unit lower triangular [C, C]
    Uv = A^{-1} diag(w) V,   Wk = A^{-1} diag(e) K  # independent of S
    U  = Uv - Wk S^T                                # [C, d_v]
    O  = diag(r) (Q S^T + tril(Q K^T) U)            # outputs
    S' = S + U^T K                                  # next chunk's state

Only the small ``U``/``S`` recurrence runs chunk by chunk; nothing divides by ``e``. Without an
erase gate ``A = I`` and ``Wk = 0``, so that case skips the triangular inverse altogether.

Memory. The sequence is processed in *blocks* of a few chunks (about ``_BLOCK_ROWS`` rows of
chunks x heads x C): each block's inputs go into reused chunk-major buffers `[L, G, C, d]`
(``G = B * H``, ``L`` chunks a block), so every temporary is block-sized, not sequence-sized. The
forward keeps only the state at the start of each block; the hand-written backward walks the
blocks in reverse and recomputes everything else (unit norms, ``A^{-1}``, ``U``, ``tril(QK^T)``)
from the raw inputs, and takes the output before the read gate as ``O / r`` from the saved output
(a tensor the caller holds anyway) where that is exact. Forward+backward memory is the inputs, the
output, the gradients and the block states, plus one block of temporaries. Inputs in
bfloat16/float16 are computed in float32 inside (buffers, states and every product); outputs and
gradients come back in the input dtype.

Speed (CPU). ``A^{-1}`` is one batched LAPACK unit-triangular solve; with an erase gate the
backward needs only ``A^{-T} dU``, ``dvw S`` and ``dvw U^T`` (``dA = -dvw U^T``). On the CPU a
block with no padding whose norms and ``[diag(w) V | diag(e) K]`` are finite (one host read) takes
a fast path: q and k are normalised in one pass straight from the caller's `[B, T, H, d]` tensors
into the block buffers, nothing is sanitised, and outputs and gradients are written straight
into place. For float32 inputs that pass is one fused C loop (``_chunk_kernel.c``, compiled on
first use; PyTorch ops where there is no compiler or ``NAM_CHUNK_KERNEL=0``). Where the compute
dtype is float32 and ``C``, ``d_k``, ``d_v`` are multiples of 16, the block's forward and
backward (after the preparation, before the normalisation backward) are each one C call too
(``nam_chunk_fwd_f32``, ``nam_chunk_bwd_f32``): head by head, chunk by chunk, with the chunk's
temporaries in cache and ``U`` solved directly by substitution, ``A^{-1} (diag(w) V - diag(e) K
S^T)`` (half the columns of ``A^{-1} X``); the PyTorch block ops below are their
twins (:func:`_block_grads_torch`; tested equal). For float32 blocks with no padding the forward
is one C call with the preparation fused in (``nam_chunk_fwd_raw_f32``: chunk by chunk from the
caller's tensors, the read gate folded into the query, outputs into place), and so is the
backward when no sequence holds a non-finite write (``nam_chunk_bwd_raw_f32``: ``dO`` and the
saved output read in place, the raw inputs' gradients written into place); a block either
declines (a non-finite value) is redone on the prepared-block path. Any other block
(padding, non-finite values, or any non-CPU device, where the host read would be a sync) takes
the sanitising path below; all of them agree to rounding (tested).

Silent wrong results are excluded by construction: padded tokens are zeroed inside the block
(a NaN held at padding cannot leak through a zero gate); a token whose key, value or gates are
not finite is written as a no-op and its sequence is marked from that token on (outputs there and
after, and the final state, are NaN, as in the token-by-token recurrence), so a non-finite value
at ``t`` never changes an output before ``t`` even inside its chunk (``0 * NaN`` in a
lower-triangular product would). Gradients of a marked sequence are NaN as well. Double backward
(``create_graph=True``) recomputes through the differentiable recurrent form, so second-order
gradients are exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _chunk_kernel, _fla
from ._prep import no_autocast
from ._validate import check_gate, check_padding_mask, check_qkv, check_state, compute_dtype

__all__ = ["ChunkNAMFunction", "chunk_causal_nam_attention"]

_EPS = 1e-6  # unit_norm's default guard, the same in every form
# Smallest read gate for which the backward takes the output before the gate as O / p_r (one
# division: exact to rounding unless O underflows, an absolute error below ~1e-34 / _R_MIN).
_R_MIN = 1e-4
# Rows (chunks x heads x C) of one block: big enough that each op is a large batched BLAS call,
# small enough that a block's temporaries stay a few MB and are reused from the heap.
_BLOCK_ROWS = 4096
# Whether the forward takes the fused C preparation + forward (nam_chunk_fwd_raw_f32) where it
# applies; the tests turn it off to compare it with the prepared-block path.
_FUSED_FORWARD = True
# The same for the backward (nam_chunk_bwd_raw_f32) against the prepared-block backward.
_FUSED_BACKWARD = True


def _unit_lower_inverse(E: Tensor) -> Tensor:
    """``(I + E)^{-1}`` for strictly lower-triangular ``E`` `[..., C, C]`: one batched LAPACK
    unit-triangular solve against the identity (measured 2-3x faster on this CPU than blocked row
    substitution written with batched matmuls, for C = 32 and 64). Solved from the right
    (``X (I + E) = I``, the same inverse): LAPACK then takes ``E`` as it is, where a left solve
    first copies it transposed; measured ~1.6x faster than the left solve at C = 64."""
    C = E.shape[-1]
    eye = torch.eye(C, dtype=E.dtype, device=E.device).expand(E.shape)
    return torch.linalg.solve_triangular(E, eye, upper=False, left=False, unitriangular=True)


def _tril_qk(q: Tensor, k: Tensor, diagonal: int) -> Tensor:
    return (q @ k.transpose(-1, -2)).tril_(diagonal)


# ---------------------------------------------------------------------------------------------
# Moving between the user's `[B, T, H, *]` tensors and chunk-major blocks `[L, B, H, C, *]`.


def _view(x: Tensor, n0: int, n1: int, C: int) -> Tensor | None:
    """Chunks ``n0:n1`` of ``x`` `[B, T, H, *]` as a strided `[n1 - n0, B, H, C, *]` view (no
    copy), or None when the block runs past ``T`` (its ragged chunk is gathered instead)."""
    if n1 * C > x.shape[1]:
        return None
    y = x[:, n0 * C : n1 * C].unflatten(1, (n1 - n0, C))
    return y.permute(1, 0, 3, 2, *range(4, y.dim()))


def _gather(x: Tensor, buf: Tensor, n0: int, n1: int, C: int) -> Tensor:
    """Copy chunks ``n0:n1`` of ``x`` `[B, T, H, *]` into ``buf`` `[L, B, H, C, *]` (converting
    the dtype); positions past ``T`` are zero. Returns the filled `[n1 - n0, B, H, C, *]` view."""
    T = x.shape[1]
    out = buf[: n1 - n0]
    t0, t1 = n0 * C, min(n1 * C, T)
    full = (t1 - t0) // C
    perm = (1, 0, 3, 2, *range(4, x.dim() + 1))
    if full:
        out[:full].copy_(x[:, t0 : t0 + full * C].unflatten(1, (full, C)).permute(perm))
    if full < n1 - n0:  # the ragged last chunk
        rem = t1 - t0 - full * C
        out[full].zero_()
        out[full, :, :, :rem].copy_(x[:, t0 + full * C : t1].transpose(1, 2))
    return out


def _source(x: Tensor | None, buf: Tensor | None, n0: int, n1: int, C: int) -> Tensor | None:
    """Chunks ``n0:n1`` of ``x`` as `[L, B, H, C, *]`: a view when they lie inside ``T``, else
    gathered (zero-padded) into ``buf``."""
    if x is None:
        return None
    t = _view(x, n0, n1, C)
    return _gather(x, buf, n0, n1, C) if t is None else t


def _scatter(src: Tensor, x: Tensor, n0: int, n1: int, C: int) -> None:
    """Inverse of :func:`_gather`: write ``src`` `[L, B, H, C, *]` into chunks ``n0:n1`` of ``x``."""
    T = x.shape[1]
    t0, t1 = n0 * C, min(n1 * C, T)
    full = (t1 - t0) // C
    perm = (1, 0, 3, 2, *range(4, x.dim() + 1))
    if full:
        x[:, t0 : t0 + full * C].unflatten(1, (full, C)).copy_(src[:full].permute(perm))
    if full < n1 - n0:
        rem = t1 - t0 - full * C
        x[:, t0 + full * C : t1].copy_(src[full, :, :, :rem].transpose(1, 2))


def _mul_into(a: Tensor, f: Tensor | None, x: Tensor, n0: int, n1: int, C: int) -> None:
    """Write ``a * f`` (``f`` broadcast; None = 1), both `[L, B, H, C, *]`, into chunks ``n0:n1``
    of ``x`` `[B, T, H, *]`: one pass straight into ``x`` when the block lies inside ``T``."""
    dst = _view(x, n0, n1, C)
    if dst is None:
        _scatter(a if f is None else a * f, x, n0, n1, C)
    elif f is None:
        dst.copy_(a)
    else:
        torch.mul(a, f, out=dst)


def _scale(x: Tensor) -> Tensor:
    """Largest magnitude of each row of ``x`` `[..., d]` -> `[..., 1]`; NaN/inf for a row holding
    NaN/inf. Two plain reductions: no full-size temporary (unlike ``x.abs().amax``)."""
    return torch.maximum(x.amax(-1, keepdim=True), x.amin(-1, keepdim=True).neg_())


def _normalize_(x: Tensor, a: Tensor, zero: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """In place: ``x`` `[..., d]` becomes ``mu(x)`` exactly as :func:`unit_norm` computes it (rows
    where ``zero`` `[..., 1]` is True become 0); ``a`` `[..., 1]` is the row scale from :func:`_scale`.

    Returns ``(u, g, big)`` such that the backward of the normalisation is
    ``dx = (du - big u (u . du)) * g`` (``g = 0`` on zeroed rows).
    """
    a = a.clamp_min(torch.finfo(x.dtype).tiny)
    x.div_(a)  # largest entry +-1: the norm below can neither overflow nor underflow
    n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    big = (a * n) >= _EPS
    f = torch.where(big, n.clamp_min_(0.5).reciprocal_(), a / _EPS)
    if zero is not None:
        f.masked_fill_(zero, 0)
    x.mul_(f)
    return x, f.div_(a), big


def _normalize_into(src: Tensor, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``out = mu(src)`` (`[..., d]`) in one pass, from the plain norm ``n`` (``mu = src / max(n,
    eps)``): exact wherever ``n`` is finite (so the caller checks ``n``; a row whose squares
    overflow goes to :func:`_normalize_`). Returns ``(n, g, big)`` with ``g = 1 / max(n, eps)``
    and ``big = n >= eps``, the terms of :func:`_normalize_`'s backward."""
    # (dtype= only for half src: with it the float32 reduction takes a measured ~1.5x slower kernel)
    kw = {} if src.dtype == out.dtype else {"dtype": out.dtype}
    n = torch.linalg.vector_norm(src, dim=-1, keepdim=True, **kw)
    g = n.clamp_min(_EPS).reciprocal_()
    torch.mul(src, g, out=out)
    return n, g, n >= _EPS


class _Block:
    """One block of chunks, normalised and sanitised, in chunk-major `[L, G, C, *]`.

    Exposes ``q``, ``k`` (unit-normalised), ``X = [diag(w) V | diag(e) K]`` (`[L, G, C, d_v (+
    d_k)]`, the right-hand side of the WY solve), the gates ``w, e, r`` `[L, G, C]` (or None),
    ``v5`` (the values, `[L, B, H, C, d_v]`), the normalisation terms ``gq, bq, gk, bk`` and
    ``bad`` (`[L, G, C]` tokens with a non-finite write, or None when there are none).

    Fast path (CPU, ``fast=True``): when the block holds no padding and every norm and the sum
    of ``X`` are finite, q and k are normalised straight from the user's tensors into the block
    buffers, and ``X`` is built in the same pass (no sanitising: nothing to sanitise). Otherwise
    the sanitising path: padded tokens get zero q, k and gates; a real token whose key, value,
    write or erase gate is not finite gets a zero key and gates and a finite value, so it writes
    and erases nothing.
    """

    def __init__(self, bufs: dict, ins: tuple, n0: int, n1: int, C: int, G: int, fast: bool):
        self.shape5 = bufs["q"][: n1 - n0].shape[:3]  # (L, B, H)
        self.prepped = False  # prepared by the C kernel (its float normalisation terms)
        if fast and self._has_padding(bufs, ins[6], n0, n1, C):
            fast = False
        if not (
            fast and (self._kernel(bufs, ins, n0, n1, C, G) or self._fast(bufs, ins, n0, n1, C, G))
        ):
            self._sanitised(bufs, ins, n0, n1, C, G)

    @staticmethod
    def _has_padding(bufs, mask, n0, n1, C) -> bool:
        return mask is not None and bool(_source(mask, bufs.get("pad"), n0, n1, C).any())

    def _kernel(self, bufs, ins, n0, n1, C, G) -> bool:
        """The fast path in one fused C pass (``_chunk_kernel.c``), where it is available."""
        q, k, v, w, e, r, _ = ins
        kern = _chunk_kernel.get() if "gq" in bufs else None
        if kern is None or not kern.supports(q, k, v, w, e, r):
            return False
        L = n1 - n0
        names = ("q", "k", "x", "gq", "bq", "gk", "bk", "w", "e", "r")
        out = {n: bufs[n][:L] for n in names if n in bufs}
        if not kern.prep(q, k, v, w, e, r, n0, L, C, _EPS, out):
            return False
        d_k = q.shape[-1]
        self.q, self.k = (out[n].view(L, G, C, d_k) for n in ("q", "k"))
        self.gq, self.bq, self.gk, self.bk = (
            out[n].view(L, G, C, 1) for n in ("gq", "bq", "gk", "bk")
        )
        self.X = out["x"].view(L, G, C, out["x"].shape[-1])
        self.v5 = _source(v, bufs["v"], n0, n1, C)
        self.bad, self.pad = None, None
        self.prepped = True
        self._gates(*(out.get(n) for n in ("w", "e", "r")), L, G, C)
        return True

    def _gates(self, ws, es, rs, L, G, C):
        self.w, self.e, self.r = (None if p is None else p.reshape(L, G, C) for p in (ws, es, rs))

    def _fast(self, bufs, ins, n0, n1, C, G) -> bool:
        q, k, v, w, e, r, _ = ins
        L = n1 - n0
        qs, ks, vs, ws, es, rs = (
            _source(x, bufs.get(nm), n0, n1, C)
            for nm, x in zip(("q", "k", "v", "w", "e", "r"), (q, k, v, w, e, r), strict=True)
        )
        cdt = bufs["q"].dtype  # gates in it, so that v * w is not rounded to half precision
        ws, es, rs = (None if p is None else p.to(cdt) for p in (ws, es, rs))
        nq, gq, bq = _normalize_into(qs, bufs["q"][:L])
        nk, gk, bk = _normalize_into(ks, bufs["k"][:L])
        X = self._rhs(bufs["x"][:L], vs, ws, es, bufs["k"][:L])
        ok = torch.isfinite(nq).all() & torch.isfinite(nk).all() & torch.isfinite(X.sum())
        if not bool(ok):
            return False
        d_k = ks.shape[-1]
        self.q, self.k = (bufs[n][:L].view(L, G, C, d_k) for n in ("q", "k"))
        self.gq, self.bq, self.gk, self.bk = (t.view(L, G, C, 1) for t in (gq, bq, gk, bk))
        self.X, self.v5, self.bad, self.pad = X.view(L, G, C, X.shape[-1]), vs, None, None
        self._gates(ws, es, rs, L, G, C)
        return True

    @staticmethod
    def _rhs(X: Tensor, vs: Tensor, ws: Tensor | None, es: Tensor | None, k5: Tensor) -> Tensor:
        """Fill ``X`` `[L, B, H, C, d_v (+ d_k)]` with ``[diag(w) V | diag(e) K]``."""
        d_v = vs.shape[-1]
        if ws is None:
            X[..., :d_v].copy_(vs)
        else:
            torch.mul(vs, ws.unsqueeze(-1), out=X[..., :d_v])
        if es is not None:
            torch.mul(k5, es.unsqueeze(-1), out=X[..., d_v:])
        return X

    def _sanitised(self, bufs, ins, n0, n1, C, G) -> None:
        q, k, v, w, e, r, mask = ins
        L = n1 - n0

        def take(name: str, x: Tensor | None) -> Tensor | None:
            return None if x is None else _gather(x, bufs[name], n0, n1, C)

        q, k, v, w, e, r = (take(n, x) for n, x in zip("qkvwer", (q, k, v, w, e, r), strict=True))
        pad = take("pad", mask)  # [L, B, H, C] bool
        a_k = _scale(k)
        ok = torch.isfinite(a_k.squeeze(-1))
        ok &= torch.isfinite(v.amax(-1)) & torch.isfinite(v.amin(-1))
        for p in (w, e):
            if p is not None:
                ok &= torch.isfinite(p)
        bad = ~ok if pad is None else ~ok & ~pad
        drop = ~ok if pad is None else ~ok | pad  # tokens that write nothing
        torch.nan_to_num_(k, 0.0, 0.0, 0.0)
        torch.nan_to_num_(v, 0.0, 0.0, 0.0)
        _, gk, bk = _normalize_(k, torch.where(ok.unsqueeze(-1), a_k, 1.0), drop.unsqueeze(-1))
        if pad is not None:
            q.masked_fill_(pad.unsqueeze(-1), 0)  # a NaN query at padding must not reach O
        _, gq, bq = _normalize_(q, _scale(q), None if pad is None else pad.unsqueeze(-1))
        for p in (w, e):
            if p is not None:
                p.masked_fill_(drop, 0)
        if r is not None and pad is not None:
            r.masked_fill_(pad, 0)
        X = self._rhs(bufs["x"][:L], v, w, e, k)
        d_k = k.shape[-1]
        self.q, self.k = q.view(L, G, C, d_k), k.view(L, G, C, d_k)
        self.gq, self.bq, self.gk, self.bk = (t.view(L, G, C, 1) for t in (gq, bq, gk, bk))
        self.X, self.v5 = X.view(L, G, C, X.shape[-1]), v
        self.bad, self.pad = bad.view(L, G, C), None if pad is None else pad.view(L, G, C)
        self._gates(w, e, r, L, G, C)

    def five(self, x: Tensor) -> Tensor:
        """`[L, G, C, *]` -> `[L, B, H, C, *]` (a view)."""
        return x.view(*self.shape5, *x.shape[2:])

    def wy(self, keep_kk: bool = False):
        """``(KK, Ainv, Y)`` of every chunk: ``Y = A^{-1} X = [Uv | Wk]`` `[L, G, C, d_v + d_k]`,
        ``KK = strict_lower(K K^T)`` (None unless ``keep_kk``); without erase
        ``(None, None, diag(w) V)``."""
        if self.e is None:
            return None, None, self.X
        KK = _tril_qk(self.k, self.k, -1)
        E = KK * self.e.unsqueeze(-1) if keep_kk else KK.mul_(self.e.unsqueeze(-1))
        Ainv = _unit_lower_inverse(E)
        return (KK if keep_kk else None), Ainv, Ainv @ self.X


def _split(Y: Tensor, d_v: int) -> tuple[Tensor, Tensor | None]:
    """``(Uv, Wk)`` views of ``Y`` `[..., d_v (+ d_k)]` (``Wk`` None without erase)."""
    return Y[..., :d_v], (Y[..., d_v:] if Y.shape[-1] > d_v else None)


def _states(Uv: Tensor, Wk: Tensor | None, k: Tensor, St: Tensor) -> Tensor:
    """Fill ``St[1:]`` (`[L + 1, G, d_k, d_v]`, ``St[0]`` given) with the chunk-end states,
    transposed (``S^T``: every product of the loop and of ``Q S^T`` is then a plain, untransposed
    BLAS product, measured ~25% faster than one with a transposed right operand); return ``U``."""
    L = k.shape[0]
    if Wk is None:  # no erase: U = Uv, and the states are a running sum of K^T U
        torch.matmul(k.transpose(-1, -2), Uv, out=St[1:])
        Ss = St.unbind(0)
        for j in range(L):  # (a loop of adds: cumsum over a leading dim is ~10x slower)
            Ss[j + 1].add_(Ss[j])
        return Uv
    U = torch.empty(Uv.shape, dtype=Uv.dtype, device=Uv.device)
    # unbind once: per-step indexing costs several dispatcher calls per chunk.
    Ss, Us, Uvs, Wks, ks = St.unbind(0), U.unbind(0), Uv.unbind(0), Wk.unbind(0), k.unbind(0)
    for j in range(L):
        torch.baddbmm(Uvs[j], Wks[j], Ss[j], beta=1, alpha=-1, out=Us[j])  # U = Uv - Wk S^T
        torch.baddbmm(Ss[j], ks[j].transpose(-1, -2), Us[j], out=Ss[j + 1])  # S^T += K^T U
    return U


def _marks(bad: Tensor, carry: Tensor) -> Tensor:
    """Time-ordered running OR of ``bad`` `[L, G, C]` after ``carry`` `[G]`: `[L, G, C]` bool."""
    L, G, C = bad.shape
    run = bad.transpose(0, 1).reshape(G, L * C).cumsum(1, dtype=torch.int32) > 0
    return (run | carry.unsqueeze(1)).view(G, L, C).transpose(0, 1)


class ChunkNAMFunction(torch.autograd.Function):
    """``(q, k, v, w, e, r, S0, mask, C) -> (O, S_T)`` with a hand-written, recomputing backward.

    q, k: `[B, T, H, d_k]` raw (normalised inside), v: `[B, T, H, d_v]`; w, e, r: `[B, T, H]` or
    None (w = 1, e = 0, r = 1); S0: `[B, H, d_v, d_k]` or None (zeros); mask: `[B, T]` bool (True =
    padding) or None; C: chunk size. Returns O `[B, T, H, d_v]` and S_T `[B, H, d_v, d_k]`, in the
    dtype of q. Inputs are assumed validated (see :func:`chunk_causal_nam_attention`).
    """

    @staticmethod
    def forward(ctx, q, k, v, w, e, r, S0, mask, C):
        with no_autocast(q):
            return _forward(ctx, q, k, v, w, e, r, S0, mask, C)

    @staticmethod
    def backward(ctx, dO, dS_last):
        if torch.is_grad_enabled():  # create_graph=True: differentiate a differentiable twin
            return _backward_differentiable(ctx, dO, dS_last)
        with no_autocast(ctx.saved_tensors[0]):
            return _backward(ctx, dO, dS_last)


def _buffers(names_shapes: dict, cdt: torch.dtype, device) -> dict:
    return {
        n: torch.empty(s, dtype=torch.bool if n == "pad" else cdt, device=device)
        for n, s in names_shapes.items()
    }


def _layout(q: Tensor, v: Tensor, ins: tuple, C: int) -> tuple[int, int, dict]:
    """``(N, L, buffer shapes)`` for inputs ``ins = (q, k, v, w, e, r, mask)``."""
    B, T, H, d_k = q.shape
    d_v = v.shape[-1]
    N = -(-T // C)
    L = max(1, min(N, _BLOCK_ROWS // (B * H * C)))
    base = (L, B, H, C)
    shapes = {"q": base + (d_k,), "k": base + (d_k,), "v": base + (d_v,)}
    shapes["x"] = base + (d_v + (d_k if ins[4] is not None else 0),)
    for name, x in zip(("w", "e", "r"), ins[3:6], strict=True):
        if x is not None:
            shapes[name] = base
    if ins[6] is not None:
        shapes["pad"] = base
    if _chunk_kernel.ChunkKernel.supports(*ins[:6]) and q.device.type == "cpu":
        for name in ("gq", "bq", "gk", "bk"):  # the C kernel's normalisation terms
            shapes[name] = base
    return N, L, shapes


def _expand_mask(mask: Tensor | None, H: int) -> Tensor | None:
    return None if mask is None else mask.unsqueeze(-1).expand(-1, -1, H)  # [B, T, H]


def _block_kernel(q: Tensor, C: int, d_k: int, d_v: int) -> _chunk_kernel.ChunkKernel | None:
    """The fused C block forward/backward where it applies (CPU, float32 compute, sizes that
    are multiples of 16, a built kernel), else None: the blocks then run as PyTorch ops."""
    if q.device.type != "cpu" or compute_dtype(q.dtype) != torch.float32:
        return None
    if not _chunk_kernel.ChunkKernel.fits(C, d_k, d_v):
        return None
    return _chunk_kernel.get()


def _fast_ok(q: Tensor) -> bool:
    # The fast path decides per block with a host read; free on the CPU, a sync elsewhere.
    return q.device.type == "cpu"


def _forward(ctx, q, k, v, w, e, r, S0, mask, C):
    B, T, H, d_k = q.shape
    d_v, G = v.shape[-1], B * H
    cdt = compute_dtype(q.dtype)
    ins = (q, k, v, w, e, r, _expand_mask(mask, H))
    N, L, shapes = _layout(q, v, ins, C)
    bufs = _buffers(shapes, cdt, q.device)
    fast = _fast_ok(q)
    O = q.new_empty((B, T, H, d_v))
    starts = range(0, N, L)
    # Block-start states, transposed (S^T, see _states); Sb[-1] the final one.
    Sb = q.new_empty((len(starts) + 1, G, d_k, d_v), dtype=cdt)
    if S0 is None:
        Sb[0].zero_()
    else:
        Sb[0].copy_(S0.reshape(G, d_v, d_k).transpose(-1, -2))
    S = q.new_empty((L + 1, G, d_k, d_v), dtype=cdt)  # chunk-start states of one block (S^T)
    marks = torch.zeros((N, G, C), dtype=torch.bool, device=q.device)
    carry = torch.zeros(G, dtype=torch.bool, device=q.device)
    any_mark = False
    Ob = torch.empty((L, G, C, d_v), dtype=cdt, device=q.device)
    kern = _block_kernel(q, C, d_k, d_v)
    # The fused C forward (preparation included) takes float32 blocks with no padding and no
    # non-finite value, straight from the inputs into O; any other block takes _Block below.
    raw = _FUSED_FORWARD and kern is not None and fast and kern.supports(q, k, v, w, e, r)
    for b, n0 in enumerate(starts):
        n1 = min(N, n0 + L)
        if raw and not any_mark and not _Block._has_padding(bufs, ins[6], n0, n1, C):
            if kern.forward_raw(q, k, v, w, e, r, n0, n1 - n0, C, _EPS, Sb[b], Sb[b + 1], O):
                continue
        x = _Block(bufs, ins, n0, n1, C, G, fast)
        Sl = S[: n1 - n0 + 1]
        Sl[0] = Sb[b]
        o = Ob[: n1 - n0]
        # Without marks the kernel writes the gated outputs straight into O.
        direct = x.bad is None and not any_mark and O.dtype == torch.float32
        r_c = None if x.r is None else x.r.contiguous()
        out = _chunk_kernel.make_out(n0, r_c, O) if kern is not None and direct else None
        if kern is None or not kern.forward(x.q, x.k, x.X, x.e, Sl, o, out):
            out = None
            Uv, Wk = _split(x.wy()[2], d_v)
            U = _states(Uv, Wk, x.k, Sl)
            torch.matmul(x.q, Sl[:-1], out=o)  # Q S^T
            o.view(-1, C, d_v).baddbmm_(_tril_qk(x.q, x.k, 0).view(-1, C, C), U.reshape(-1, C, d_v))
        Sb[b + 1] = Sl[-1]
        if out is not None:
            continue
        # A sanitised block (padding) with no non-finite write marks nothing (a host read,
        # on the CPU only): later blocks keep their fast paths.
        bad = x.bad is not None and (not fast or bool(x.bad.any()))
        if bad or any_mark:
            m = marks[n0:n1]
            m.copy_(_marks(x.bad, carry) if x.bad is not None else carry.view(1, G, 1))
            carry = m[-1, :, -1].clone()
            any_mark = any_mark or bad
            # One row factor: the read gate, and NaN from a sequence's first non-finite write on.
            f = torch.ones_like(m, dtype=cdt) if x.r is None else x.r.clone()
            f.masked_fill_(m, float("nan"))
        else:
            f = x.r
        _mul_into(x.five(o), None if f is None else x.five(f.unsqueeze(-1)), O, n0, n1, C)
    S_T = torch.where(carry.view(G, 1, 1), float("nan"), Sb[-1].transpose(-1, -2))  # (cdt)
    ctx.save_for_backward(q, k, v, w, e, r, S0, mask, Sb, marks, O)
    ctx.C = C
    return O, S_T.reshape(B, H, d_v, d_k)


def _block_grads_torch(x, bufs, dO, O, Sb_b, S, dS, n0, n1, C, dims):
    """The PyTorch twin of the C block backward: ``(dqn, dkn, dvw, deb, drb, dS)`` of one block
    (gradients w.r.t. the normalised q, k, w.r.t. ``diag(w) V``, the erase and read gates
    before the marks, and the state gradient before the block, `[G, d_v, d_k]`)."""
    B, H, G, d_k, d_v, cdt, dtype = dims
    nl = n1 - n0
    KK, Ainv, Y = x.wy(keep_kk=True)
    Uv, Wk = _split(Y, d_v)
    Sl = S[: nl + 1]
    Sl[0] = Sb_b
    U = _states(Uv, Wk, x.k, Sl)  # recompute the block's chunk states from its first
    # [nl, G, d_v, d_k], copied untransposed: its two products below are then plain ones.
    S_start = Sl[:-1].transpose(-1, -2).contiguous()
    if dO is None:
        dO5 = torch.zeros((nl, B, H, C, d_v), dtype=cdt, device=x.q.device)
    elif x.r is None:  # the matmuls below need it contiguous
        dO5 = _gather(dO, bufs["dO"], n0, n1, C)
    else:
        dO5 = _source(dO, bufs["dO"], n0, n1, C)
    P = _tril_qk(x.q, x.k, 0)
    if x.r is None:
        drb, dOh = None, dO5.view(nl, G, C, d_v)
    else:
        r5 = x.five(x.r.unsqueeze(-1))
        if x.bad is None and cdt == dtype and bool((x.r > _R_MIN).all()):
            # The gate is a row factor: O_hat = O / r, from the saved output.
            drb = torch.linalg.vecdot(_source(O, bufs["o"], n0, n1, C), dO5).div_(r5[..., 0])
        else:  # recompute the output before the read gate
            O_hat = torch.baddbmm(
                (x.q @ Sl[:-1]).view(-1, C, d_v),
                P.view(-1, C, C),
                U.reshape(-1, C, d_v),
            )
            drb = (x.five(O_hat.view(nl, G, C, d_v)) * dO5).sum(-1)  # (dO5 may be half)
        drb = drb.reshape(nl, G, C)
        dOh = torch.mul(dO5, r5, out=bufs["dO"][:nl]).view(nl, G, C, d_v)
    dU = P.transpose(-1, -2) @ dOh  # output part of dU; the state part is added below
    Hq = dOh.transpose(-1, -2) @ x.q  # output part of dS per chunk, [L, G, d_v, d_k]
    dSp = S_start.new_empty(S_start.shape)  # gradient w.r.t. the state after chunk j
    if Wk is None:  # dS before chunk j = dS after the block + the Hq of the later chunks
        dSp[-1] = dS
        if nl > 1:
            torch.add(Hq[1:].flip(0).cumsum(0).flip(0), dS, out=dSp[:-1])
        dS = dSp[0] + Hq[0]
        dU.view(-1, C, d_v).baddbmm_(x.k.flatten(0, 1), dSp.flatten(0, 1).transpose(-1, -2))
    else:
        for j in range(nl - 1, -1, -1):
            dSp[j] = dS
            dU[j].baddbmm_(x.k[j], dS.transpose(-1, -2))
            dS = dS + Hq[j]
            dS.baddbmm_(dU[j].transpose(-1, -2), Wk[j], alpha=-1)
    erase = Wk is not None
    del P, Hq, Y, Uv, Wk  # block temporaries go as soon as they are dead (peak memory)
    dP = (dOh @ U.transpose(-1, -2)).tril_()
    dqn = dOh @ S_start
    dqn.view(-1, C, d_k).baddbmm_(dP.view(-1, C, C), x.k.reshape(-1, C, d_k))
    dkn = U @ dSp
    dkn.view(-1, C, d_k).baddbmm_(dP.transpose(-1, -2).reshape(-1, C, C), x.q.reshape(-1, C, d_k))
    if not erase:
        dvw, deb = dU, None
    else:
        # Y = [Uv | Wk] = A^{-1} X, X = [diag(w) V | diag(e) K], U = Uv - Wk S^T, so
        # dY = [dU | -dU S], dX = A^{-T} dY = [dvw | -dvw S] and dA = -dX Y^T = -dvw U^T
        # (strictly lower part only).
        dvw = Ainv.transpose(-1, -2) @ dU
        dBk = (dvw @ S_start).neg_()
        dA = (dvw @ U.transpose(-1, -2)).neg_().tril_(-1)
        deb = torch.linalg.vecdot(dBk, x.k) + torch.linalg.vecdot(dA, KK)
        dL = dA.mul_(x.e.unsqueeze(-1))
        dL = dL + dL.transpose(-1, -2)
        dkn.addcmul_(x.e.unsqueeze(-1), dBk)
        dkn.view(-1, C, d_k).baddbmm_(dL.view(-1, C, C), x.k.reshape(-1, C, d_k))
    return dqn, dkn, dvw, deb, drb, dS


def _block_grads_kernel(kern, x, bufs, dO, D, n0, n1, C, Sb_b, dims, tail=None):
    """:func:`_block_grads_torch` by the fused C backward; ``D`` (`[G, d_k, d_v]`, the
    gradient w.r.t. the transposed state) is updated in place. With ``tail`` the kernel writes
    the inputs' gradients itself (normalisation backward included) and this returns None."""
    G, d_v = dims[2], dims[4]
    nl = n1 - n0
    if dO is None:
        dO5 = bufs["dO"][:nl].zero_()
    else:
        dO5 = _gather(dO, bufs["dO"], n0, n1, C)
    if tail is None and "dqn" not in bufs:  # the block buffers, when a block needs them
        d_k = x.q.shape[-1]
        for name, d in (("dqn", d_k), ("dkn", d_k), ("dvw", d_v), ("deb", 0), ("drb", 0)):
            shape = bufs["q"].shape[:1] + (G, C) + ((d,) if d else ())
            bufs[name] = x.q.new_empty(shape)
    if tail is not None:
        dqn = dkn = dvw = deb = drb = None
    else:
        dqn, dkn = bufs["dqn"][:nl], bufs["dkn"][:nl]
        dvw = bufs["dvw"][:nl]
        deb = None if x.e is None else bufs["deb"][:nl]
        drb = None if x.r is None else bufs["drb"][:nl]

    ok = kern.backward(x.q, x.k, x.X, x.e, x.r, Sb_b, dO5.view(nl, G, C, d_v), D,
                       dqn, dkn, dvw, deb, drb, tail)  # fmt: skip
    if not ok:  # (sizes were checked by _block_kernel: only out of memory gets here)
        raise MemoryError("chunk kernel: out of memory for the block backward's workspace")
    return None if tail is not None else (dqn, dkn, dvw, deb, drb)


def _backward(ctx, dO, dS_last):
    q, k, v, w, e, r, S0, mask, Sb, marks, O = ctx.saved_tensors
    C = ctx.C
    B, _, H, d_k = q.shape
    d_v, G = v.shape[-1], B * H
    cdt = compute_dtype(q.dtype)
    ins = (q, k, v, w, e, r, _expand_mask(mask, H))
    N, L, shapes = _layout(q, v, ins, C)
    need = ctx.needs_input_grad
    shapes["dO"] = shapes["o"] = (L, B, H, C, d_v)
    bufs = _buffers(shapes, cdt, q.device)
    fast = _fast_ok(q)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dw = None if w is None else torch.empty_like(w)
    de = None if e is None else torch.empty_like(e)
    dr = None if r is None else torch.empty_like(r)
    dS = torch.zeros((G, d_v, d_k), dtype=cdt, device=q.device)
    if dS_last is not None:
        dS.copy_(dS_last.reshape(G, d_v, d_k))
    poisoned = marks[-1, :, -1]  # [G]: the sequence holds a non-finite write somewhere
    dS.masked_fill_(poisoned.view(G, 1, 1), float("nan"))
    S = q.new_empty((L + 1, G, d_k, d_v), dtype=cdt)  # S^T, as in the forward
    dims = (B, H, G, d_k, d_v, cdt, q.dtype)
    kern = _block_kernel(q, C, d_k, d_v)
    any_poison = bool(poisoned.any())
    v_raw = v if v.stride(-1) == 1 else v.contiguous()
    if kern is not None:  # the state gradient carried transposed
        D = dS.transpose(-1, -2).contiguous()
        # contiguous gradients: the kernel's tail writes them straight
        dq, dk, dv = (torch.empty(x.shape, dtype=x.dtype) for x in (q, k, v))
        dw, de, dr = (None if p is None else torch.empty(p.shape, dtype=p.dtype) for p in (w, e, r))
    # The fused C preparation + backward takes float32 blocks with no padding straight from
    # the inputs and dO (unit last strides) when no sequence holds a non-finite write.
    raw = (
        _FUSED_BACKWARD
        and kern is not None
        and fast
        and not any_poison
        and dO is not None
        and kern.supports(q, k, v, w, e, r, dO)
        and dO.stride(-1) == 1
    )
    o_raw = O if O.dtype == torch.float32 and O.stride(-1) == 1 else None
    starts = list(range(0, N, L))
    for b in reversed(range(len(starts))):
        n0 = starts[b]
        n1 = min(N, n0 + L)
        if raw and not _Block._has_padding(bufs, ins[6], n0, n1, C):
            D0 = D.clone()  # (a declined block has written part of D)
            if kern.backward_raw(q, k, v_raw, w, e, r, o_raw, dO, n0, n1 - n0, C, _EPS, _R_MIN,
                                 Sb[b], D, dq, dk, dv, dw, de, dr):  # fmt: skip
                continue
            D.copy_(D0)
        x = _Block(bufs, ins, n0, n1, C, G, fast)
        if kern is not None:
            tail = None
            if x.prepped and not any_poison:  # (a prepared block holds no non-finite value)
                o_saved = O if O.dtype == torch.float32 and O.stride(-1) == 1 else None
                tail = _chunk_kernel.make_tail(
                    n0, x.gq, x.bq, x.gk, x.bk, x.w, v_raw, dq, dk, dv, dw, de, dr, o_saved, _R_MIN
                )
            res = _block_grads_kernel(kern, x, bufs, dO, D, n0, n1, C, Sb[b], dims, tail)
            if res is None:
                continue
            dqn, dkn, dvw, deb, drb = res
        else:
            dqn, dkn, dvw, deb, drb, dS = _block_grads_torch(
                x, bufs, dO, O, Sb[b], S, dS, n0, n1, C, dims
            )
        # Back through mu(.): dx = (du - big u (u . du)) * g. Zeroed rows (padding, non-finite
        # writes) have g = 0 and, with zero keys, zero dU, so their inputs get no gradient. In a
        # marked sequence dS is NaN, which reaches dk, dv, dw, de everywhere; dq and dr are
        # marked from the first non-finite write on, as the recurrence would give.
        m = marks[n0:n1]
        gq = x.gq
        if x.bad is not None or any_poison:
            gq = gq.masked_fill(m.unsqueeze(-1), float("nan"))
            if drb is not None:
                drb.masked_fill_(m, float("nan"))
        dqn.addcmul_(x.q, torch.linalg.vecdot(x.q, dqn).unsqueeze_(-1).mul_(x.bq), value=-1)
        dkn.addcmul_(x.k, torch.linalg.vecdot(x.k, dkn).unsqueeze_(-1).mul_(x.bk), value=-1)
        _mul_into(x.five(dqn), x.five(gq), dq, n0, n1, C)
        _mul_into(x.five(dkn), x.five(x.gk), dk, n0, n1, C)
        dvw5 = x.five(dvw)
        _mul_into(dvw5, None if x.w is None else x.five(x.w.unsqueeze(-1)), dv, n0, n1, C)
        if dw is not None:
            _mul_into((dvw5 * x.v5).sum(-1), None, dw, n0, n1, C)
        for src, dst in ((deb, de), (drb, dr)):
            if dst is not None:
                _mul_into(x.five(src), None, dst, n0, n1, C)
    if kern is not None:
        dS = D.transpose(-1, -2)
    dS0 = dS.reshape(B, H, d_v, d_k).to(S0.dtype) if S0 is not None and need[6] else None
    return dq, dk, dv, dw, de, dr, dS0, None, None


def _backward_differentiable(ctx, dO, dS_last):
    """Double backward: gradients of the recurrent form (same function), keeping the graph."""
    from .attention import recurrent_causal_nam_attention

    q, k, v, w, e, r, S0, mask = ctx.saved_tensors[:8]
    cdt = compute_dtype(q.dtype)
    args = [None if x is None else x.to(cdt) for x in (q, k, v, w, e, r, S0)]
    O, S_T = recurrent_causal_nam_attention(
        *args[:6], initial_state=args[6], output_final_state=True, key_padding_mask=mask
    )
    inputs = (q, k, v, w, e, r, S0)
    wanted = [i for i, x in enumerate(inputs) if x is not None and ctx.needs_input_grad[i]]
    outs, cots = [], []
    for out, cot in ((O, dO), (S_T, dS_last)):
        if cot is not None:
            outs.append(out)
            cots.append(cot.to(cdt))
    grads = torch.autograd.grad(
        outs, [inputs[i] for i in wanted], cots, allow_unused=True, create_graph=True
    )
    res: list = [None] * 9
    for i, g in zip(wanted, grads, strict=True):
        res[i] = torch.zeros_like(inputs[i]) if g is None else g.to(inputs[i].dtype)
    return tuple(res)


def chunk_causal_nam_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    p_w: Tensor | None = None,
    p_e: Tensor | None = None,
    p_r: Tensor | None = None,
    *,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
    key_padding_mask: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    """Causal NAM attention with write and erase gates, computed chunk-parallel.

    ``M_t = M_{t-1} + p_w v_t k_t^T - p_e (M_{t-1} k_t) k_t^T`` and ``out_t = p_r M_t q_t`` with
    ``q_t, k_t`` unit-normalised inside; the same numbers as :func:`naive_causal_nam_attention`.
    bfloat16/float16 inputs are accumulated in float32: buffers, products and the carried state are
    float32 inside; the output comes back in q's dtype and the final state in float32 (so a state
    carried across segments loses nothing).

    On CUDA tensors, when flash-linear-attention (``fla``) is importable, the work goes to its Triton
    DPLR / delta-rule kernels (see ``functional/_fla.py``; ``NAM_DISABLE_FLA=1`` turns that off);
    everywhere else this pure-PyTorch chunk form runs (any device).

    Args:
        q: `[B, T, H, d_k]`; k: `[B, T, H, d_k]`; v: `[B, T, H, d_v]`; any ``T >= 1``.
        p_w, p_e, p_r: `[B, T, H]` write / erase / read probabilities in [0, 1] (NaN rejected);
            None means ``p_w = 1``, ``p_e = 0`` (no erase), ``p_r = 1``. q's dtype, or float32
            for half q.
        initial_state: `[B, H, d_v, d_k]` memory carried from a previous segment (None = zeros),
            q's dtype or float32 for half q.
        output_final_state: also return the memory after the last token.
        key_padding_mask: `[B, T]` bool, True = padding: a padded step leaves the memory unchanged
            and outputs zeros, whatever values the padded positions hold (NaN and inf included).
        chunk_size: tokens per chunk ``C`` (positive int); 64 is a good CPU default for d = 64.
    Returns:
        ``(out [B, T, H, d_v], final_state [B, H, d_v, d_k] or None)``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    B, T, H, d_k, d_v = check_qkv(q, k, v)
    mask = check_padding_mask(key_padding_mask, B, T)
    p_w = check_gate("p_w", p_w, B, T, H, q, mask)
    p_e = check_gate("p_e", p_e, B, T, H, q, mask)
    p_r = check_gate("p_r", p_r, B, T, H, q, mask)
    state = check_state("initial_state", initial_state, B, H, d_v, d_k, q)
    if _fla.use_fla(q):  # CUDA tensors with flash-linear-attention importable: its Triton kernels
        out, S = _fla.fla_causal_nam_attention(
            q, k, v, p_w, p_e, p_r, state, mask, *_fla.fla_kernels()
        )
    else:
        out, S = ChunkNAMFunction.apply(q, k, v, p_w, p_e, p_r, state, mask, min(chunk_size, T))
    return out, (S if output_final_state else None)
