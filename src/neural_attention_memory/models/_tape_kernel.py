"""Build, cache and call the C tape kernel (``_tape_kernel.c``) of NAM-TM.

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
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["TapeKernel", "build", "get"]

SOURCE = Path(__file__).with_name("_tape_kernel.c")
FLAGS = (
    "-O3",
    "-march=native",
    "-fPIC",
    "-shared",
    # Lets the compiler vectorise the dot products (reassociation) without assuming finite values.
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fassociative-math",
    "-fno-signed-zeros",
)
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cache_dir() -> Path:
    root = os.environ.get("NAM_KERNEL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neural_attention_memory"


def _cpu_id() -> str:
    # -march=native ties the library to this CPU: key the cache by its model and flags.
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def build(verbose: bool = False) -> Path:
    """Compile the kernel into the cache (if not there yet) and return the library's path.

    Raises ``RuntimeError`` with the compiler's message when it cannot be built.
    """
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (tried $CC, cc, gcc, clang)")
    src = SOURCE.read_bytes()
    key = hashlib.sha256(
        src
        + " ".join(FLAGS).encode()
        + cc.encode()
        + _cpu_id().encode()
        + platform.machine().encode()
    ).hexdigest()[:16]
    out = _cache_dir() / f"tape_kernel_{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
        if verbose:
            print(f"built {out}")
        os.replace(tmp, out)  # atomic: concurrent builders never load a half-written file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


class TapeKernel:
    """The loaded library: :meth:`forward` / :meth:`backward` on tensors (see ``_tape_kernel.c``)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        P, Li, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        self._fns = {}
        for suffix in ("f32", "f64"):
            fwd = getattr(lib, f"namtm_forward_{suffix}")
            fwd.argtypes = [Li] * 7 + [I] + [P] * 14
            fwd.restype = I
            bwd = getattr(lib, f"namtm_backward_{suffix}")
            bwd.argtypes = [Li] * 7 + [I] + [P] * 22
            bwd.restype = I
            gf = getattr(lib, f"bigru_forward_{suffix}")
            gf.argtypes = [Li] * 3 + [P] * 6
            gf.restype = I
            gb = getattr(lib, f"bigru_backward_{suffix}")
            gb.argtypes = [Li] * 3 + [P] * 7
            gb.restype = I
            self._fns[suffix] = (fwd, bwd, gf, gb)
        self.path = path

    @staticmethod
    def supports(x: Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)

    @staticmethod
    def _suffix(x: Tensor) -> str:
        return "f32" if x.dtype == torch.float32 else "f64"

    @staticmethod
    def _ptr(x: Tensor | None) -> int | None:
        return None if x is None else x.data_ptr()

    def forward(self, W, NPE, Q, A, KK, PWK, TT0, KT0, H0, d, key_mode):
        """Same contract as ``_tape_scan._torch_forward`` (aux = HS, NR, THW, S)."""
        T, BN, D = W.shape
        L = H0.shape[-1]
        Lp, dp = _round_up(L), _round_up(d)
        mode = _MODES[key_mode]
        W, NPE, A, PWK = (None if t is None else t.contiguous() for t in (W, NPE, A, PWK))
        Q, KK = (_pad(t, dp, copy=False) for t in (Q, KK))
        KT = _pad(KT0, dp)
        TT, H = _pad(TT0, Lp), _pad(H0, Lp)
        R = W.new_empty(T, BN, 1, d)
        HS = W.new_empty(T, BN, 2, Lp)
        NR = W.new_empty(T, BN, 2, 1)
        THW = None if NPE is None else W.new_empty(T, BN, 1, D)
        S = W.new_empty(T, BN, 1, L) if mode == 2 and NPE is not None else None
        p = self._ptr
        fwd = self._fns[self._suffix(W)][0]
        rc = fwd(
            T, BN, d, dp, D, L, Lp, mode,
            p(W), p(NPE), p(Q), p(A), p(KK), p(PWK),
            p(TT), p(KT), p(H), p(R), p(HS), p(NR), p(THW), p(S),
        )  # fmt: skip
        if rc:
            raise MemoryError("NAM-TM tape kernel: out of memory for its scratch buffers")
        KT = None if KT is None else KT[..., :d]
        return R, TT[..., :L], KT, H[..., :L], (HS, NR, THW, S)

    def backward(self, inputs, TT_T, KT_T, aux, dR, dTT_T, dKT_T, dH_T, d, key_mode):
        """Gradients w.r.t. (W, NPE, Q, A, KK, PWK, TT0, KT0, H0)."""
        W, NPE, Q, A, KK, PWK = inputs[:6]
        HS, NR, THW, S = aux
        T, BN, D = W.shape
        Lp, L, dp = HS.shape[-1], TT_T.shape[-1], _round_up(d)
        mode = _MODES[key_mode]
        W, NPE, A, PWK = (None if t is None else t.contiguous() for t in (W, NPE, A, PWK))
        Q, KK = (_pad(t, dp, copy=False) for t in (Q, KK))
        KT, dKT = (_pad(t, dp) for t in (KT_T, dKT_T))
        TT, dTT, dH = (_pad(t, Lp) for t in (TT_T, dTT_T, dH_T))  # dTT, dH become d TT0, d H0
        dR = dR.contiguous()
        dW = torch.empty_like(W)
        dNPE = None if NPE is None else torch.empty_like(NPE)
        dQ = None if Q is None else torch.empty_like(Q)
        dA = torch.empty_like(A)
        dKK = None if KK is None else torch.empty_like(KK)
        dPWK = None if PWK is None else torch.empty_like(PWK)
        p = self._ptr
        bwd = self._fns[self._suffix(W)][1]
        rc = bwd(
            T, BN, d, dp, D, L, Lp, mode,
            p(W), p(NPE), p(Q), p(A), p(KK), p(PWK), p(HS), p(NR), p(THW), p(S),
            p(TT), p(KT), p(dR), p(dTT), p(dKT), p(dH),
            p(dW), p(dNPE), p(dQ), p(dA), p(dKK), p(dPWK),
        )  # fmt: skip
        if rc:
            raise MemoryError("NAM-TM tape kernel: out of memory for its scratch buffers")
        cut = lambda t, n: None if t is None else t[..., :n]  # noqa: E731
        return dW, dNPE, cut(dQ, d), dA, cut(dKK, d), dPWK, dTT[..., :L], cut(dKT, d), dH[..., :L]

    def bigru_forward(self, GI, lengths, WT, BH):
        """Bidirectional GRU recurrence (zero initial states), see ``bigru_forward`` in the C file.

        Args: ``GI [B, T, 2, 3H]`` input projections (bias included), ``lengths [B]`` int64 or
        None, ``WT [2, H, 3H]`` (``W_hh`` transposed), ``BH [2, 3H]``.
        Returns: outputs ``[B, T, 2, H]`` (zero at padded positions) and the saved gates
        ``[B, T, 2, 4H]`` (r, z, n, gh_n).
        """
        B, T, _, H3 = GI.shape
        H = H3 // 3
        out = GI.new_empty(B, T, 2, H)
        G = GI.new_empty(B, T, 2, 4 * H)
        p = self._ptr
        rc = self._fns[self._suffix(GI)][2](B, T, H, p(lengths), p(GI), p(WT), p(BH), p(out), p(G))
        if rc:
            raise MemoryError("NAM-TM GRU kernel: out of memory for its scratch buffers")
        return out, G

    def bigru_backward(self, lengths, WH, out, G, d_out):
        """``d_out [B, T, 2, H]`` -> gradients of ``GI`` and of ``gh = h W_hh^T + b_hh``, each
        ``[B, T, 2, 3H]`` (zero at padded positions). ``WH [2, 3H, H]``."""
        B, T, _, H = out.shape
        dGI = out.new_empty(B, T, 2, 3 * H)
        dGH = out.new_empty(B, T, 2, 3 * H)
        p = self._ptr
        rc = self._fns[self._suffix(out)][3](
            B, T, H, p(lengths), p(WH), p(out), p(G), p(d_out), p(dGI), p(dGH)
        )
        if rc:
            raise MemoryError("NAM-TM GRU kernel: out of memory for its scratch buffers")
        return dGI, dGH


