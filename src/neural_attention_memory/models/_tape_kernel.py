"""Build, cache and call the C kernels (``_tape_kernel.c``) of NAM-TM: the tape recurrence
(forward and backward), the fused per-step plan and output scaling around it, the bidirectional
GRU of the 2022 controller, and the packing of states into the kernel's lane layout.

The kernel is plain C over raw pointers (no PyTorch headers), compiled once per machine with the
system C compiler (``cc -O3 -march=native``, about a second) into a cache folder and loaded with
``ctypes``. If there is no compiler, compilation fails, or ``NAM_TAPE_KERNEL=0`` is set,
:func:`get` returns None and NAM-TM runs its PyTorch loop instead (same results; the tests compare
both). ``NAM_KERNEL_CACHE`` overrides the cache folder (default ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``neural_attention_memory``). The first NAM-TM forward builds it; :func:`build`
does it eagerly (e.g. at install or CI set-up).

CPU tensors of float32 / float64 only; anything else uses the PyTorch loop.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch
from torch import Tensor

from ..functional import _cbuild

__all__ = ["TapeKernel", "build", "get"]

SOURCE = Path(__file__).with_name("_tape_kernel.c")
FLAGS = (
    *_cbuild.BASE_FLAGS,
    "-Wno-psabi",  # (notes about passing wide vectors between inline helpers)
)
_lock = threading.Lock()
_state: dict[str, object] = {}


def _compiler() -> str | None:
    return _cbuild.compiler()


def build(verbose: bool = False) -> Path:
    """Compile the kernel into the cache (if not there yet) and return the library's path.

    Raises ``RuntimeError`` with the compiler's message when it cannot be built.
    """
    return _cbuild.compile_library(SOURCE, "tape_kernel", FLAGS, _compiler(), verbose)


# The C functions: (name without the dtype suffix, leading int64 sizes, int args, pointer args).
_SIGNATURES = (
    ("namtm_forward", 5, 1, 14),
    ("namtm_backward", 5, 1, 22),
    ("bigru_forward", 3, 0, 7),
    ("bigru_backward", 3, 0, 7),
    ("namtm_plan", 5, 0, 11),
    ("namtm_post", 4, 0, 3),
    ("namtm_post_backward", 4, 0, 5),
    ("namtm_plan_backward", 5, 0, 13),
    ("lanes_pack", 2, 0, 2),
    ("lanes_unpack", 2, 0, 2),
)


class TapeKernel:
    """The loaded library, called on tensors (see ``_tape_kernel.c``): the tape recurrence in the
    lane layout (:meth:`scan`, :meth:`scan_backward`) or on rows (:meth:`forward`,
    :meth:`backward`), the fused layer's :meth:`plan` / :meth:`post` and their backwards,
    :meth:`pack` / :meth:`unpack` of states, :meth:`bigru_forward` / :meth:`bigru_backward`."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        P, Li, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        self._fns: dict[tuple[str, str], ctypes._CFuncPtr] = {}
        for suffix in ("f32", "f64"):
            for name, n_sizes, n_ints, n_ptrs in _SIGNATURES:
                fn = getattr(lib, f"{name}_{suffix}")
                fn.argtypes = [Li] * n_sizes + [I] * n_ints + [P] * n_ptrs
                fn.restype = I
                self._fns[name, suffix] = fn
        self.path = path

    @staticmethod
    def supports(x: Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)

    @staticmethod
    def _suffix(x: Tensor) -> str:
        return "f32" if x.dtype == torch.float32 else "f64"

    def _fn(self, name: str, like: Tensor) -> ctypes._CFuncPtr:
        """The C function ``name`` for ``like``'s dtype."""
        return self._fns[name, self._suffix(like)]

    @staticmethod
    def _ptr(x: Tensor | None) -> int | None:
        return None if x is None else x.data_ptr()

    def scan(self, W, NPE, Q, A, KK, PWK, TT, KT, H, d, key_mode):
        """The tape recurrence on lane-layout tensors (``TT, KT, H`` updated in place to the
        final state). Returns reads ``R [T, G, d, LANES]`` and the saved ``aux``."""
        T, G, D, _ = W.shape
        L = H.shape[-2] // 2
        mode = _MODES[key_mode]
        R = W.new_empty(T, G, d, LANES)
        HS = W.new_empty(T, G, 2 * L, LANES)
        NR = W.new_empty(T, G, 2, LANES)
        THW = None if NPE is None else W.new_empty(T, G, D, LANES)
        S = W.new_empty(T, G, L, LANES) if mode == 2 and NPE is not None else None
        p = self._ptr
        rc = self._fn("namtm_forward", W)(
            T, G, d, D, L, mode,
            p(W), p(NPE), p(Q), p(A), p(KK), p(PWK),
            p(TT), p(KT), p(H), p(R), p(HS), p(NR), p(THW), p(S),
        )  # fmt: skip
        if rc:
            raise MemoryError("NAM-TM tape kernel: out of memory for its scratch buffers")
        return R, (HS, NR, THW, S)

    def scan_backward(self, lanes, aux, TT, KT, dR, dTT, dKT, dH, d, key_mode):
        """Gradients of :meth:`scan` in lanes. ``lanes``: its (W, NPE, Q, A, KK, PWK); ``TT, KT``:
        final tapes and ``dTT, dKT, dH`` the final state's gradients, all rebuilt / turned in
        place into the initial ones. Returns (dW, dNPE, dQ, dA, dKK, dPWK)."""
        W, NPE, Q, A, KK, PWK = lanes
        HS, NR, THW, S = aux
        T, G, D, _ = W.shape
        L = HS.shape[-2] // 2
        grads = [None if t is None else torch.empty_like(t) for t in lanes]
        dW, dNPE, dQ, dA, dKK, dPWK = grads
        p = self._ptr
        rc = self._fn("namtm_backward", W)(
            T, G, d, D, L, _MODES[key_mode],
            p(W), p(NPE), p(Q), p(A), p(KK), p(PWK), p(HS), p(NR), p(THW), p(S),
            p(TT), p(KT), p(dR), p(dTT), p(dKT), p(dH),
            p(dW), p(dNPE), p(dQ), p(dA), p(dKK), p(dPWK),
        )  # fmt: skip
        if rc:
            raise MemoryError("NAM-TM tape kernel: out of memory for its scratch buffers")
        return grads

    def forward(self, W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode):
        """Same contract as ``_tape_scan._torch_forward``; aux (for :meth:`backward`) holds the
        saved per-step vectors and the final tapes, in the kernel's lane layout."""
        T, BN, D = W.shape
        L = H0.shape[-1]
        G = -(-BN // LANES)
        lanes = [_lanes(t, G) for t in (W, NPE, Q, A, KK, PWK)]
        TT, KT, H = (_lanes(t, G, state=True) for t in (TT0, KT0, H0))
        R, aux = self.scan(*lanes, TT, KT, H, d, key_mode)
        back = lambda t, *shape: None if t is None else _unlanes(t, BN, *shape)  # noqa: E731
        return (
            back(R, T, BN, 1, d),
            back(TT, BN, D, L),
            back(KT, BN, L, d),
            back(H, BN, 2, L),
            (*aux, TT, KT),
        )

    def backward(self, inputs, TT_T, KT_T, aux, dR, dTT_T, dKT_T, dH_T, d, key_mode):
        """Gradients w.r.t. (W, NPE, Q, A, KK, PWK, TT0, KT0, H0)."""
        TT0, KT0, H0 = inputs[6:]
        *aux, TTl, KTl = aux
        G = aux[0].shape[1]
        BN = inputs[0].shape[1]
        lanes = [_lanes(t, G) for t in inputs[:6]]
        TT = TTl.clone()  # rebuilt in place (a second backward must find the final tapes)
        KT = None if KTl is None else KTl.clone()
        dTT, dKT, dH = (_lanes(t, G, state=True) for t in (dTT_T, dKT_T, dH_T))
        grads = self.scan_backward(lanes, aux, TT, KT, _lanes(dR, G), dTT, dKT, dH, d, key_mode)
        back = lambda t, like: None if t is None else _unlanes(t, BN, *like.shape)  # noqa: E731
        return (
            *(back(g, x) for g, x in zip(grads, inputs[:6])),
            _unlanes(dTT, BN, *TT0.shape),
            back(dKT, KT0),
            _unlanes(dH, BN, *H0.shape),
        )

    # -- the fused layer: plan -> scan -> p_r * reads (see namtm_plan in the C file) -------------

    def plan(self, cfg, Z, VK, pad, G, d, key_mode, erase):
        """Rows ``Z [B, T, N, Cs]``, ``VK [B, T, VKW]``, ``pad [B, T]`` uint8 or None -> the scan's
        lane inputs (W, NPE, Q, A, KK, PWK) and ``PR [T, G, LANES]`` (``p_r``)."""
        B, T, N, Cs = Z.shape
        D = 2 * d if key_mode == "position" else d
        new = lambda *shape: Z.new_empty(T, G, *shape, LANES)  # noqa: E731
        W, A, PR = new(D), new(8), new(1)
        NPE = new(1) if erase else None
        Q = new(d) if key_mode is not None else None
        KK = new(d) if key_mode == "key" else None
        PWK = new(1) if key_mode == "key" else None
        p = self._ptr
        self._fn("namtm_plan", Z)(
            B, T, N, d, Cs, p(cfg), p(Z), p(VK), p(pad),
            p(W), p(NPE), p(Q), p(A), p(KK), p(PWK), p(PR),
        )  # fmt: skip
        return (W, NPE, Q, A, KK, PWK), PR

    def post(self, R, PR, B, N):
        """Reads in lanes -> rows ``[B, T, N * d]`` of ``p_r * r``."""
        T, _, d, _ = R.shape
        RP = R.new_empty(B, T, N * d)
        self._fn("namtm_post", R)(B, T, N, d, self._ptr(R), self._ptr(PR), self._ptr(RP))
        return RP

    def post_backward(self, R, PR, dRP, N):
        B, T, _ = dRP.shape
        d = R.shape[2]
        dR, dPR = torch.empty_like(R), torch.empty_like(PR)
        p = self._ptr
        self._fn("namtm_post_backward", R)(B, T, N, d, p(R), p(PR), p(dRP), p(dR), p(dPR))
        return dR, dPR

    def plan_backward(self, cfg, Z, VK, pad, lane_grads, dPR, d):
        dZ, dVK = torch.empty_like(Z), torch.empty_like(VK)
        B, T, N, Cs = Z.shape
        p = self._ptr
        self._fn("namtm_plan_backward", Z)(
            B, T, N, d, Cs, p(cfg), p(Z), p(VK), p(pad), *(p(g) for g in lane_grads),
            p(dPR), p(dZ), p(dVK),
        )  # fmt: skip
        return dZ, dVK

    def pack(self, x: Tensor, BN: int, G: int, zero: bool = False) -> Tensor:
        """A state ``x [BN, ...]`` (any leading shape of ``BN`` rows) -> a fresh lane-layout
        tensor ``[G, R, LANES]`` (R = cells per row; the C twin of :func:`_lanes` with
        ``state=True``). ``zero``: zeros of that layout (``x`` gives only shape and dtype)."""
        R = x.numel() // BN
        src = None if zero else x.reshape(BN, R).contiguous()
        out = x.new_empty(G, R, LANES)
        self._fn("lanes_pack", x)(BN, R, self._ptr(src), self._ptr(out))
        return out

    def unpack(self, y: Tensor, BN: int, *shape: int) -> Tensor:
        """Lanes ``[G, R, LANES]`` -> rows shaped ``shape`` (``[BN, ...]``; :func:`_unlanes`)."""
        out = y.new_empty(shape)
        self._fn("lanes_unpack", y)(BN, y.shape[1], self._ptr(y), self._ptr(out))
        return out

    def bigru_forward(self, GI, lengths, W, BH):
        """Both directions' GRU recurrences from zero states (see ``bigru_forward`` in the C file).

        Args: ``GI [B, T, 2, 3H]`` input projections (bias included), ``lengths [B]`` int64 or
        None, ``W [2, 3H, H]`` (``W_hh``), ``BH [2, 3H]`` (``b_hh``).
        Returns: outputs ``[B, T, 2H]`` (zero at padded positions) and, for
        :meth:`bigru_backward`, the per-step outputs and gates in the kernel's lane layout.
        """
        B, T, _, H3 = GI.shape
        H = H3 // 3
        G = -(-B // LANES)
        out = GI.new_empty(B, T, 2 * H)
        HL = GI.new_empty(2, T, G, H, LANES)
        GT = GI.new_empty(2, T, G, 4 * H, LANES)
        p = self._ptr
        rc = self._fn("bigru_forward", GI)(
            T, B, H, p(lengths), p(GI), p(W), p(BH), p(out), p(HL), p(GT)
        )
        if rc:
            raise MemoryError("NAM-TM GRU kernel: out of memory for its scratch buffers")
        return out, (HL, GT)

    def bigru_backward(self, lengths, W, saved, d_out):
        """``d_out [B, T, 2H]`` -> gradients of ``GI`` and of ``gh = h W_hh^T + b_hh``, each
        ``[B, T, 2, 3H]`` (zero at padded positions)."""
        HL, GT = saved
        B, T, H2 = d_out.shape
        H = H2 // 2
        dGI = d_out.new_empty(B, T, 2, 3 * H)
        dGH = d_out.new_empty(B, T, 2, 3 * H)
        p = self._ptr
        rc = self._fn("bigru_backward", d_out)(
            T, B, H, p(lengths), p(W), p(HL), p(GT), p(d_out), p(dGI), p(dGH)
        )
        if rc:
            raise MemoryError("NAM-TM GRU kernel: out of memory for its scratch buffers")
        return dGI, dGH


_MODES = {None: 0, "position": 1, "key": 2}
LANES = 16  # C of _tape_kernel.c: (batch, tape) pairs run side by side


def _lanes(t: Tensor | None, G: int, state: bool = False) -> Tensor | None:
    """`[T, BN, ...]` (``state``: `[BN, ...]`) -> the kernel's `[T, G, prod(...), LANES]` (`[G,
    prod(...), LANES]`): pair ``bn`` goes to group ``bn // LANES``, lane ``bn % LANES``; missing
    pairs are zeros. Always a fresh contiguous tensor (the kernel writes into state tensors)."""
    if t is None:
        return None
    x = t.unsqueeze(0) if state else t
    T, BN = x.shape[:2]
    flat = x.reshape(T, BN, -1)
    out = flat.new_zeros(T, G * LANES, flat.shape[-1]) if G * LANES != BN else None
    if out is not None:
        out[:, :BN] = flat
        flat = out
    out = flat.view(T, G, LANES, -1).transpose(2, 3).contiguous()
    return out[0] if state else out


def _unlanes(t: Tensor, BN: int, *shape: int) -> Tensor:
    """Inverse of :func:`_lanes`: `[T, G, R, LANES]` or `[G, R, LANES]` -> ``shape`` (`[T, BN,
    ...]` or `[BN, ...]`)."""
    x = t.transpose(-1, -2)  # [(T,) G, LANES, R]
    x = x.reshape(*x.shape[:-3], x.shape[-3] * LANES, x.shape[-1])[..., :BN, :]
    return x.reshape(shape)


def get() -> TapeKernel | None:
    """The kernel, built and loaded once per process; None when disabled or unavailable."""
    kernel = _cbuild.load_once(
        _state,
        _lock,
        "NAM_TAPE_KERNEL",
        lambda: TapeKernel(build()),
        "NAM-TM tape kernel unavailable, using the PyTorch loop",
    )
    return kernel  # type: ignore[return-value]
