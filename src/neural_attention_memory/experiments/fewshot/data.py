"""Few-shot data: the image sets (rendered glyphs / Noto scripts, mini-ImageNet, Omniglot), the
stage-1 classification sets and the generalised episodes of stage 2 and the test."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...tasks.episodes import FewShotImages, GeneralizedEpisodeSampler

__all__ = [
    "DATASETS",
    "RENDERED",
    "LabelledImages",
    "episode_sampler",
    "load_fewshot_data",
    "stage1_datasets",
]

DATASETS = ("glyphs", "noto", "miniimagenet", "omniglot")
RENDERED = ("glyphs", "noto")  # rendered here from installed fonts: no folder needed


def _data_key(data_cfg: Mapping[str, Any]) -> str:
    keys = ("dataset", "root", "image_size", "glyphs", "noto")
    return json.dumps({k: data_cfg.get(k) for k in keys}, sort_keys=True, default=str)


@lru_cache(maxsize=4)
def _load_cached(key: str) -> FewShotImages:
    cfg = json.loads(key)
    name = cfg["dataset"]
    if name in RENDERED:
        from ...tasks.glyphs import load_glyphs

        if name == "noto":
            return load_glyphs(source="noto", **(cfg.get("noto") or {}))
        return load_glyphs(**(cfg.get("glyphs") or {}))
    from ...tasks import fewshot_readers as readers

    if name == "miniimagenet":
        return readers.load_mini_imagenet(cfg["root"], image_size=cfg.get("image_size"))
    return readers.load_omniglot(cfg["root"], image_size=cfg.get("image_size") or 28)


def load_fewshot_data(data_cfg: Mapping[str, Any]) -> FewShotImages:
    """The :class:`FewShotImages` described by a config's ``data`` section (cached per process)."""
    name = data_cfg.get("dataset", "glyphs")
    if name not in DATASETS:
        raise ValueError(f"data.dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    if name not in RENDERED and not data_cfg.get("root"):
        raise ValueError(f"data.root: expected the folder of the {name} data set, got None")
    return _load_cached(_data_key({**data_cfg, "dataset": name}))


class LabelledImages(Dataset):
    """Images (uint8, converted per item) with their base-class row as target."""

    def __init__(self, data: FewShotImages, idx: np.ndarray, base_row: dict[int, int]) -> None:
        self.data, self.idx = data, idx
        self.targets = torch.tensor([base_row[int(c)] for c in data.labels[idx]], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img = torch.from_numpy(np.ascontiguousarray(self.data.images[self.idx[i]]))
        return img.float().div_(255.0), self.targets[i]


def stage1_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    """Stage 1: the base classes' ``train`` images, selected on their ``val`` images."""
    data = load_fewshot_data(config["data"])
    rows = {int(c): j for j, c in enumerate(data.class_split["base"])}
    return {
        "train": LabelledImages(data, data.indices("base", "train"), rows),
        "val": LabelledImages(data, data.indices("base", "val"), rows),
    }


def episode_sampler(
    data: FewShotImages, d: Mapping[str, Any], split: str, seed: int, num_episodes: int
) -> GeneralizedEpisodeSampler:
    """Episodes of a stage-2 config's ``data`` section ``d`` for ``split``.

    ``"train"``: fake-novel episodes from the base classes' holdout samples (train samples when
    the source has no holdout); ``"val"``: novel classes from the val split, base queries from
    base val samples; ``"test"``: novel classes from the novel split, base queries from base test.
    """
    base = data.class_split["base"]
    common = dict(
        labels=data.labels,
        base_classes=base,
        n_way=int(d["n_way"]),
        k_shot=int(d["k_shot"]),
        n_query_novel=int(d["n_query_novel"]),
        n_query_base=int(d["n_query_base"]),
        num_episodes=int(num_episodes),
        seed=int(seed),
    )
    if split == "train":
        # Held-out base images when the source has them: their features look like test features
        # (the backbone never saw them), unlike the over-fitted features of its training images.
        pool = data.indices("base", "holdout")
        if len(pool) == 0:
            pool = data.indices("base", "train")
        return GeneralizedEpisodeSampler(
            novel_classes=base, novel_pool=pool, base_pool=pool, fake_novel=True, **common
        )
    if split in ("val", "test"):
        novel_split = "val" if split == "val" else "novel"
        return GeneralizedEpisodeSampler(
            novel_classes=data.class_split[novel_split],
            novel_pool=data.indices(novel_split),
            base_pool=data.indices("base", split),
            **common,
        )
    raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
