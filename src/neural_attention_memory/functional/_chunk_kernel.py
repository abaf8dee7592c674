"""Build, cache and call the chunk form's fused C kernels (``_chunk_kernel.c``): the block
preparation, and the block forward and backward (every chunk of a block head by head, with the
chunk's temporaries in cache).

Built like the models' C kernels, by :mod:`._cbuild` (plain C over raw pointers, compiled once
per machine into the cache folder, ``$NAM_KERNEL_CACHE`` overrides it) and loaded with
``ctypes``. If there is no compiler, compilation
fails, or ``NAM_CHUNK_KERNEL=0`` is set, :func:`get` returns None and the chunk form prepares
its blocks with PyTorch ops instead (the same numbers to rounding; the tests compare both).
CPU float32 tensors only.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch
from torch import Tensor

from . import _cbuild

__all__ = ["ChunkKernel", "Grads", "Out", "Raw", "Tail", "build", "get", "make_out", "make_tail"]

SOURCE = Path(__file__).with_name("_chunk_kernel.c")
FLAGS = _cbuild.BASE_FLAGS
_lock = threading.Lock()
_state: dict[str, object] = {}


def _compiler() -> str | None:
    return _cbuild.compiler()


def build(verbose: bool = False) -> Path:
    """Compile the kernel into the cache (if not there yet) and return the library's path.

    Raises ``RuntimeError`` with the compiler's message when it cannot be built.
    """
    return _cbuild.compile_library(SOURCE, "chunk_kernel", FLAGS, _compiler(), verbose)


def _ptr(x: Tensor | None) -> int | None:
    return None if x is None else x.data_ptr()


def _check(*xs: Tensor | None) -> None:
    for x in xs:
        if x is not None and not (
            x.is_contiguous() and x.dtype == torch.float32 and x.device.type == "cpu"
        ):
            raise ValueError(
                f"chunk kernel: expected contiguous CPU float32, got {x.dtype} {tuple(x.stride())}"
            )


def _strides(x: Tensor) -> ctypes.Array:
    return (ctypes.c_long * 3)(*x.stride()[:3])


class Out(ctypes.Structure):
    """``Out`` of ``_chunk_kernel.c``: where the block forward writes its outputs."""

    _fields_ = [
        ("H", ctypes.c_long), ("T", ctypes.c_long), ("n0", ctypes.c_long),
        ("R", ctypes.c_void_p), ("O", ctypes.c_void_p), ("os", ctypes.c_long * 3),
    ]  # fmt: skip


def make_out(n0: int, r: Tensor | None, O: Tensor) -> Out:
    """An :class:`Out` for chunks from ``n0`` on: ``r`` the block's read gate `[L, G, C]`
    (contiguous, or None), ``O`` the float32 output `[B, T, H, d_v]` with a unit last stride.
    The tensors must outlive the call that uses it."""
    _check(r)
    if O.stride(-1) != 1 or O.dtype != torch.float32:
        raise ValueError("chunk kernel out: expected float32 with a unit last stride")
    _, T, H, _ = O.shape
    return Out(H, T, n0, _ptr(r), _ptr(O), (ctypes.c_long * 3)(*O.stride()[:3]))


class Grads(ctypes.Structure):
    """``Grads`` of ``_chunk_kernel.c``: the raw inputs' gradients a block backward writes."""

    _P, _L3 = ctypes.c_void_p, ctypes.c_long * 3
    _fields_ = [
        ("dq", _P), ("dk", _P), ("dv", _P), ("qs", _L3), ("ks", _L3), ("dvs", _L3),
        ("dw", _P), ("de", _P), ("dr", _P), ("gs", _L3),
    ]  # fmt: skip


def _grads(dq, dk, dv, dw, de, dr) -> Grads:
    for x in (dq, dk, dv):
        if x.stride(-1) != 1 or x.dtype != torch.float32:
            raise ValueError("chunk kernel: expected float32 gradients with a unit last stride")
    gate = next((x for x in (dw, de, dr) if x is not None), None)
    gs = gate.stride() if gate is not None else (0, 0, 0)
    for x in (dw, de, dr):
        if x is not None and (x.stride() != gs or x.dtype != torch.float32):
            raise ValueError("chunk kernel: gate gradients must share float32 strides")
    L3 = ctypes.c_long * 3
    return Grads(
        *(_ptr(x) for x in (dq, dk, dv)), *(L3(*x.stride()[:3]) for x in (dq, dk, dv)),
        *(_ptr(x) for x in (dw, de, dr)), L3(*gs),
    )  # fmt: skip


