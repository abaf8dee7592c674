"""Build, cache and call LSAM's C step kernels (``_lsam_kernel.c``).

Built like NAM-TM's tape kernel (:mod:`..functional._cbuild`, with :mod:`._tape_kernel`'s flags;
``NAM_KERNEL_CACHE`` overrides the cache folder): plain C over raw pointers, compiled once per machine with the
system C compiler and loaded with ``ctypes``. If there is no compiler, compilation fails, or
``NAM_LSAM_KERNEL=0`` is set, :func:`get` returns None and LSAM runs its PyTorch loop instead
(same results; the tests compare both). CPU tensors of float32 / float64 only.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import torch
from torch import Tensor

from ..functional import _cbuild
from . import _tape_kernel

__all__ = ["LSAMKernel", "build", "get"]

SOURCE = Path(__file__).with_name("_lsam_kernel.c")
_lock = threading.Lock()
_state: dict[str, object] = {}


def _compiler() -> str | None:
    return _cbuild.compiler()


def build(verbose: bool = False) -> Path:
    """Compile the kernel into the cache (if not there yet) and return the library's path.

    Raises ``RuntimeError`` with the compiler's message when it cannot be built.
    """
    return _cbuild.compile_library(SOURCE, "lsam_kernel", _tape_kernel.FLAGS, _compiler(), verbose)


class LSAMKernel:
    """The loaded library: :meth:`forward_step` and :meth:`backward_step` (``_lsam_kernel.c``).

    Both take raw addresses (``Tensor.data_ptr()`` plus byte offsets, 0 for NULL) of contiguous
    buffers, so the per-step loop in :class:`~.lsam._LSAMScan` does no tensor indexing.
    """

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        P, Li = ctypes.c_void_p, ctypes.c_long
        self._fns: dict[tuple[str, torch.dtype], ctypes._CFuncPtr] = {}
        for dtype, suffix in ((torch.float32, "f32"), (torch.float64, "f64")):
            for name, n_ptrs in (("lsam_forward_step", 12), ("lsam_backward_step", 13)):
                fn = getattr(lib, f"{name}_{suffix}")
                fn.argtypes = [Li] * 4 + [P] * n_ptrs
                fn.restype = ctypes.c_int
                self._fns[name, dtype] = fn
        self.path = path

    @staticmethod
    def supports(x: Tensor) -> bool:
        return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)

    def forward_step(self, dtype: torch.dtype):
        """``f(BH, H, d, G, z, keep, M, QK, NRM, GR, VV, MK, Y, out, hprev, hnext)``."""
        return self._fns["lsam_forward_step", dtype]

    def backward_step(self, dtype: torch.dtype):
        """``f(BH, H, d, G, keep, dout, dh, QK, NRM, GR, VV, MK, Y, M, dM, dz, dpass) -> rc``
        (rc 1: out of memory)."""
        return self._fns["lsam_backward_step", dtype]


def get() -> LSAMKernel | None:
    """The kernel, built and loaded once per process; None when disabled or unavailable."""
    kernel = _cbuild.load_once(
        _state,
        _lock,
        "NAM_LSAM_KERNEL",
        lambda: LSAMKernel(build()),
        "LSAM step kernel unavailable, using the PyTorch loop",
    )
    return kernel  # type: ignore[return-value]
