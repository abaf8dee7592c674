"""Presets of the byte-level LM benchmark; every model gets the same CPU-time budget.

- ``quick``: 2 layers, width 128, 4 heads, windows of 256 bytes, 180 CPU seconds of training per
  model on one thread (a few minutes per model with evaluation).
- ``medium``: 4 layers, width 256, 4 heads, windows of 512 bytes, 1,800 CPU seconds per model.

Evaluation windows are 1,024 bytes long (4x / 2x the training windows), so the per-position
metrics also show how each attention extrapolates beyond the training length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .models import MODELS

__all__ = ["GRIDS", "PRESETS", "medium", "quick"]


def _preset(
    width: int, layers: int, train_length: int, budget_s: float, batch: int, epoch_batches: int
) -> dict[str, Any]:
    return {
        "seed": 0,
        "model": {
            "name": "nam",
            "hidden_size": width,
            "num_layers": layers,
            "num_heads": 4,
            "intermediate_size": 4 * width,
            "gates": ["write", "erase", "read"],
            "chunk_size": 64,
            "positional": "none",
            "dropout": 0.0,
        },
        "data": {
            "root": None,
            "train_length": train_length,
            "eval_length": 1024,
            "val_windows": 8,
            "test_windows": 32,
        },
        "optim": {
            "name": "adamw",
            "lr": 1e-3,
            "weight_decay": 0.01,
            "lr_decay": 1.0,
            "warmup_steps": 50,
            "grad_clip": 1.0,
        },
        "trainer": {
            "max_epochs": 100_000,  # the CPU budget ends the run
            "max_train_cpu_s": budget_s,
            "batch_size": batch,
            "eval_batch_size": 8,
            "limit_train_batches": epoch_batches,  # an "epoch" = one evaluation point
            "drop_last": True,
            "log_every_n_steps": 10,
        },
    }


def quick(task: str = "lm-pysource") -> dict[str, Any]:
    """2 layers, width 128, 256-byte windows, 180 CPU seconds of training per model."""
    return _preset(128, 2, 256, 180.0, 16, 50)


def medium(task: str = "lm-pysource") -> dict[str, Any]:
    """4 layers, width 256, 512-byte windows, 1,800 CPU seconds of training per model."""
    return _preset(256, 4, 512, 1800.0, 16, 60)


PRESETS: dict[str, Callable[[str], dict[str, Any]]] = {"quick": quick, "medium": medium}
GRIDS: dict[str, dict[str, tuple[str, ...]]] = {name: {"lm-pysource": MODELS} for name in PRESETS}
