"""Data of the LRA tasks: generated ListOps / Pathfinder, user-provided Text, Retrieval, Image.

ListOps and Pathfinder are generated (seeded, cached); Text (IMDB bytes), Retrieval (AAN pairs)
and Image (CIFAR-10 grey) are read from files the user puts under ``data.root`` (default
``<data root>/lra``, i.e. ``$NAM_DATA_DIR/lra`` or ``~/.cache/neural_attention_memory/lra``); see
:mod:`...tasks.lra.files` for the layouts. ListOps and Pathfinder can also read the LRA release
(``data.release``: the folder holding ``listops-1000/`` and ``pathfinder32/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ...tasks.cache import data_root
from ...tasks.lra import (
    ListOpsConfig,
    PairDataset,
    PathfinderConfig,
    TokenDataset,
    encode_bytes,
    encode_listops,
    listops_splits,
    pathfinder_splits,
    read_aan,
    read_cifar10_grey,
    read_imdb,
    read_listops_tsv,
    read_pathfinder_release,
)
from ...training.config import ConfigError
from ...training.spec import TrainSchedule
from .paper import TASKS

__all__ = ["WarmupTrainSet", "build_datasets", "data_available", "train_schedule"]


def _root(data: Mapping[str, Any]) -> Path:
    return Path(data["root"]) if data.get("root") else data_root() / "lra"


def _carve(n: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (rest, held-out ``count``) with a seeded permutation."""
    if not 0 < count < n:
        raise ValueError(
            f"data.val_count: expected 0 < val_count < {n} (training examples), got {count}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[count:]), np.sort(perm[:count])


def _limit(seqs: list, labels: np.ndarray, limit: int | None) -> tuple[list, np.ndarray]:
    if limit is None:
        return seqs, labels
    return seqs[:limit], labels[:limit]


class WarmupTrainSet(TokenDataset):
    """ListOps training set with a warm-up: the first ``short_count`` examples are the short
    warm-up expressions, the next ``warmup_count - short_count`` the bridge ones (none without a
    bridge), the rest the full-length training set (see :func:`train_schedule`)."""

    def __init__(
        self, warmup: TokenDataset, train: TokenDataset, bridge: TokenDataset | None = None
    ) -> None:
        parts = [warmup] if bridge is None else [warmup, bridge]
        super().__init__(
            [s for p in (*parts, train) for s in p.sequences],
            np.concatenate([p.labels for p in (*parts, train)]),
        )
        self.short_count = len(warmup)
        self.warmup_count = sum(len(p) for p in parts)


# Seed offsets of the warm-up's own streams: its sets never share a draw with the main splits.
_SHORT_SEED, _BRIDGE_SEED = 7919, 15013


def _warmup(data: Mapping[str, Any], seed: int, stage: str = "warmup") -> TokenDataset:
    """``data.warmup``'s short (split "warmup") or bridge (split "bridge") expressions: generated,
    cached, each on a seed stream of its own."""
    w = data["warmup"]
    prefix, offset = ("", _SHORT_SEED) if stage == "warmup" else ("bridge_", _BRIDGE_SEED)
    cfg = ListOpsConfig(
        min_length=int(w[f"{prefix}min_length"]),
        max_length=int(w[f"{prefix}max_length"]),
        max_depth=int(data.get("max_depth") or 10),
        max_args=int(data.get("max_args") or 10),
    )
    counts = {stage: int(w["train"])}
    return listops_splits(cfg, counts, seed + offset, data.get("cache_root"))[stage]


def _listops(data: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    out = _listops_full(data, seed)
    warmup = data.get("warmup")
    if warmup:
        bridge = _warmup(data, seed, "bridge") if warmup.get("bridge_epochs") else None
        out["train"] = WarmupTrainSet(_warmup(data, seed), out["train"], bridge)
    return out


def _listops_full(data: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    if data.get("release"):
        folder = Path(data["release"]) / "listops-1000"
        out = {}
        for split in ("train", "val", "test"):
            rows = read_listops_tsv(folder / f"basic_{split}.tsv")
            rows = rows[: data.get(split)] if data.get(split) else rows
            out[split] = TokenDataset(
                [encode_listops(t[: data["max_length"]]) for t, _ in rows], [y for _, y in rows]
            )
        return out
    cfg = ListOpsConfig(
        min_length=int(data["min_length"]),
        max_length=int(data["max_length"]),
        max_depth=int(data["max_depth"]),
        max_args=int(data["max_args"]),
    )
    counts = {s: int(data[s]) for s in ("train", "val", "test")}
    return dict(listops_splits(cfg, counts, seed, data.get("cache_root")))


def _pathfinder(data: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    size, difficulty = int(data["size"]), data["difficulty"]
    if data.get("release"):
        images, labels = read_pathfinder_release(data["release"], size, difficulty)
        n = len(images)
        # LRA splits the release 80/10/10 in file order.
        a, b = int(0.8 * n), int(0.9 * n)
        flat = list(images.reshape(n, -1).astype(np.int64))
        return {
            "train": TokenDataset(flat[:a], labels[:a]),
            "val": TokenDataset(flat[a:b], labels[a:b]),
            "test": TokenDataset(flat[b:], labels[b:]),
        }
    cfg = PathfinderConfig.for_difficulty(
        difficulty, size=size, num_distractors=int(data["num_distractors"])
    )
    counts = {s: int(data[s]) for s in ("train", "val", "test")}
    return dict(pathfinder_splits(cfg, counts, seed, data.get("cache_root")))


def _text(data: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    root, L = _root(data), int(data["max_length"])
    texts, labels = read_imdb(root, "train")
    test_texts, test_labels = read_imdb(root, "test")
    seqs = [encode_bytes(t, L) for t in texts]
    rest, held = _carve(len(seqs), int(data["val_count"]), seed)
    train = _limit([seqs[i] for i in rest], labels[rest], data.get("train"))
    test = _limit([encode_bytes(t, L) for t in test_texts], test_labels, data.get("test"))
    return {
        "train": TokenDataset(*train),
        "val": TokenDataset([seqs[i] for i in held], labels[held]),
        "test": TokenDataset(*test),
    }


def _retrieval(data: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    root, L = _root(data), int(data["max_length"])
    out = {}
    for split, name in (("train", "train"), ("val", "eval"), ("test", "test")):
        t1, t2, y = read_aan(root, name)
        limit = data.get(split)
        t1, t2, y = (t1[:limit], t2[:limit], y[:limit]) if limit else (t1, t2, y)
        out[split] = PairDataset(
            [encode_bytes(t, L) for t in t1], [encode_bytes(t, L) for t in t2], y
        )
    return out


def _image(data: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    root = _root(data)
    images, labels = read_cifar10_grey(root, "train")
    test_images, test_labels = read_cifar10_grey(root, "test")
    flat = list(images.reshape(len(images), -1).astype(np.int64))
    rest, held = _carve(len(flat), int(data["val_count"]), seed)
    train = _limit([flat[i] for i in rest], labels[rest], data.get("train"))
    test = _limit(
        list(test_images.reshape(len(test_images), -1).astype(np.int64)),
        test_labels,
        data.get("test"),
    )
    return {
        "train": TokenDataset(*train),
        "val": TokenDataset([flat[i] for i in held], labels[held]),
        "test": TokenDataset(*test),
    }


_BUILDERS = {
    "lra-listops": _listops,
    "lra-pathfinder32": _pathfinder,
    "lra-text": _text,
    "lra-retrieval": _retrieval,
    "lra-image": _image,
}


def build_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    """``{"train", "val", "test"}`` for ``config["task"]`` from ``config["data"]``."""
    task = config["task"]
    if task not in _BUILDERS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
    return _BUILDERS[task](config.get("data", {}), seed)


def train_schedule(config: Mapping[str, Any], train: Dataset) -> TrainSchedule | None:
    """The ListOps warm-up of ``config["data"]["warmup"]`` (``None``: no warm-up).

    Epochs ``0 .. warmup.epochs - 1`` train on the warm-up expressions only (the short ones, and
    in the last ``warmup.bridge_epochs`` of them the bridge ones), every later epoch on the
    full-length training set only; validation and test are the full-length splits throughout.
    Each epoch's history entry records ``train_lengths`` and ``train_samples``.
    """
    warmup = (config.get("data") or {}).get("warmup")
    if not warmup:
        return None
    if not isinstance(train, WarmupTrainSet):
        raise ConfigError(
            f"data.warmup: a short-expression warm-up applies to lra-listops only, "
            f"got it for task {config.get('task')!r}"
        )
    epochs, n_short, n_warm, n = (
        int(warmup["epochs"]),
        train.short_count,
        train.warmup_count,
        len(train),
    )
    bridge_from = epochs - int(warmup.get("bridge_epochs") or 0)
    data = config["data"]
    stages = [  # (first epoch after the stage, indices, lengths)
        (bridge_from, range(n_short), f"{warmup['min_length']}-{warmup['max_length']}"),
        (
            epochs,
            range(n_short, n_warm),
            "{bridge_min_length}-{bridge_max_length}".format(**warmup),
        ),
        (None, range(n_warm, n), f"{data.get('min_length')}-{data.get('max_length')}"),
    ]

    def stage(epoch: int) -> tuple[range, str]:
        return next((idx, lengths) for end, idx, lengths in stages if end is None or epoch < end)

    def indices(epoch: int) -> range:
        return stage(epoch)[0]

    def describe(epoch: int) -> dict[str, Any]:
        idx, lengths = stage(epoch)
        return {"train_lengths": lengths, "train_samples": len(idx)}

    return TrainSchedule(indices=indices, describe=describe)


def data_available(task: str, data: Mapping[str, Any] | None = None) -> bool:
    """Whether the files a user-provided task needs are present (generated tasks: always)."""
    data = data or {}
    if task in ("lra-listops", "lra-pathfinder32"):
        return True
    root = _root(data)
    try:
        if task == "lra-text":
            return all(
                (root / "aclImdb" / s / "pos").is_dir() or (root / "imdb" / f"{s}.tsv").is_file()
                for s in ("train", "test")
            )
        if task == "lra-retrieval":
            return all(
                (root / "tsv_data" / f"new_aan_pairs.{s}.tsv").is_file()
                for s in ("train", "eval", "test")
            )
        if task == "lra-image":
            folder = root / "cifar-10-batches-py"
            return (folder / "test_batch").is_file() and all(
                (folder / f"data_batch_{i}").is_file() for i in range(1, 6)
            )
    except OSError:
        return False
    raise ValueError(f"task: expected one of {TASKS}, got {task!r}")
