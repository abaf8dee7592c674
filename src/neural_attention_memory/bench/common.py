"""Timing and peak-memory helpers shared by the benchmarks.

Performance is only ever claimed as a ratio measured in one run against a named peer; these helpers
give the median wall time of a callable and the peak resident memory it adds.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "atomic_write_json",
    "check_targets",
    "default_clock",
    "format_table",
    "min_time_ms",
    "peak_memory_mb",
    "set_threads",
    "time_fn",
    "write_outputs",
]

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_libc = None


# The training stack (lightning) is slow to import and a memory probe in a fresh process needs none
# of it, so its helpers re-exported here are imported on first use.


def default_clock() -> str:
    """:func:`..training.timing.default_clock`."""
    from ..training.timing import default_clock as clock

    return clock()


def time_fn(fn: Callable[[], Any], *args: Any, **kwargs: Any) -> float:
    """:func:`..training.timing.time_fn` (median milliseconds of ``fn()``)."""
    from ..training.timing import time_fn as timer

    return timer(fn, *args, **kwargs)


def min_time_ms(
    fn: Callable[[], Any], reps: int = 5, warmup: int = 1, budget_s: float | None = None
) -> float:
    """Fastest of ``reps`` runs of ``fn()`` in milliseconds, after ``warmup`` runs, on the clock
    of :func:`default_clock` (process CPU time with one thread). On a shared machine the minimum
    is the run least disturbed by other processes; with ``budget_s`` it stops early (after at
    least one timed run) once the budget is spent."""
    import time

    if reps < 1:
        raise ValueError(f"reps: expected >= 1, got {reps}")
    now = time.process_time if default_clock() == "cpu" else time.perf_counter
    for _ in range(warmup):
        fn()
    best = float("inf")
    start = time.perf_counter()
    for _ in range(reps):
        t0 = now()
        fn()
        best = min(best, now() - t0)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return best * 1e3


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """:func:`..training.rundir.atomic_write_json`."""
    from ..training.rundir import atomic_write_json as write

    write(path, obj)


def set_threads(threads: int) -> None:
    """Set torch's intra-op threads."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected a positive int, got {threads!r}")
    torch.set_num_threads(threads)


def _status_mb(key: str) -> float:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(key)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _libc_handle():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.mallopt  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _libc = False
    return _libc


def peak_memory_mb(fn: Callable[[], Any]) -> float | None:
    """Peak resident memory (MiB) that ``fn()`` adds on top of what is live before it runs.

    Linux/glibc only (resets the ``VmHWM`` high-water mark through ``/proc/self/clear_refs``);
    returns None where that is unavailable. While ``fn`` runs, glibc's mmap threshold is lowered
    so every tensor buffer is its own mapping and leaves the resident set when freed (otherwise
    reused heap pages hide allocations); afterwards the thresholds are set to the values glibc's
    own adaptive rule settles on for large buffers, so later timings are not slowed.
    """
    libc = _libc_handle()
    if not libc or not sys.platform.startswith("linux") or not _CLEAR_REFS.exists():
        return None
    gc.collect()
    libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
    libc.malloc_trim(0)  # hand freed heap pages back so they are not reused unseen
    try:
        _CLEAR_REFS.write_text("5")
        base = _status_mb("VmRSS")
        fn()
        return max(0.0, _status_mb("VmHWM") - base)
    except OSError:
        return None
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # DEFAULT_MMAP_THRESHOLD_MAX
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)  # twice that, as the adaptive rule


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


def check_targets(ratios: dict[str, float | None], targets: dict[str, float]) -> dict[str, Any]:
    """``{name: {"target", "measured", "met"}}`` for each target ratio (higher = better)."""
    return {
        k: {"target": v, "measured": ratios.get(k), "met": (ratios.get(k) or 0) >= v}
        for k, v in targets.items()
    }


def write_outputs(
    out_dir: str | os.PathLike[str],
    name: str,
    result: dict[str, Any],
    plot: Callable[[Path], None],
    tables: Sequence[tuple[Sequence[str], Sequence[Sequence[Any]]]] = (),
    verbose: bool = True,
) -> None:
    """Write ``<out_dir>/<name>.json`` (atomically) and ``<name>.png``; print the tables."""
    out_dir = Path(out_dir)
    json_path, png_path = out_dir / f"{name}.json", out_dir / f"{name}.png"
    atomic_write_json(json_path, result)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    plot(png_path)
    if verbose:
        for headers, rows in tables:
            print()
            print(format_table(headers, rows))
        print(f"\nwrote {json_path} and {png_path}")
