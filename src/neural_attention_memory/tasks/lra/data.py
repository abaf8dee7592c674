"""Torch data sets, padding collate functions and cached generated splits for the LRA tasks.

A sample is a dict: ``{"tokens": [T] int64, "label": int}`` (or ``tokens1``/``tokens2`` for pairs).
The collate functions pad to the longest sequence of the batch and return a padding mask (True =
padding) built from the lengths, so token id 0 may also be a real value (a black pixel).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..cache import cached_dataset
from .listops import (
    ListOpsConfig,
    encode_listops,
    generate_listops,
    read_listops_tsv,
    write_listops_tsv,
)
from .pathfinder import PathfinderConfig, generate_pathfinder

__all__ = [
    "LISTOPS_VERSION",
    "PATHFINDER_VERSION",
    "PairDataset",
    "TokenDataset",
    "collate_pairs",
    "collate_tokens",
    "listops_splits",
    "pathfinder_splits",
]

LISTOPS_VERSION = "listops-1"
PATHFINDER_VERSION = "pathfinder-2"  # 2: backtracking contour walk


class TokenDataset(Dataset):
    """Sequences of token ids with one label each."""

    def __init__(self, sequences: Sequence[np.ndarray], labels: Sequence[int] | np.ndarray) -> None:
        if len(sequences) != len(labels):
            raise ValueError(
                f"labels: expected {len(sequences)} labels (one per sequence), got {len(labels)}"
            )
        self.sequences = [np.asarray(s, dtype=np.int64) for s in sequences]
        if any(s.ndim != 1 or s.size == 0 for s in self.sequences):
            raise ValueError("sequences: expected non-empty 1-d token arrays")
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict:
        return {"tokens": torch.from_numpy(self.sequences[i]), "label": int(self.labels[i])}


class PairDataset(Dataset):
    """Pairs of token sequences with one label each (retrieval)."""

    def __init__(
        self,
        first: Sequence[np.ndarray],
        second: Sequence[np.ndarray],
        labels: Sequence[int] | np.ndarray,
    ) -> None:
        if not len(first) == len(second) == len(labels):
            raise ValueError(
                f"first, second, labels: expected equal lengths, got {len(first)}, {len(second)}, {len(labels)}"
            )
        self.a = TokenDataset(first, labels)
        self.b = TokenDataset(second, labels)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> dict:
        x, y = self.a[i], self.b[i]
        return {"tokens1": x["tokens"], "tokens2": y["tokens"], "label": x["label"]}


def _pad(seqs: list[Tensor]) -> tuple[Tensor, Tensor]:
    T = max(len(s) for s in seqs)
    tokens = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.ones(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = s
        mask[i, : len(s)] = False
    return tokens, mask


def collate_tokens(batch: list[dict]) -> dict[str, Tensor]:
    """``{"tokens": [B, T], "padding_mask": [B, T] bool, "label": [B]}``."""
    tokens, mask = _pad([b["tokens"] for b in batch])
    return {
        "tokens": tokens,
        "padding_mask": mask,
        "label": torch.tensor([b["label"] for b in batch]),
    }


def collate_pairs(batch: list[dict]) -> dict[str, Tensor]:
    """``{"tokens1", "mask1", "tokens2", "mask2": [B, T_i], "label": [B]}``."""
    t1, m1 = _pad([b["tokens1"] for b in batch])
    t2, m2 = _pad([b["tokens2"] for b in batch])
    return {
        "tokens1": t1,
        "mask1": m1,
        "tokens2": t2,
        "mask2": m2,
        "label": torch.tensor([b["label"] for b in batch]),
    }


def _counts(counts: dict[str, int]) -> dict[str, int]:
    for k, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"counts[{k!r}]: expected a positive int, got {v!r}")
    return dict(counts)


def listops_splits(
    cfg: ListOpsConfig,
    counts: dict[str, int],
    seed: int,
    root: str | os.PathLike[str] | None = None,
) -> dict[str, TokenDataset]:
    """Generated ListOps splits (e.g. ``{"train": 2000, "val": 200, "test": 200}``), cached on disk as
    LRA-format TSV files ``basic_<split>.tsv``; each split has its own seed stream."""
    counts = _counts(counts)

    def build(folder: Path) -> dict[str, int]:
        out = {}
        for i, (split, n) in enumerate(sorted(counts.items())):
            rows = generate_listops(n, seed * 1000 + i, cfg)
            out[split] = write_listops_tsv(folder / f"basic_{split}.tsv", rows)
        return out

    params = {"config": cfg.to_dict(), "counts": counts, "seed": seed}
    folder = cached_dataset("lra-listops", LISTOPS_VERSION, params, build, root)
    out = {}
    for split in counts:
        rows = read_listops_tsv(folder / f"basic_{split}.tsv")
        out[split] = TokenDataset([encode_listops(t) for t, _ in rows], [y for _, y in rows])
    return out


def pathfinder_splits(
    cfg: PathfinderConfig,
    counts: dict[str, int],
    seed: int,
    root: str | os.PathLike[str] | None = None,
) -> dict[str, TokenDataset]:
    """Generated Pathfinder splits, cached as ``<split>.npz`` (``images`` uint8, ``labels``); each
    image becomes ``size * size`` pixel tokens (grey level 0..255, row-major)."""
    counts = _counts(counts)

    def build(folder: Path) -> dict[str, int]:
        out = {}
        for i, (split, n) in enumerate(sorted(counts.items())):
            images, labels = generate_pathfinder(n, seed * 1000 + i, cfg)
            np.savez_compressed(folder / f"{split}.npz", images=images, labels=labels)
            out[split] = n
        return out

    params = {"config": cfg.to_dict(), "counts": counts, "seed": seed}
    folder = cached_dataset("lra-pathfinder", PATHFINDER_VERSION, params, build, root)
    out = {}
    for split in counts:
        with np.load(folder / f"{split}.npz") as z:
            images, labels = z["images"], z["labels"]
        out[split] = TokenDataset(list(images.reshape(len(images), -1).astype(np.int64)), labels)
    return out