class Raw(ctypes.Structure):
    """``Raw`` of ``_chunk_kernel.c``: the fused block backward's inputs and gradients."""

    _P, _L3 = ctypes.c_void_p, ctypes.c_long * 3
    _fields_ = [
        ("H", ctypes.c_long), ("T", ctypes.c_long), ("n0", ctypes.c_long),
        ("eps", ctypes.c_float), ("rmin", ctypes.c_float),
        ("q", _P), ("k", _P), ("v", _P), ("w", _P), ("e", _P), ("r", _P),
        ("qs", _L3), ("ks", _L3), ("vs", _L3), ("gs", _L3),
        ("O", _P), ("dO", _P), ("os", _L3), ("dos", _L3), ("out", Grads),
    ]  # fmt: skip


class Tail(ctypes.Structure):
    """``Tail`` of ``_chunk_kernel.c``: where the block backward writes the raw inputs' gradients."""

    _P, _L3 = ctypes.c_void_p, ctypes.c_long * 3
    _fields_ = [
        ("H", ctypes.c_long), ("T", ctypes.c_long), ("n0", ctypes.c_long),
        ("gq", _P), ("bq", _P), ("gk", _P), ("bk", _P), ("w", _P), ("v", _P), ("vs", _L3),
        ("out", Grads), ("O", _P), ("os", _L3), ("rmin", ctypes.c_float),
    ]  # fmt: skip


def make_tail(n0: int, gq, bq, gk, bk, w, v, dq, dk, dv, dw, de, dr, O=None, rmin=1.0) -> Tail:
    """A :class:`Tail` for chunks from ``n0`` on: ``gq, bq, gk, bk, w`` the block's contiguous
    `[L, G, C]` buffers (``w`` may be None), ``v`` the raw values `[B, T, H, d_v]` (unit last
    stride), ``dq, dk, dv`` `[B, T, H, *]` and ``dw, de, dr`` `[B, T, H]` (or None, all three
    with the same strides) float32 gradients with a unit last stride. ``O``: the forward's
    float32 output `[B, T, H, d_v]` (unit last stride) or None; a chunk whose read gates all
    exceed ``rmin`` then takes the output before the gate as ``O / r`` instead of recomputing
    it. The tensors must outlive the call that uses the tail."""
    _check(gq, bq, gk, bk, w)
    if v.stride(-1) != 1 or v.dtype != torch.float32:
        raise ValueError("chunk kernel tail: expected float32 values with a unit last stride")
    if O is not None and (O.stride(-1) != 1 or O.dtype != torch.float32):
        raise ValueError("chunk kernel tail: expected a float32 output with a unit last stride")
    _, T, H, _ = dq.shape
    L3 = ctypes.c_long * 3
    return Tail(
        H, T, n0, *(_ptr(x) for x in (gq, bq, gk, bk, w, v)), L3(*v.stride()[:3]),
        _grads(dq, dk, dv, dw, de, dr),
        _ptr(O), L3(*(O.stride()[:3] if O is not None else (0, 0, 0))), rmin,
    )  # fmt: skip


