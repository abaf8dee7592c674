"""Presets of the length-generalisation family: one function per preset, and the grid it runs.

A preset is plain data (the config sections ``seed``, ``model``, ``data``, ``optim``,
``trainer``) checked against the family's schema when the tasks register. To add a preset,
write a function ``task -> dict`` and add it to :data:`PRESETS` and a grid to :data:`GRIDS`
(a test checks that every preset has a grid and builds for every task).

- ``paper``: the paper's sizes (22–40M parameters) and schedule: Adam, lr 1e-4, weight decay
  1e-5, lr x0.98 per epoch, gradient-norm clip 0.1, batch 128, 25,600 training samples,
  200 epochs, 2,048 samples per evaluation split. A GPU job.
- ``quick``: CPU-sized models (0.1–0.8M parameters), 1–10-digit training data, a few epochs at
  lr 3e-3; a few minutes per run on one CPU thread (:data:`QUICK_EPOCHS` per task).
- ``medium``: the middle scale: 4x the quick data (32,768 training problems, 1,024 per evaluation
  split; SCAN: every short command), the quick widths for the recurrent models and a 4-layer,
  width-128 Transformer, and for every model as many epochs as fit in 25 minutes of one CPU
  thread at its measured cost per epoch (:func:`medium_epochs`, at most 20). Why these choices:
  docs/generalization.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...tasks import algorithmic as alg

__all__ = [
    "GRIDS",
    "MEDIUM_BUDGET_S",
    "MEDIUM_EPOCHS",
    "MEDIUM_EPOCH_CPU_S",
    "MEDIUM_GRID",
    "MEDIUM_MAX_EPOCHS",
    "PAPER_GRID",
    "PRESETS",
    "QUICK_EPOCHS",
    "QUICK_GRID",
    "medium",
    "medium_epochs",
    "paper",
    "quick",
]

# Epochs of the quick preset per task (8,192 training samples an epoch at batch 32; SCAN 4,096).
# Measured on one thread: NAM-TM reaches 100% OD-hard on palin after 1 epoch and 99.6% on reduce
# after 2; fib (carries) is far from learnt in minutes by any model, so it gets a token budget.
QUICK_EPOCHS: dict[str, int] = {
    "fib": 3,
    "palin": 2,
    "reduce": 3,
    "dyck4": 3,
    "copy": 2,
    "repeat-copy": 3,
    "scan": 2,
}


def _quick_splits() -> dict[str, dict[str, Any]]:
    splits = alg.default_splits()
    splits["train"]["count"] = 8_192
    for name in ("id", "od_easy", "od_hard", "test"):
        splits[name]["count"] = 512
    return splits


def paper(task: str) -> dict[str, Any]:
    """The paper's model sizes and schedule (a GPU job)."""
    data: dict[str, Any]
    if task == "scan":
        data = {"id_count": 1_000, "slots": 48, "max_train_actions": 22}
    else:
        data = {"splits": alg.default_splits(), "params": {}}
    return {
        "seed": 0,
        "model": {"name": "nam-tm", "size": "paper"},
        "data": data,
        "optim": {
            "name": "adam",
            "lr": 1e-4,
            "weight_decay": 1e-5,
            "lr_decay": 0.98,
            "grad_clip": 0.1,
        },
        "trainer": {"max_epochs": 200, "batch_size": 128, "eval_batch_size": 256},
    }


def quick(task: str) -> dict[str, Any]:
    """CPU-sized models and data: a few minutes per run on one thread."""
    data: dict[str, Any]
    if task == "scan":
        data = {
            "id_count": 512,
            "test_count": 512,
            "train_count": 4_096,
            "slots": 48,
            "max_train_actions": 22,
        }
    else:
        data = {"splits": _quick_splits(), "params": {}}
    return {
        "seed": 0,
        "model": {"name": "nam-tm", "size": "quick"},
        "data": data,
        # lr 3e-3: NAM-TM reaches ~100% OD-hard on reduce in 2 epochs; at 1e-3, ~20% in 6.
        "optim": {
            "name": "adam",
            "lr": 3e-3,
            "weight_decay": 0.0,
            "lr_decay": 0.95,
            "grad_clip": 1.0,
        },
        "trainer": {
            "max_epochs": QUICK_EPOCHS[task],
            "batch_size": 32,
            "eval_batch_size": 256,
            "log_every_n_steps": 25,
        },
    }


