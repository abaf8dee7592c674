"""Presets of the few-shot family: the two stages' configurations and, per preset, the heads, the
fixed-erase ablations, the number of test episodes and the stage-1 backbone per data set.

- ``quick``: heads ``cosine`` and ``nam``, ablation ``p_e = 0.5``, ConvNet stage 1; minutes on a
  CPU.
- ``medium`` (the verdict): every head, each NAM head also with ``p_e`` fixed at 0 and 0.5;
  ResNet-12 stage 1 on Noto (40 renderings per character, 20 held out of stage 1); 1,000 test
  episodes.
- ``paper``: larger sizes, 2,000 test episodes.

Every preset is plain data checked against :mod:`.schema` (tested).
"""

from __future__ import annotations

from typing import Any

from .models import BACKBONES, HEADS
from .paper import STAGE1, STAGE2

__all__ = [
    "GRIDS",
    "PRESET_DEFAULTS",
    "PRESET_DESCRIPTIONS",
    "STAGE1_PRESETS",
    "STAGE2_PRESETS",
    "dataset_overrides",
]

GLYPHS_QUICK = {
    "seed": 0,
    "image_size": 32,
    "samples_per_class": 100,
    "base_val": 5,
    "base_test": 15,
    "base_holdout": 20,
}

# Noto scripts (tasks.noto): 2,407 classes from 41 scripts at the default settings. Quick: 20
# renderings per character (stage 2 then uses 5 novel queries per class, like Omniglot, and the
# base classes' train images); medium: 40, with 20 held out of stage 1 for stage-2 episodes.
NOTO_QUICK = {
    "seed": 0,
    "image_size": 32,
    "samples_per_class": 20,
    "base_val": 2,
    "base_test": 4,
    "base_holdout": 0,
}
NOTO_MEDIUM = {**NOTO_QUICK, "samples_per_class": 40, "base_holdout": 20}

_ADAM = {"name": "adam", "lr": 2e-3, "weight_decay": 5e-4, "lr_decay": 0.85}
_CONVNET = {"name": "convnet", "widths": [32, 64, 64, 128], "scale": 10.0}

STAGE1_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "model": _CONVNET,
        "data": {
            "dataset": "glyphs",
            "root": None,
            "image_size": None,
            "glyphs": GLYPHS_QUICK,
            "noto": NOTO_QUICK,
        },
        "optim": _ADAM,
        "trainer": {"max_epochs": 12, "batch_size": 64, "eval_batch_size": 256},
        "per_model": {"resnet12": {"model": {"widths": [32, 64, 128, 256]}}},
    },
    # The verdict preset: glyphs with the quick ConvNet stage 1; Noto with a ResNet-12 stage 1
    # (6 epochs of 1,490 base classes x 14 images: about 15 min of CPU on one thread).
    "medium": {
        "model": _CONVNET,
        "data": {
            "dataset": "glyphs",
            "root": None,
            "image_size": None,
            "glyphs": GLYPHS_QUICK,
            "noto": NOTO_MEDIUM,
        },
        "optim": _ADAM,
        "trainer": {"max_epochs": 12, "batch_size": 64, "eval_batch_size": 256},
        "per_model": {
            "resnet12": {
                "model": {"widths": [32, 64, 128, 256]},
                "optim": {"lr_decay": 0.7},
                "trainer": {"max_epochs": 6},
            }
        },
    },
    "paper": {
        "model": {"name": "convnet", "widths": [64, 64, 128, 256], "scale": 10.0},
        "data": {
            "dataset": "glyphs",
            "root": None,
            "image_size": None,
            "glyphs": {**GLYPHS_QUICK, "samples_per_class": 160, "base_test": 30},
            "noto": NOTO_MEDIUM,
        },
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4, "lr_decay": 0.92},
        "trainer": {"max_epochs": 40, "batch_size": 128, "eval_batch_size": 256},
        "per_model": {"resnet12": {"model": {"widths": [64, 160, 320, 640]}}},
    },
}

EPISODES_QUICK = {
    "stage1_run": None,
    "n_way": 5,
    "k_shot": 1,
    "n_query_novel": 15,
    "n_query_base": 75,
    "train_episodes": 600,
    "val_episodes": 200,
    "val_seed": 17,
}


def _head(gate_hidden: int) -> dict[str, Any]:
    return {
        "name": "nam",
        "gate_hidden": gate_hidden,
        "write_mode": "batched",
        "value_scale": "mean",
        "p_w_init": 0.9,
        "p_e_init": 0.2,
        "p_init": 0.5,
        "erase": "episode",
    }


def _trainer(max_epochs: int, log_every: int) -> dict[str, Any]:
    # One episode per step.
    return {
        "max_epochs": max_epochs,
        "batch_size": 1,
        "eval_batch_size": 1,
        "log_every_n_steps": log_every,
    }


_ADAM2 = {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4, "lr_decay": 0.8}

STAGE2_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "model": _head(64),
        "data": EPISODES_QUICK,
        "optim": _ADAM2,
        "trainer": _trainer(4, 100),
    },
    "medium": {
        "model": _head(64),
        "data": {**EPISODES_QUICK, "train_episodes": 1000, "val_episodes": 300},
        "optim": _ADAM2,
        "trainer": _trainer(5, 100),
    },
    "paper": {
        "model": _head(128),
        "data": {**EPISODES_QUICK, "train_episodes": 4000, "val_episodes": 1000},
        "optim": _ADAM2,
        "trainer": _trainer(10, 200),
    },
}

#: Per preset: the heads trained, the fixed-erase ablations and the stage-1 backbone per data set.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"heads": ("cosine", "nam"), "ablate_erase": (0.5,), "test_episodes": 1000},
    "medium": {
        "heads": HEADS,
        "ablate_erase": (0.0, 0.5),
        "test_episodes": 1000,
        "backbone": {"noto": "resnet12"},
    },
    "paper": {
        "heads": HEADS,
        "ablate_erase": (0.0, 0.5),
        "test_episodes": 2000,
        "backbone": {"noto": "resnet12", "miniimagenet": "resnet12"},
    },
}

PRESET_DESCRIPTIONS = {
    "quick": "cosine and NAM heads, ConvNet stage 1 (minutes on a CPU)",
    "medium": "every head + fixed-erase ablations, ResNet-12 on Noto, 1,000 test episodes",
    "paper": "larger sizes, 2,000 test episodes",
}

#: Preset name -> ``{task: models}``: what ``nam list`` and the checks see (the reproducer trains
#: one backbone per data set and the preset's heads).
GRIDS: dict[str, dict[str, tuple[str, ...]]] = {
    p: {STAGE1: BACKBONES, STAGE2: tuple(d["heads"])} for p, d in PRESET_DEFAULTS.items()
}


def dataset_overrides(name: str, root: str | None, preset: str) -> tuple[list[str], list[str]]:
    """(stage-1, stage-2) overrides that point the presets at a data set other than the glyphs."""
    if name == "glyphs":
        return [], []
    if name == "noto":
        # Quick renders 20 images per character: 5 shots + 5 queries, like Omniglot.
        return ["data.dataset=noto"], (["data.n_query_novel=5"] if preset == "quick" else [])
    if name == "miniimagenet":  # 32 px keeps the quick preset CPU-sized; paper: 84 px
        size = 32 if preset == "quick" else 84
        return [f"data.dataset={name}", f"data.root={root}", f"data.image_size={size}"], []
    # Omniglot has 20 images per character: 5 shots + 5 queries fit in every class's pools.
    return (
        [f"data.dataset={name}", f"data.root={root}", "data.image_size=28"],
        ["data.n_query_novel=5"],
    )