def _contig(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.contiguous()


class ChunkKernel:
    """The loaded library: :meth:`prep` (``nam_chunk_prep_f32``), :meth:`forward`
    (``nam_chunk_fwd_f32``) and :meth:`backward` (``nam_chunk_bwd_f32``)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        Li, P = ctypes.c_long, ctypes.c_void_p
        fn = lib.nam_chunk_prep_f32
        fn.argtypes = [Li] * 8 + [ctypes.c_float] + [P] * 20
        fn.restype = ctypes.c_int
        self._prep = fn
        self._fwd = lib.nam_chunk_fwd_f32
        self._fwd.argtypes = [Li] * 5 + [P] * 6 + [ctypes.POINTER(Out)]
        self._fwd.restype = ctypes.c_int
        self._bwd = lib.nam_chunk_bwd_f32
        self._bwd.argtypes = [Li] * 5 + [P] * 13 + [ctypes.POINTER(Tail)]
        self._bwd.restype = ctypes.c_int
        self._fwd_raw = lib.nam_chunk_fwd_raw_f32
        self._fwd_raw.argtypes = [Li] * 8 + [ctypes.c_float] + [P] * 14
        self._fwd_raw.restype = ctypes.c_int
        self._bwd_raw = lib.nam_chunk_bwd_raw_f32
        self._bwd_raw.argtypes = [Li] * 5 + [ctypes.POINTER(Raw), P, P]
        self._bwd_raw.restype = ctypes.c_int
        self._nc = lib.nam_noncausal_fwd_f32
        self._nc.argtypes = [Li] * 5 + [ctypes.c_float] + [P] * 11
        self._nc.restype = ctypes.c_int
        self.path = path

    @staticmethod
    def fits(C: int, d_k: int, d_v: int) -> bool:
        """Whether the block forward/backward take these sizes (multiples of 16)."""
        return C % 16 == 0 and d_k % 16 == 0 and d_v % 16 == 0

    def forward(self, q, k, X, e, St, O, out=None) -> bool:
        """One block: ``q, k`` `[L, G, C, d_k]` (unit-normalised), ``X`` `[L, G, C, d_x]`
        (``[diag(w) V | diag(e) K]``, or ``diag(w) V`` when ``e`` is None), ``e`` `[L, G, C]`
        or None; ``St`` `[L + 1, G, d_k, d_v]` transposed chunk-start states (``St[0]`` given,
        the rest written); ``O`` `[L, G, C, d_v]` written (before the read gate), or with an
        :class:`Out` (:func:`make_out`) the outputs times the read gate go straight into its
        tensor (``O`` may then be None). Every tensor a contiguous CPU float32 one (``e`` is
        made so); False when the sizes do not fit."""
        L, G, C, dk = q.shape
        dv = St.shape[-1]
        e = _contig(e)
        _check(q, k, X, e, St, O)
        rc = self._fwd(
            L, G, C, dk, dv, *(_ptr(x) for x in (q, k, X, e, St, O)),
            None if out is None else ctypes.byref(out),
        )  # fmt: skip
        return rc == 0

    def forward_raw(self, q, k, v, w, e, r, n0: int, L: int, C: int, eps: float, S0, S1, O) -> bool:
        """Prepare and run chunks ``n0 : n0 + L`` in one call, straight from the caller's
        float32 CPU tensors: ``q, k`` `[B, T, H, d_k]`, ``v`` `[B, T, H, d_v]` (unit last
        strides), gates ``w, e, r`` `[B, T, H]` or None; ``S0`` `[B * H, d_k, d_v]` the
        transposed state before the block, ``S1`` (same shape) written with the one after it,
        and the gated outputs written into ``O`` `[B, T, H, d_v]` (unit last stride). False
        when a row is not finite or the sizes do not fit (``S1`` and ``O`` are then partly
        written: the caller redoes the block on another path)."""
        B, T, H, dk = q.shape
        dv = v.shape[-1]
        if any(x.stride(-1) != 1 for x in (q, k, v, O)):
            return False
        w, e, r = (None if p is None else p.contiguous() for p in (w, e, r))
        _check(w, e, r, S0, S1)
        gs = (ctypes.c_long * 3)(T * H, H, 1)
        rc = self._fwd_raw(
            B, H, C, L, n0, T, dk, dv, eps,
            *(_strides(x) for x in (q, k, v)), gs, _strides(O),
            *(_ptr(x) for x in (q, k, v, w, e, r, S0, S1, O)),
        )  # fmt: skip
        return rc == 0

    def noncausal(self, q, k, v, w, r, eps: float) -> Tensor | None:
        """Non-causal NAM attention of float32 CPU ``q, k`` `[B, T, H, d_k]`, ``v``
        `[B, T, H, d_v]` (unit last strides), gates ``w, r`` `[B, T, H]` or None, no padding:
        the output `[B, T, H, d_v]`, or None when a norm of q or k is not finite or the sizes
        are not multiples of 16 (the caller then takes its exact path)."""
        B, T, H, dk = q.shape
        dv = v.shape[-1]
        if dk % 16 or dv % 16 or any(x.stride(-1) != 1 for x in (q, k, v)):
            return None
        w, r = (None if p is None else p.contiguous() for p in (w, r))
        _check(w, r)
        O = torch.empty((B, T, H, dv), dtype=torch.float32)
        gs = w.stride() if w is not None else (r.stride() if r is not None else (0, 0, 0))
        rc = self._nc(
            B, T, H, dk, dv, eps, *(_strides(x) for x in (q, k, v)), (ctypes.c_long * 3)(*gs),
            _strides(O), *(_ptr(x) for x in (q, k, v, w, r, O)),
        )  # fmt: skip
        return O if rc == 0 else None

    def backward(self, q, k, X, e, r, S0t, dO, D, dq, dk, dv, de, dr, tail=None) -> bool:
        """Gradients of one block (inputs as in :meth:`forward`, ``r`` `[L, G, C]` or None,
        ``S0t`` `[G, d_k, d_v]` the block's first state transposed, ``dO`` `[L, G, C, d_v]`).
        ``D`` `[G, d_k, d_v]` is the gradient w.r.t. the transposed state after the block and
        becomes the one before it. Without ``tail`` written: ``dq, dk`` `[L, G, C, d_k]` (w.r.t.
        the normalised q, k), ``dv`` `[L, G, C, d_v]` (w.r.t. ``diag(w) V``), ``de``, ``dr``
        `[L, G, C]` (where ``e``, ``r`` are given; ``dr`` is the output before the read gate
        dotted with ``dO``). With a :class:`Tail` (:func:`make_tail`) the gradients of the raw
        inputs go straight into its tensors instead (``dq .. dr`` may then be None)."""
        L, G, C, d_k = q.shape
        d_v = dO.shape[-1]
        e, r = _contig(e), _contig(r)
        _check(q, k, X, e, r, S0t, dO, D, dq, dk, dv, de, dr)
        rc = self._bwd(
            L, G, C, d_k, d_v,
            *(_ptr(x) for x in (q, k, X, e, r, S0t, dO, D, dq, dk, dv, de, dr)),
            None if tail is None else ctypes.byref(tail),
        )  # fmt: skip
        return rc == 0

    def backward_raw(self, q, k, v, w, e, r, O, dO, n0: int, L: int, C: int, eps: float,
                     rmin: float, S0, D, dq, dk, dv, dw, de, dr) -> bool:  # fmt: skip
        """Gradients of chunks ``n0 : n0 + L`` prepared and recomputed in one call, straight
        from the caller's float32 CPU tensors (no padding): inputs as in :meth:`forward_raw`,
        ``O`` the forward's output (or None: the output before the read gate is recomputed;
        else taken as ``O / r`` in chunks whose read gates all exceed ``rmin``), ``dO`` its
        gradient `[B, T, H, d_v]` (unit last strides); ``S0`` `[B * H, d_k, d_v]` the
        transposed state at the block's start, ``D`` (same shape) the gradient w.r.t. the
        transposed state after the block, updated to the one before it; the raw inputs'
        gradients are written into ``dq, dk, dv`` `[B, T, H, *]` and ``dw, de, dr``
        `[B, T, H]` (or None; unit last strides). False when a row is not finite or the sizes
        do not fit: ``D`` and the gradients are then partly written."""
        B, T, H, d_k = q.shape
        d_v = v.shape[-1]
        if any(x.stride(-1) != 1 for x in (q, k, v, dO) + (() if O is None else (O,))):
            return False
        w, e, r = (None if p is None else p.contiguous() for p in (w, e, r))
        _check(w, e, r, S0, D)
        if any(x.dtype != torch.float32 for x in (q, k, v, dO)):
            raise ValueError("chunk kernel: expected float32 inputs")
        L3 = ctypes.c_long * 3
        gs = L3(T * H, H, 1)
        zero = L3(0, 0, 0)
        raw = Raw(
            H, T, n0, eps, rmin, *(_ptr(x) for x in (q, k, v, w, e, r)),
            *(_strides(x) for x in (q, k, v)), gs, _ptr(O), _ptr(dO),
            zero if O is None else _strides(O), _strides(dO), _grads(dq, dk, dv, dw, de, dr),
        )  # fmt: skip
        rc = self._bwd_raw(B, L, C, d_k, d_v, ctypes.byref(raw), _ptr(S0), _ptr(D))
        return rc == 0

    @staticmethod
    def supports(*xs: Tensor | None) -> bool:
        """Whether every given tensor is a CPU float32 tensor (None is ignored)."""
        return all(x is None or (x.device.type == "cpu" and x.dtype == torch.float32) for x in xs)

    def prep(self, q, k, v, w, e, r, n0: int, L: int, C: int, eps: float, out: dict) -> bool:
        """Fill ``out`` (contiguous float32 buffers ``q, k, x, gq, bq, gk, bk`` and ``w, e, r``
        where those gates are given, shapes as in ``_chunk_kernel.c``) for chunks
        ``n0 : n0 + L`` of the `[B, T, H, d]` inputs; False when a row is not finite (the
        caller then prepares the block another way)."""
        B, T, H, dk = q.shape
        dv = v.shape[-1]
        q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
        w, e, r = (None if p is None else p.contiguous() for p in (w, e, r))
        gs = (ctypes.c_long * 3)(T * H, H, 1)
        rc = self._prep(
            B, H, C, L, n0, T, dk, dv, eps,
            _strides(q), _strides(k), _strides(v), gs,
            q.data_ptr(), k.data_ptr(), v.data_ptr(), _ptr(w), _ptr(e), _ptr(r),
            *(out[n].data_ptr() for n in ("q", "k", "x", "gq", "bq", "gk", "bk")),
            _ptr(out.get("w")), _ptr(out.get("e")), _ptr(out.get("r")),
        )  # fmt: skip
        return rc == 0


def get() -> ChunkKernel | None:
    """The kernel, built and loaded once per process; None when disabled or unavailable."""
    kernel = _cbuild.load_once(
        _state,
        _lock,
        "NAM_CHUNK_KERNEL",
        lambda: ChunkKernel(build()),
        "chunk-form C kernel unavailable, using PyTorch ops",
    )
    return kernel  # type: ignore[return-value]