# Process CPU seconds of one medium epoch (training + evaluation, one thread, batch 32) per task and
# model: a medium run's own cost, `cpu_time_s / epochs` of its results.json (runs of 2026-12-01/02
# on the shared 2-core machine at a load of 2-4; data loading, logging and checkpoints included).
# The memory models (DNC, LSAM, the NAM-TMs) take their first run with `trainer.flush_denormal`
# (2026-12-02) where one exists: their earlier runs spent much of their later epochs on subnormal
# floats; the fib NAM-TM 2022 / 2023 costs come from their constant-lr fib runs (same model and
# data; the lr does not change the cost). LSAM on reduce and palin is still a pre-flag cost (an
# upper bound). A cell is not re-measured by later runs of the same configuration (the machine's
# noise is +-10-15%: fib Transformer 110 and 121 s), so the table does not chase it.
MEDIUM_EPOCH_CPU_S: dict[str, dict[str, float]] = {
    "scan": {"transformer": 99, "ut": 73, "lstm": 63, "dnc": 353, "lsam": 92,
             "nam-tm": 72, "nam-tm-nojump": 59, "nam-tm-2023": 77},
    "fib": {"transformer": 110, "ut": 90, "lstm": 84, "dnc": 308, "lsam": 116,
            "nam-tm": 73, "nam-tm-nojump": 58, "nam-tm-2023": 58},
    "reduce": {"transformer": 79, "ut": 52, "lstm": 53, "dnc": 179, "lsam": 123,
               "nam-tm": 44, "nam-tm-nojump": 35, "nam-tm-2023": 38},
    "palin": {"transformer": 78, "ut": 52, "lstm": 53, "dnc": 180, "lsam": 97,
              "nam-tm": 46, "nam-tm-nojump": 37, "nam-tm-2023": 40},
    # dyck4 (2026-12-02): each run's first epoch, measured before the run went on to its budget
    # (`nam train dyck4 --max-epochs 1`, then `nam train --resume DIR --max-epochs N`); one
    # decimal, so that the floor of 1500 / cost is the run's own epoch count.
    "dyck4": {"transformer": 132.1, "ut": 85.1, "lstm": 74.6, "dnc": 284.2, "lsam": 125.2,
              "nam-tm": 94.7, "nam-tm-nojump": 68.5, "nam-tm-2023": 68.6},
}  # fmt: skip
#: CPU budget of one medium run's epochs (seconds of one thread): 25 minutes, leaving headroom
#: under the 30-minute bar for the machine's noise.
MEDIUM_BUDGET_S = 1_500
#: At most this many epochs: the cheap models would otherwise train 30+ epochs.
MEDIUM_MAX_EPOCHS = 20
# Tasks without a measured table (copy, repeat-copy): a fixed count.
MEDIUM_EPOCHS: dict[str, int] = {"copy": 3, "repeat-copy": 3}


