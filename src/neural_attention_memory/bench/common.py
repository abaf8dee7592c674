"""Timing and peak-memory helpers shared by the benchmarks.

Performance is only ever claimed as a ratio measured in one run against a named peer; these helpers
give the median wall time of a callable and the peak resident memory it adds.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..training.rundir import atomic_write_json  # re-exported for the benchmarks

__all__ = [
    "atomic_write_json",
    "default_clock",
    "format_table",
    "peak_memory_mb",
    "set_threads",
    "time_fn",
]

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_libc = None


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected a positive int, got {threads!r}")
    torch.set_num_threads(threads)


def default_clock() -> str:
    """``"cpu"`` (process CPU time) with one torch thread, else ``"wall"``.

    With one thread all the work runs in this process's single compute thread, so its CPU time
    equals its wall time on an idle machine and is far less disturbed by other processes on a
    shared one; with several threads CPU time would add the threads up, so wall time is used.
    """
    return "cpu" if torch.get_num_threads() == 1 else "wall"


def time_fn(
    fn: Callable[[], Any],
    reps: int = 5,
    warmup: int = 1,
    budget_s: float | None = None,
    clock: str | None = None,
) -> float:
    """Median time of ``fn()`` in milliseconds over ``reps`` runs after ``warmup`` runs.

    ``clock``: ``"wall"`` or ``"cpu"`` (process CPU time); default :func:`default_clock`.
    With ``budget_s``, stops early (after at least one timed run) once the budget is spent.
    """
    if reps < 1:
        raise ValueError(f"reps: expected >= 1, got {reps}")
    clock = default_clock() if clock is None else clock
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock: expected 'wall' or 'cpu', got {clock!r}")
    now = time.process_time if clock == "cpu" else time.perf_counter
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(reps):
        t0 = now()
        fn()
        times.append(now() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return statistics.median(times) * 1e3


def _status_mb(key: str) -> float:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(key)


def _tune_malloc():
    # A fixed mmap threshold makes glibc return freed tensor buffers to the OS, so the resident-set
    # high-water mark tracks live tensors instead of allocator caching.
    global _libc
    if _libc is not None:
        return _libc
    try:
        _libc = ctypes.CDLL("libc.so.6")
        _libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        _libc = False
    return _libc


def peak_memory_mb(fn: Callable[[], Any]) -> float | None:
    """Peak resident memory (MiB) that ``fn()`` adds on top of what is live before it runs.

    Linux only (resets the ``VmHWM`` high-water mark through ``/proc/self/clear_refs``); returns
    None where that is unavailable. The first call fixes glibc's mmap threshold for the rest of
    the process so freed buffers leave the resident set; that slows later allocations, so take
    timings before memory readings.
    """
    if not sys.platform.startswith("linux") or not _CLEAR_REFS.exists():
        return None
    libc = _tune_malloc()
    gc.collect()
    if libc:
        libc.malloc_trim(0)  # hand freed heap pages back so they are not reused unseen
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return None
    base = _status_mb("VmRSS")
    fn()
    return max(0.0, _status_mb("VmHWM") - base)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-Markdown table."""

    def cell(x: Any) -> str:
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)
