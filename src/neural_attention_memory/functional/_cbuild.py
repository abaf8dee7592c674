"""Compile and cache the package's small C kernels (the chunk form's here, NAM-TM's and LSAM's in
``models/``): one place for the compiler lookup, the cache folder and the atomic build.

A kernel is plain C over raw pointers, compiled once per machine with the system C compiler
(``cc -O3 -march=native ...``) into ``$NAM_KERNEL_CACHE`` (default ``$XDG_CACHE_HOME`` or
``~/.cache``, then ``neural_attention_memory``) and loaded by its module with ``ctypes``. The
library's name is keyed by the source, flags, compiler and CPU, so an edit or another machine
never loads a stale build.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path

__all__ = ["BASE_FLAGS", "cache_dir", "compile_library", "compiler", "cpu_id", "load_once"]

#: Flags every kernel is built with: optimised shared code, and vectorised sums (reassociation)
#: without assuming finite values.
BASE_FLAGS: tuple[str, ...] = (
    "-O3",
    "-march=native",
    "-fPIC",
    "-shared",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fassociative-math",
    "-fno-signed-zeros",
)


def cache_dir() -> Path:
    """Where built libraries live (``$NAM_KERNEL_CACHE`` overrides it)."""
    root = os.environ.get("NAM_KERNEL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neural_attention_memory"


def cpu_id() -> str:
    """This CPU's model and flags: ``-march=native`` ties a library to them."""
    try:
        with open("/proc/cpuinfo") as f:
            return "".join([ln for ln in f if ln.startswith(("model name", "flags"))][:2])
    except OSError:
        return platform.processor() or platform.machine()


def compiler() -> str | None:
    """The first of ``$CC``, ``cc``, ``gcc``, ``clang`` found on the path."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def compile_library(
    source: Path, stem: str, flags: Sequence[str], cc: str | None, verbose: bool = False
) -> Path:
    """Compile ``source`` with ``cc`` into ``<cache>/<stem>_<key>.so`` unless it is there already;
    return its path.

    Raises ``RuntimeError`` when there is no compiler (``cc`` None) or with the compiler's
    message when the build fails.
    """
    if cc is None:
        raise RuntimeError("no C compiler found (tried $CC, cc, gcc, clang)")
    key = hashlib.sha256(
        source.read_bytes()
        + " ".join(flags).encode()
        + cc.encode()
        + cpu_id().encode()
        + platform.machine().encode()
    ).hexdigest()[:16]
    out = cache_dir() / f"{stem}_{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cc, *flags, "-o", tmp, str(source), "-lm"]
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


def load_once(
    state: MutableMapping[str, object],
    lock: threading.Lock,
    env_var: str,
    load: Callable[[], object],
    fallback_message: str,
) -> object | None:
    """A module's kernel, built and loaded once per process (kept in ``state``): None when
    ``env_var`` is ``"0"`` or loading fails, which warns ``"{fallback_message}: {error}"``."""
    if os.environ.get(env_var, "1") == "0":
        return None
    with lock:
        if "kernel" not in state:
            try:
                state["kernel"] = load()
            except (RuntimeError, OSError, subprocess.SubprocessError, AttributeError) as err:
                warnings.warn(f"{fallback_message}: {err}", stacklevel=3)
                state["kernel"] = None
        return state["kernel"]
