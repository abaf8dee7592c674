"""Data of the length-generalisation tasks: training and evaluation splits, extra length ranges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

from ...tasks import algorithmic as alg
from ...tasks import scan as scan_tasks
from ...training.config import ConfigError
from ...training.spec import TrainSchedule

__all__ = [
    "build_datasets",
    "build_eval_dataset",
    "curriculum_indices",
    "curriculum_label",
    "curriculum_max_size",
    "scan_args",
    "train_schedule",
]


def build_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    """``{"train": ..., <eval splits>: ...}`` for ``config["task"]`` from ``config["data"]``."""
    task = config["task"]
    data = config.get("data", {})
    if task == "scan":
        out = dict(scan_tasks.build_splits(seed, **scan_args(data)))
    else:
        params = dict(data.get("params") or {})
        out = dict(alg.build_splits(task, seed, data.get("splits"), **params))
    if data.get("input_loss"):
        # the authors' autoencoding loss, on the training set only (metrics never change)
        out["train"].input_loss = True
    return out


def scan_args(data: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`...tasks.scan.build_splits` held in a ``data`` section."""
    keys = ("id_count", "test_count", "train_count", "max_train_actions", "slots")
    return {k: data[k] for k in keys if k in data}


def build_eval_dataset(config: Mapping[str, Any], seed: int, options: dict[str, Any]) -> Dataset:
    """An evaluation set for ``nam eval RUN_DIR --digits A-B``.

    ``options``: ``digits`` (``"A-B"``: digits, unclosed brackets, or SCAN actions) and optional
    ``count`` (default: the run's ``id`` split size). The training set is excluded.
    """
    allowed = {"digits", "count"}
    unknown = sorted(set(options) - allowed)
    if unknown or "digits" not in options:
        raise ValueError(
            f"options: expected 'digits' (and optionally 'count'), got {sorted(options)}"
        )
    task = config["task"]
    data = config.get("data", {})
    if task == "scan":
        train = scan_tasks.build_splits(seed, **scan_args(data))["train"].examples
        count = options.get("count")
        return scan_tasks.build_eval_dataset(
            options["digits"], seed, count, exclude=train, slots=data.get("slots", 48)
        )
    splits = data.get("splits") or alg.default_splits()
    count = int(options.get("count") or splits.get("id", {}).get("count", 2048))
    params = dict(data.get("params") or {})
    train = alg.build_splits(task, seed, {"train": splits["train"]}, **params)["train"]
    return alg.build_eval_dataset(task, options["digits"], count, seed, train.examples, **params)


def curriculum_max_size(start: int, step: int, epoch: int, largest: int) -> int:
    """The largest training size of ``epoch`` (0-based): ``min(start + step * epoch, largest)``."""
    return min(int(start) + int(step) * int(epoch), int(largest))


def curriculum_indices(sizes: Sequence[int], max_size: int) -> list[int]:
    """Indices (ascending) of the training examples of size ``<= max_size``."""
    return [i for i, n in enumerate(sizes) if n <= max_size]


def curriculum_label(config: Mapping[str, Any]) -> str | None:
    """``"n <= 3+2e"`` for ``data.curriculum: {start: 3, step: 2}``; ``None`` without one."""
    curriculum = (config.get("data") or {}).get("curriculum")
    if not curriculum:
        return None
    return f"n <= {curriculum['start']}+{curriculum['step']}e"


def train_schedule(config: Mapping[str, Any], train: Dataset) -> TrainSchedule | None:
    """The length curriculum of ``config["data"]["curriculum"]`` (``None``: no curriculum).

    Epoch ``e`` trains on the problems of the one fixed training set whose size (digits, or
    unclosed brackets for dyck4) is at most :func:`curriculum_max_size` ``(start, step, e, hi)``,
    ``hi`` the top of the train range; the evaluation splits never change. The history entry of
    each epoch records ``train_max_size`` and ``train_samples``.

    Raises:
        ConfigError: a curriculum on SCAN (its sizes are action lengths), or one whose first
            epoch would hold no training problem.
    """
    curriculum = (config.get("data") or {}).get("curriculum")
    if curriculum is None:
        return None
    if config.get("task") == "scan" or not isinstance(train, alg.SequenceDataset):
        raise ConfigError(
            f"data.curriculum: task {config.get('task')!r} has no digit sizes to order; "
            f"a length curriculum applies to {', '.join(alg.TASKS)}, got {curriculum!r}"
        )
    start, step = int(curriculum["start"]), int(curriculum["step"])
    splits = config["data"].get("splits") or alg.default_splits()
    hi = alg.parse_range(splits["train"]["digits"])[1]
    sizes = train.sizes()

    def indices(epoch: int) -> list[int]:
        return curriculum_indices(sizes, curriculum_max_size(start, step, epoch, hi))

    first = curriculum_max_size(start, step, 0, hi)
    if not indices(0):
        raise ConfigError(
            f"data.curriculum.start: no training problem has size <= {first} (sizes "
            f"{min(sizes)}-{max(sizes)}); expected a larger start, got {start}"
        )

    def describe(epoch: int) -> dict[str, Any]:
        return {
            "train_max_size": curriculum_max_size(start, step, epoch, hi),
            "train_samples": len(indices(epoch)),
        }

    return TrainSchedule(indices=indices, describe=describe)
