"""Frozen-backbone features: computed once per stage-1 run, cached as ``features.pt`` in it, and
the stage-2 episode sets built on them (exactly equivalent to running the frozen backbone)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...tasks.episodes import EpisodeDataset, FewShotImages
from ...training.rundir import read_config
from .data import episode_sampler, load_fewshot_data
from .models import load_stage1, stage1_run_of

__all__ = ["features_for", "stage1_features", "stage2_datasets"]


def _stamp(run_dir: Path) -> int | None:
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    return ckpt.stat().st_mtime_ns if ckpt.exists() else None


@torch.no_grad()
def stage1_features(run_dir: str | os.PathLike[str], batch_size: int = 512) -> Tensor:
    """Frozen-backbone features `[n, d]` of every image, cached as ``features.pt`` in the run.

    The cache is keyed by the modification time of ``checkpoints/best.ckpt``.
    """
    run_dir = Path(run_dir)
    cache = run_dir / "features.pt"
    stamp = _stamp(run_dir)
    if cache.is_file():
        blob = torch.load(cache, map_location="cpu", weights_only=True)
        if blob.get("stamp") == stamp:
            return blob["features"]
    net, config = load_stage1(run_dir)
    data = load_fewshot_data(config["data"])
    n = len(data.labels)
    feats = torch.cat(
        [
            net.features(data.float_images(np.arange(i, min(i + batch_size, n))))
            for i in range(0, n, batch_size)
        ]
    )
    tmp = cache.with_suffix(".tmp")
    torch.save({"features": feats, "stamp": stamp}, tmp)
    os.replace(tmp, cache)
    return feats


@lru_cache(maxsize=4)
def _features_cached(run_dir: str, stamp: int | None) -> Tensor:
    return stage1_features(run_dir)


def features_for(config: Mapping[str, Any]) -> tuple[Tensor, FewShotImages]:
    """(features `[n, d]`, images) of the stage-1 run a stage-2 config names."""
    run = stage1_run_of(config)
    s1 = read_config(run)
    return _features_cached(str(run.resolve()), _stamp(run)), load_fewshot_data(s1["data"])


def stage2_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    """Stage 2: fake-novel training episodes, validation episodes on the val classes."""
    feats, data = features_for(config)
    d = config["data"]
    train = episode_sampler(data, d, "train", seed, d["train_episodes"])
    val = episode_sampler(data, d, "val", int(d["val_seed"]), d["val_episodes"])
    return {"train": EpisodeDataset(train, feats), "val": EpisodeDataset(val, feats)}
