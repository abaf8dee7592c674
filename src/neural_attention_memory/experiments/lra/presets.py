"""Presets of the LRA family: one function per preset, and the grid it runs.

A preset is plain data (the config sections ``seed``, ``model``, ``data``, ``optim``,
``trainer``). To add a preset, write a function ``task -> dict`` and add it to :data:`PRESETS`
and a grid to :data:`GRIDS` (a test checks that every preset has a grid and builds for every task).

- ``paper``: the LRA base configurations (ListOps: 4 layers, width 512, 8 heads, MLP 1024, length
  up to 2,000; Text: 4 layers, 256, 4 heads, MLP 1024, 1,000 bytes; Retrieval: 4 layers, 128,
  4 heads, MLP 512, 4,000 bytes per document; Image: 1 layer, 128, 8 heads, MLP 128; Pathfinder:
  4 layers, 32, 4 heads, MLP 64), batch 32, Adam. GPU jobs.
- ``quick``: CPU-sized encoders (2 layers, width 32–64) on small generated sets, a few minutes per
  run on one thread; what ``nam reproduce lra --preset quick`` trains.
- ``medium``: the generated tasks at LRA's lengths (ListOps 500–2,000 tokens, Pathfinder-32 1,024
  pixels) with the quick encoders, sized so that the slowest model (softmax) trains in about
  45 minutes of one CPU thread; the user-provided tasks keep their quick sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .models import MODELS
from .paper import TASKS

__all__ = ["GRIDS", "PRESETS", "medium", "paper", "quick"]


def _model(d: int, layers: int, heads: int, ff: int, dropout: float = 0.1, **kw: Any) -> dict:
    return {
        "name": "nam-transformer",
        "d_model": d,
        "num_layers": layers,
        "num_heads": heads,
        "d_ff": ff,
        "positional": "learned",
        "dropout": dropout,
        "attn_dropout": 0.0,
        "pooling": "cls",
        "head_hidden": None,
        **kw,
    }


def _preset(task: str, size: str) -> dict[str, Any]:
    optim = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "lr_decay": 1.0, "grad_clip": 1.0}
    trainer: dict[str, Any] = {"batch_size": 32, "eval_batch_size": 64, "log_every_n_steps": 20}
    data: dict[str, Any]
    user = {"root": None, "val_count": 2_500, "train": None, "test": None}
    if size == "paper":
        optim["lr"] = 5e-4
        trainer["max_epochs"] = 20
        if task == "lra-listops":
            model = _model(512, 4, 8, 1024)
            data = {
                "min_length": 500, "max_length": 2000, "max_depth": 10, "max_args": 10,
                "train": 96_000, "val": 2_000, "test": 2_000, "release": None, "cache_root": None,
            }  # fmt: skip
        elif task == "lra-pathfinder32":
            model = _model(32, 4, 4, 64)
            trainer["max_epochs"] = 200
            data = {
                "size": 32, "difficulty": "medium", "num_distractors": 2,
                "train": 80_000, "val": 10_000, "test": 10_000, "release": None, "cache_root": None,
            }  # fmt: skip
        elif task == "lra-text":
            model = _model(256, 4, 4, 1024)
            data = {**user, "max_length": 1000}
        elif task == "lra-retrieval":
            model = _model(128, 4, 4, 512)
            data = {**user, "max_length": 4000, "val_count": None}
        else:
            model = _model(128, 1, 8, 128, dropout=0.3)
            trainer["max_epochs"] = 200
            data = {**user, "val_count": 5_000}
    else:
        # Sized so that `nam reproduce lra --preset quick` (6 runs) takes ~20 minutes on one thread.
        trainer["max_epochs"] = 3
        if task == "lra-listops":
            model = _model(64, 2, 4, 128)
            # NAM's unnormalised sums need a smaller step: at 2e-3 it stayed at chance for 5
            # epochs while softmax learned; at 5e-4 all three learn (one lr for all, as in the paper).
            optim["lr"] = 5e-4
            data = {
                "min_length": 50, "max_length": 300, "max_depth": 10, "max_args": 10,
                "train": 3_000, "val": 300, "test": 500, "release": None, "cache_root": None,
            }  # fmt: skip
            trainer["max_epochs"] = 6
        elif task == "lra-pathfinder32":
            model = _model(32, 2, 2, 64, dropout=0.0)
            data = {
                "size": 32, "difficulty": "easy", "num_distractors": 2,
                "train": 1_600, "val": 200, "test": 400, "release": None, "cache_root": None,
            }  # fmt: skip
        elif task == "lra-text":
            model = _model(64, 2, 4, 128)
            data = {**user, "max_length": 512, "train": 4_000, "val_count": 500, "test": 1_000}
        elif task == "lra-retrieval":
            model = _model(64, 2, 4, 128)
            data = {
                **user,
                "max_length": 512,
                "train": 4_000,
                "val_count": None,
                "val": 500,
                "test": 1_000,
            }
        else:
            model = _model(64, 1, 4, 128)
            data = {**user, "train": 5_000, "val_count": 500, "test": 1_000}
    if task == "lra-retrieval":
        data.pop("val_count", None)
        data.setdefault("val", None)
    return {"seed": 0, "model": model, "data": data, "optim": optim, "trainer": trainer}


def paper(task: str) -> dict[str, Any]:
    """The LRA base configurations (GPU jobs)."""
    return _preset(task, "paper")


def quick(task: str) -> dict[str, Any]:
    """CPU-sized encoders on small sets: a few minutes per run on one thread."""
    return _preset(task, "quick")


def medium(task: str) -> dict[str, Any]:
    """The generated tasks at LRA's lengths, <= ~45 minutes of one CPU thread for softmax.

    ListOps starts with a warm-up on short expressions (``data.warmup``: 6 epochs of 3,000
    expressions of 50-300 tokens), then trains 2 epochs at full length; ``--set data.warmup=null
    --set trainer.max_epochs=3`` is the earlier from-scratch recipe.

    Sized from :func:`.timing.compare_step_times` (docs/results/medium/lra_step_times.json:
    training step of the quick encoders, process CPU time, one thread, under load): ListOps
    (2 layers x 64, first batch 32 x 1,783 tokens) softmax 5.0 s, NAM 1.7 s, linear 1.6 s, so
    5,000 expressions x 3 epochs (469 steps) are ~40 minutes for softmax with evaluation and ~14
    for NAM; Pathfinder-32 (2 layers x 32, 1,025 tokens) softmax 0.69 s per step of 32, so 20,000
    images x 5 epochs (3,125 steps) are ~38 minutes.
    """
    cfg = _preset(task, "quick")
    if task == "lra-listops":
        cfg["data"].update({"min_length": 500, "max_length": 2000})
        cfg["data"].update({"train": 5_000, "val": 500, "test": 1_000})
        # Trained from scratch at 500-2,000 tokens for 3 epochs, NAM and linear attention stayed
        # at the class prior (softmax left it in its third epoch). Six epochs on short expressions
        # (the quick preset's size and lengths), then two at full length, take all three off it,
        # the same warm-up for each (docs/lra.md). Softmax: ~11 + 2 x 15 CPU minutes, under 45.
        cfg["data"]["warmup"] = {"epochs": 6, "min_length": 50, "max_length": 300, "train": 3_000}
        cfg["trainer"]["max_epochs"] = 8
    elif task == "lra-pathfinder32":
        cfg["data"].update({"train": 20_000, "val": 1_000, "test": 2_000})
        cfg["trainer"]["max_epochs"] = 5
    return cfg


#: Preset name -> ``task -> config``.
PRESETS: dict[str, Callable[[str], dict[str, Any]]] = {
    "quick": quick,
    "medium": medium,
    "paper": paper,
}

#: Preset name -> ``{task: models}``. By default ``nam reproduce lra`` runs only the tasks whose
#: data is available (the generated ones, plus user-provided sets whose files are present).
GRIDS: dict[str, dict[str, tuple[str, ...]]] = {
    name: {t: tuple(MODELS) for t in TASKS} for name in ("quick", "medium", "paper")
}