_MODES = {None: 0, "position": 1, "key": 2}
_VW = 16  # VW of _tape_kernel.c: rows are padded to multiples of it


def _round_up(n: int) -> int:
    return -(-n // _VW) * _VW


def _pad(t: Tensor | None, n: int, copy: bool = True) -> Tensor | None:
    """``t`` zero-padded along the last dim to ``n``: a fresh contiguous copy (the kernel writes
    into it), or with ``copy=False`` ``t`` itself when it needs no padding (read-only inputs)."""
    if t is None:
        return None
    if not copy and t.shape[-1] == n:
        return t.contiguous()
    out = t.new_empty(*t.shape[:-1], n)
    out[..., t.shape[-1] :] = 0
    out[..., : t.shape[-1]] = t
    return out


def get() -> TapeKernel | None:
    """The kernel, built and loaded once per process; None when disabled or unavailable."""
    if os.environ.get("NAM_TAPE_KERNEL", "1") == "0":
        return None
    with _lock:
        if "kernel" not in _state:
            try:
                _state["kernel"] = TapeKernel(build())
            except (RuntimeError, OSError, subprocess.SubprocessError, AttributeError) as err:
                warnings.warn(
                    f"NAM-TM tape kernel unavailable, using the PyTorch loop: {err}", stacklevel=2
                )
                _state["kernel"] = None
        return _state["kernel"]  # type: ignore[return-value]
