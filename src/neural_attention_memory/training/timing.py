"""CPU-time-aware timing of a callable: the one timer of the benchmarks and the experiments."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["default_clock", "time_fn"]


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