def medium_epochs(task: str, model: str) -> int:
    """Epochs of ``model`` on ``task`` at the medium preset: as many as fit :data:`MEDIUM_BUDGET_S`
    at the measured per-epoch cost (:data:`MEDIUM_EPOCH_CPU_S`), at most :data:`MEDIUM_MAX_EPOCHS`;
    so every model gets the same CPU budget rather than the same number of epochs."""
    cost = MEDIUM_EPOCH_CPU_S.get(task, {}).get(model)
    if cost is None:
        return MEDIUM_EPOCHS.get(task, 3)
    return max(1, min(MEDIUM_MAX_EPOCHS, int(MEDIUM_BUDGET_S // cost)))


def _medium_splits() -> dict[str, dict[str, Any]]:
    splits = alg.default_splits()
    splits["train"]["count"] = 32_768
    for name in ("id", "od_easy", "od_hard", "test"):
        splits[name]["count"] = 1_024
    return splits


def medium(task: str) -> dict[str, Any]:
    """The middle scale for ``task``: each run <= 30 minutes of one CPU thread (see module doc)."""
    data: dict[str, Any]
    if task == "scan":
        # Every short command (16,990) less the 1,000 held out for model selection.
        data = {"id_count": 1_000, "test_count": 2_048, "slots": 48, "max_train_actions": 22}
    else:
        data = {"splits": _medium_splits(), "params": {}}
    # Attention models get the usual Transformer recipe (smaller lr, warm-up) and a constant lr:
    # on fib the 4 x 256 Transformer with lr x0.8 per epoch stalled at ~47% ID token accuracy,
    # while a 4 x 128 one at constant lr broke through (55% after 4 epochs, still rising) at half
    # the cost per epoch (docs/generalization.md).
    attention = {"optim": {"lr": 1e-3, "warmup_steps": 1_000, "lr_decay": 1.0}}
    return {
        "seed": 0,
        "model": {"name": "nam-tm", "size": "quick"},
        "data": data,
        "optim": {
            "name": "adam",
            "lr": 3e-3,
            "weight_decay": 0.0,
            # x0.9 per epoch: 0.8 left too little lr for the 10-20 epochs the budget now allows.
            "lr_decay": 0.9,
            "warmup_steps": 200,
            "grad_clip": 1.0,
        },
        "trainer": {
            "max_epochs": MEDIUM_EPOCHS.get(task, 3),
            "batch_size": 32,
            "eval_batch_size": 256,
            "log_every_n_steps": 50,
        },
        "per_model": _medium_per_model(task, attention),
    }


def _medium_per_model(task: str, attention: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-model overrides of the medium preset: widths, the attention recipe, budgeted epochs."""
    per: dict[str, dict[str, Any]] = {
        "transformer": {
            "model": {"d_model": 128, "num_layers": 4, "num_heads": 8, "d_ff": 512},
            **attention,
        },
        "ut": dict(attention),
    }
    for model in MEDIUM_EPOCH_CPU_S.get(task, {}):
        per.setdefault(model, {})["trainer"] = {"max_epochs": medium_epochs(task, model)}
    return per


#: Preset name -> ``task -> config``.
PRESETS: dict[str, Callable[[str], dict[str, Any]]] = {
    "quick": quick,
    "medium": medium,
    "paper": paper,
}

QUICK_GRID: dict[str, tuple[str, ...]] = {
    "reduce": ("nam-tm", "lsam", "lstm", "transformer"),
    "palin": ("nam-tm", "lsam", "lstm", "transformer"),
    "fib": ("nam-tm", "lsam", "lstm", "transformer"),
    "scan": ("nam-tm", "lsam", "lstm", "transformer"),
}
PAPER_GRID: dict[str, tuple[str, ...]] = {
    t: ("transformer", "lstm", "ut", "dnc", "lsam", "nam-tm", "nam-tm-nojump")
    for t in ("palin", "fib", "reduce", "scan")
}

# The paper's seven columns (``nam-tm`` is the 2022 model of Table 2) plus the 2023 release, on
# Table 2's four tasks and 4-DYCK (the authors' later code; no published numbers).
MEDIUM_GRID: dict[str, tuple[str, ...]] = {
    t: ("transformer", "lstm", "ut", "dnc", "lsam", "nam-tm", "nam-tm-nojump", "nam-tm-2023")
    for t in ("fib", "scan", "reduce", "palin", "dyck4")
}

#: Preset name -> ``{task: models}`` trained by ``nam reproduce generalization --preset NAME``.
GRIDS: dict[str, dict[str, tuple[str, ...]]] = {
    "quick": QUICK_GRID,
    "medium": MEDIUM_GRID,
    "paper": PAPER_GRID,
}
