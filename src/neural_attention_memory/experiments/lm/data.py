"""Datasets of the byte-level LM benchmark (train / val / test windows of stdlib source)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset

from ...tasks.pysource import ByteWindows, load_split

__all__ = ["build_datasets"]


def build_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    """``data``: ``train_length`` (training window), ``eval_length`` (evaluation window),
    ``val_windows`` / ``test_windows`` (evaluation windows kept, spread over the split) and
    ``root`` (standard-library folder; None = this interpreter's). Training windows start at a
    seed-dependent offset; the evaluation windows are fixed."""
    d = config["data"]
    root = d.get("root")
    train, _, _ = load_split("train", root)
    offset = seed % int(d["train_length"])
    out: dict[str, Dataset] = {"train": ByteWindows(train, int(d["train_length"]), offset)}
    for split in ("val", "test"):
        data, _, _ = load_split(split, root)
        out[split] = ByteWindows(data, int(d["eval_length"]), 0, int(d[f"{split}_windows"]))
    return out
