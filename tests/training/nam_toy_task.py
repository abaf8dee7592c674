"""A tiny synthetic task (sign of a weighted sum) used to test the training engine and the CLI.

Small enough that a 3-epoch run takes about a second; it has dropout (so RNG reseeding matters),
shuffled training data, two eval splits and a ``build_eval_dataset`` option.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from neural_attention_memory.training import StepOutput, TaskSpec

_W = torch.tensor([1.0, -2.0, 0.5, 1.5])


def _make(n: int, scale: float, gen: torch.Generator) -> TensorDataset:
    x = torch.randn(n, 4, generator=gen) * scale
    y = (x @ _W > 0).long()
    return TensorDataset(x, y)


def build_datasets(config: Mapping[str, Any], seed: int) -> dict[str, TensorDataset]:
    data = config["data"]
    gen = torch.Generator().manual_seed(seed)
    return {
        "train": _make(int(data["n_train"]), 1.0, gen),
        "val": _make(int(data["n_eval"]), 1.0, gen),
        "far": _make(int(data["n_eval"]), 3.0, gen),
    }


def build_eval_dataset(config: Mapping[str, Any], seed: int, options: dict[str, Any]):
    unknown = set(options) - {"scale"}
    if unknown:
        raise ValueError(f"options: unknown option(s) {sorted(unknown)}; valid choices: scale")
    gen = torch.Generator().manual_seed(seed + 99)
    return _make(int(config["data"]["n_eval"]), float(options.get("scale", 1.0)), gen)


def build_model(config: Mapping[str, Any]) -> nn.Module:
    m = config["model"]
    if m["name"] == "mlp":
        return nn.Sequential(
            nn.Linear(4, m["hidden"]),
            nn.ReLU(),
            nn.Dropout(m["dropout"]),
            nn.Linear(m["hidden"], 2),
        )
    return nn.Linear(4, 2)


def compute(model: nn.Module, batch) -> StepOutput:
    x, y = batch
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    correct = (logits.argmax(-1) == y).sum()
    n = torch.tensor(float(y.numel()))
    return StepOutput(loss=loss, metrics={"acc": (correct.float(), n), "err": (n - correct, n)})


PRESETS = {
    "quick": {
        "seed": 0,
        "model": {"name": "mlp", "hidden": 16, "dropout": 0.2},
        "data": {"n_train": 200, "n_eval": 96},
        "optim": {"lr": 0.02, "lr_decay": 0.8, "grad_clip": 1.0, "weight_decay": 1e-4},
        "trainer": {
            "max_epochs": 3,
            "batch_size": 32,
            "eval_batch_size": 40,
            "progress_bar": False,
        },
        "per_model": {"linear": {"optim": {"lr": 0.05}}},
    },
    "paper": {
        "model": {"name": "mlp", "hidden": 64, "dropout": 0.1},
        "data": {"n_train": 2000, "n_eval": 500},
        "trainer": {"max_epochs": 10, "batch_size": 64, "progress_bar": False},
    },
}


def make_spec(name: str = "toy") -> TaskSpec:
    return TaskSpec(
        name=name,
        family="toyfamily",
        build_datasets=build_datasets,
        build_model=build_model,
        compute=compute,
        models=("mlp", "linear"),
        presets=PRESETS,
        selection_metric="val/acc",
        selection_mode="max",
        description="sign of a weighted sum (engine tests)",
        build_eval_dataset=build_eval_dataset,
    )
