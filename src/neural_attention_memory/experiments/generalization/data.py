"""Data of the length-generalisation tasks: training and evaluation splits, extra length ranges."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset

from ...tasks import algorithmic as alg
from ...tasks import scan as scan_tasks

__all__ = ["build_datasets", "build_eval_dataset", "scan_args"]


def build_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    """``{"train": ..., <eval splits>: ...}`` for ``config["task"]`` from ``config["data"]``."""
    task = config["task"]
    data = config.get("data", {})
    if task == "scan":
        return dict(scan_tasks.build_splits(seed, **scan_args(data)))
    return dict(alg.build_splits(task, seed, data.get("splits"), **dict(data.get("params") or {})))


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
