"""What ``results.json`` holds: the selected epoch (the paper's selection rule) and its metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..models._params import count_parameters
from .module import TaskModule
from .spec import TaskSpec

__all__ = ["BEST_CKPT", "LAST_CKPT", "build_results", "select_epoch"]

LAST_CKPT = "checkpoints/last.ckpt"
BEST_CKPT = "checkpoints/best.ckpt"


def select_epoch(history: Sequence[Mapping[str, Any]], metric: str, mode: str) -> int | None:
    """Index into ``history`` of the selected epoch: the first best finite value of ``metric``.

    Mirrors :class:`lightning.pytorch.callbacks.ModelCheckpoint` (strict improvement; NaN never
    wins), so ``best.ckpt`` holds the selected epoch's weights.
    """
    best_i, best_v = None, None
    for i, entry in enumerate(history):
        v = entry.get(metric)
        if v is None or not math.isfinite(v):
            continue
        if best_v is None or (v > best_v if mode == "max" else v < best_v):
            best_i, best_v = i, v
    return best_i


def build_results(
    spec: TaskSpec,
    config: Mapping[str, Any],
    module: TaskModule,
    eval_splits: Sequence[str],
    status: str,
    session_t0: float,
    error: str | None = None,
) -> dict[str, Any]:
    """The content of ``results.json`` (see docs/training.md): the selected epoch's metrics of
    every split, the history, parameter counts and times."""
    history = module.history
    sel = select_epoch(history, spec.selection_metric, spec.selection_mode)
    splits: dict[str, dict[str, float]] = {}
    if sel is not None:
        entry = history[sel]
        for split in ["train", *eval_splits]:
            prefix = f"{split}/"
            metrics = {k[len(prefix) :]: v for k, v in entry.items() if k.startswith(prefix)}
            if metrics:
                splits[split] = metrics
    res: dict[str, Any] = {
        "task": spec.name,
        "family": spec.family,
        "model": config["model"]["name"],
        "preset": config.get("preset"),
        "seed": config.get("seed"),
        "status": status,
        "selection": {
            "metric": spec.selection_metric,
            "mode": spec.selection_mode,
            "epoch": history[sel]["epoch"] if sel is not None else None,
            "value": history[sel].get(spec.selection_metric) if sel is not None else None,
        },
        "selected_epoch": history[sel]["epoch"] if sel is not None else None,
        "splits": splits,
        "epochs_completed": len(history),
        "max_epochs": int(config["trainer"]["max_epochs"]),
        "num_params": count_parameters(module.model, trainable_only=False),
        "num_trainable_params": count_parameters(module.model),
        # Seconds spent in training + evaluation epochs, summed over resumed sessions.
        "wall_clock_s": module.elapsed_s,
        # Process CPU seconds of the same epochs (the run's cost on a shared machine).
        "cpu_time_s": module.cpu_s,
        "session_wall_clock_s": time.perf_counter() - session_t0,
        "checkpoints": {"last": LAST_CKPT, "best": BEST_CKPT},
        "history": history,
    }
    if error is not None:
        res["error"] = error
    return res
