"""Generalised few-shot episodes: N novel classes x K shots of support, queries from novel AND base.

The data model shared by every few-shot source (rendered glyphs, mini-ImageNet, Omniglot) is
:class:`FewShotImages`: images, one global class label per sample, a base / val / novel split of
the classes, and for base-class samples a train / val / test / holdout subset (base queries at
evaluation time come from held-out ``test`` samples, never from images the backbone was trained
on; ``holdout`` samples, when a source has them, feed stage-2 episodes with unseen images).

:class:`GeneralizedEpisodeSampler` draws episode ``i`` from its own generator seeded by
``(seed, i)``, so an episode set is reproducible and can be indexed in any order. Two uses:

- evaluation: novel classes from the ``novel`` (or ``val``) split, support and novel queries from
  their samples, base queries from the base classes' held-out samples;
- stage-2 training (``fake_novel=True``): the "novel" classes are drawn from the base classes
  themselves; they are removed from the episode's base classes, so no class is both.

Within an episode no sample is in both support and query. Query labels live in the episode's joint
label space: base class ``base_classes[base_ids[j]]`` has label ``j``, novel class ``n`` has label
``len(base_ids) + n``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "BASE_SUBSETS",
    "SPLITS",
    "Episode",
    "EpisodeDataset",
    "FewShotImages",
    "GeneralizedEpisodeSampler",
    "collate_episode",
]

SPLITS = ("base", "val", "novel")
BASE_SUBSETS = ("train", "val", "test", "holdout")


@dataclass
class FewShotImages:
    """A labelled image collection split for generalised few-shot learning.

    Attributes:
        images: `[n, C, H, W]` uint8.
        labels: `[n]` int64 global class ids in ``[0, len(class_names))``.
        class_names: one name per class.
        class_split: ``"base"``/``"val"``/``"novel"`` -> sorted int64 class ids (disjoint).
        base_subset: `[n]` int8: for samples of base classes 0/1/2/3 = train/val/test/holdout
            (holdout: never seen in stage 1, used for stage-2 episodes; may be empty); -1 otherwise.
        name: a short name for reports.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    class_split: dict[str, np.ndarray]
    base_subset: np.ndarray
    name: str = "images"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images: expected uint8 [n, C, H, W], got {self.images.dtype} {self.images.shape}"
            )
        n = self.images.shape[0]
        if self.labels.shape != (n,) or self.base_subset.shape != (n,):
            raise ValueError(
                f"labels, base_subset: expected shape ({n},), got {self.labels.shape} and "
                f"{self.base_subset.shape}"
            )
        if set(self.class_split) != set(SPLITS):
            raise ValueError(f"class_split: expected keys {SPLITS}, got {sorted(self.class_split)}")
        seen: set[int] = set()
        for split in SPLITS:
            ids = {int(c) for c in self.class_split[split]}
            if ids & seen:
                raise ValueError(f"class_split: split {split!r} shares classes with another split")
            seen |= ids

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, split: str, subset: str | None = None) -> np.ndarray:
        """Sample indices of the classes in ``split``; for ``"base"`` optionally one subset."""
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        mask = np.isin(self.labels, self.class_split[split])
        if subset is not None:
            if split != "base" or subset not in BASE_SUBSETS:
                raise ValueError(
                    f"subset: expected one of {BASE_SUBSETS} with split 'base', got {subset!r} "
                    f"with split {split!r}"
                )
            mask &= self.base_subset == BASE_SUBSETS.index(subset)
        return np.flatnonzero(mask)

    def float_images(self, idx: np.ndarray | Tensor | None = None) -> Tensor:
        """Images as float `[n, C, H, W]` in [0, 1] (all, or the given indices)."""
        x = self.images if idx is None else self.images[np.asarray(idx)]
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)


@dataclass(frozen=True)
class Episode:
    """One generalised episode (all arrays are numpy int64 / bool).

    ``support`` `[N*K]` and ``query`` `[Q]` are sample indices; ``support_labels`` are in
    ``[0, N)``; ``query_labels`` are joint labels (see module docstring); ``is_novel`` `[Q]` marks
    novel queries; ``novel_classes`` `[N]` are global class ids; ``base_ids`` `[B']` index
    ``base_classes``.
    """

    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray
    is_novel: np.ndarray
    novel_classes: np.ndarray
    base_ids: np.ndarray


class GeneralizedEpisodeSampler:
    """Deterministic generator of generalised N-way K-shot episodes.

    Args:
        labels: `[n]` global class id of every sample.
        base_classes: the head's base classes, in row order (global ids).
        novel_classes: candidate novel classes (global ids); with ``fake_novel`` they must be a
            subset of ``base_classes``.
        novel_pool: sample indices from which supports and novel queries are drawn.
        base_pool: sample indices from which base queries are drawn.
        n_way, k_shot: novel classes per episode, support samples per novel class.
        n_query_novel: novel queries per novel class. n_query_base: base queries per episode.
        fake_novel: stage-2 mode: novel classes are base classes, removed from the episode's base.
        num_episodes: ``len(sampler)``.
        seed: episode ``i`` uses ``np.random.default_rng([seed, i])``.
    """

    def __init__(
        self,
        labels: np.ndarray,
        base_classes: Sequence[int],
        novel_classes: Sequence[int],
        novel_pool: np.ndarray,
        base_pool: np.ndarray,
        n_way: int,
        k_shot: int,
        n_query_novel: int,
        n_query_base: int,
        fake_novel: bool = False,
        num_episodes: int = 1000,
        seed: int = 0,
    ) -> None:
        for name, val, lo in (
            ("n_way", n_way, 1),
            ("k_shot", k_shot, 1),
            ("n_query_novel", n_query_novel, 0),
            ("n_query_base", n_query_base, 0),
            ("num_episodes", num_episodes, 1),
        ):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {val!r}")
        if n_query_novel + n_query_base == 0:
            raise ValueError(
                "n_query_novel, n_query_base: expected at least one query, got 0 and 0"
            )
        self.labels = np.asarray(labels, dtype=np.int64)
        self.base_classes = np.asarray(base_classes, dtype=np.int64)
        self.novel_classes = np.asarray(novel_classes, dtype=np.int64)
        self.n_way, self.k_shot = int(n_way), int(k_shot)
        self.n_query_novel, self.n_query_base = int(n_query_novel), int(n_query_base)
        self.fake_novel, self.num_episodes, self.seed = fake_novel, int(num_episodes), int(seed)
        if len(set(self.base_classes.tolist())) != len(self.base_classes):
            raise ValueError("base_classes: expected distinct class ids, got duplicates")
        base_set = set(self.base_classes.tolist())
        overlap = base_set & set(self.novel_classes.tolist())
        if fake_novel and len(overlap) != len(set(self.novel_classes.tolist())):
            raise ValueError(
                "novel_classes: with fake_novel=True expected a subset of base_classes"
            )
        if not fake_novel and overlap:
            raise ValueError(
                "novel_classes: expected no overlap with base_classes, got shared "
                f"{sorted(overlap)[:5]}"
            )
        if len(self.novel_classes) < n_way:
            raise ValueError(
                f"n_way: expected <= {len(self.novel_classes)} (candidate novel classes), "
                f"got {n_way}"
            )
        self._base_row = {int(c): j for j, c in enumerate(self.base_classes)}
        self._novel_by_class = self._group(
            np.asarray(novel_pool, dtype=np.int64), self.novel_classes
        )
        self._base_by_class = self._group(np.asarray(base_pool, dtype=np.int64), self.base_classes)
        need = k_shot + n_query_novel
        for c, idx in self._novel_by_class.items():
            if len(idx) < need:
                raise ValueError(
                    f"novel_pool: class {c} has {len(idx)} samples, expected >= k_shot + "
                    f"n_query_novel = {need}"
                )

    def _group(self, pool: np.ndarray, classes: np.ndarray) -> dict[int, np.ndarray]:
        if pool.size and (pool.min() < 0 or pool.max() >= len(self.labels)):
            raise ValueError(
                f"pool: expected sample indices in [0, {len(self.labels)}), got out of range"
            )
        lab = self.labels[pool]
        return {int(c): np.sort(pool[lab == c]) for c in classes}

    def __len__(self) -> int:
        return self.num_episodes

    def __getitem__(self, i: int) -> Episode:
        if not 0 <= i < self.num_episodes:
            raise IndexError(f"episode index {i} out of range [0, {self.num_episodes})")
        rng = np.random.default_rng([self.seed, i])
        novel = np.sort(rng.choice(self.novel_classes, size=self.n_way, replace=False))
        novel_set = set(novel.tolist())
        base_ids = np.array(
            [j for j, c in enumerate(self.base_classes) if int(c) not in novel_set], dtype=np.int64
        )
        n_base = len(base_ids)
        support, support_labels, query, query_labels = [], [], [], []
        for n, c in enumerate(novel):
            idx = rng.permutation(self._novel_by_class[int(c)])
            support.append(idx[: self.k_shot])
            support_labels.append(np.full(self.k_shot, n))
            q = idx[self.k_shot : self.k_shot + self.n_query_novel]
            query.append(q)
            query_labels.append(np.full(len(q), n_base + n))
        n_novel_q = sum(len(q) for q in query)
        if self.n_query_base:
            pool = np.concatenate(
                [self._base_by_class[int(self.base_classes[j])] for j in base_ids]
            )
            if len(pool) < self.n_query_base:
                raise ValueError(
                    f"base_pool: {len(pool)} samples for the episode's base classes, expected >= "
                    f"n_query_base = {self.n_query_base}"
                )
            bq = rng.choice(pool, size=self.n_query_base, replace=False)
            # Joint label of a base query = its row among the episode's base classes.
            row_in_episode = {int(b): j for j, b in enumerate(base_ids)}
            query.append(bq)
            query_labels.append(
                np.array([row_in_episode[self._base_row[int(c)]] for c in self.labels[bq]])
            )
        q_all = np.concatenate(query).astype(np.int64)
        is_novel = np.zeros(len(q_all), dtype=bool)
        is_novel[:n_novel_q] = True
        return Episode(
            support=np.concatenate(support).astype(np.int64),
            support_labels=np.concatenate(support_labels).astype(np.int64),
            query=q_all,
            query_labels=np.concatenate(query_labels).astype(np.int64),
            is_novel=is_novel,
            novel_classes=novel.astype(np.int64),
            base_ids=base_ids,
        )


class EpisodeDataset(Dataset):
    """A torch Dataset whose item ``i`` is episode ``i`` with its inputs gathered.

    ``source`` is indexed by sample index: a tensor (e.g. precomputed features `[n, d]`) or a
    callable ``indices -> tensor`` (e.g. :meth:`FewShotImages.float_images`). Items are dicts with
    ``support`` `[N*K, ...]`, ``support_labels`` `[N*K]`, ``query`` `[Q, ...]`,
    ``query_labels`` `[Q]`, ``is_novel`` `[Q]`, ``base_ids`` `[B']`, ``n_way`` (int). Use
    ``batch_size=1`` with
    :func:`collate_episode`.
    """

    def __init__(self, sampler: GeneralizedEpisodeSampler, source: Tensor | Callable) -> None:
        self.sampler, self.source = sampler, source

    def __len__(self) -> int:
        return len(self.sampler)

    def _gather(self, idx: np.ndarray) -> Tensor:
        if isinstance(self.source, Tensor):
            return self.source[torch.from_numpy(idx)]
        return self.source(idx)

    def __getitem__(self, i: int) -> dict:
        ep = self.sampler[i]
        return {
            "support": self._gather(ep.support),
            "support_labels": torch.from_numpy(ep.support_labels),
            "query": self._gather(ep.query),
            "query_labels": torch.from_numpy(ep.query_labels),
            "is_novel": torch.from_numpy(ep.is_novel),
            "base_ids": torch.from_numpy(ep.base_ids),
            "n_way": self.sampler.n_way,
        }


def collate_episode(batch: list[dict]) -> dict:
    """Collate for ``DataLoader(EpisodeDataset)``: one episode unchanged (``batch_size=1``), or
    ``E`` episodes of equal sizes stacked along a new first dimension (support `[E, S, d]`,
    labels `[E, S]`, query `[E, Q, d]`, ``base_ids`` `[E, B']`, ...; ``n_way`` stays an int)."""
    if len(batch) == 0:
        raise ValueError("batch: expected at least one episode, got none")
    if len(batch) == 1:
        return batch[0]
    out: dict = {"n_way": batch[0]["n_way"]}
    for key, first in batch[0].items():
        if key == "n_way":
            if any(ep["n_way"] != first for ep in batch):
                raise ValueError("batch: episodes of one batch must have the same n_way")
            continue
        shapes = {tuple(ep[key].shape) for ep in batch}
        if len(shapes) != 1:
            raise ValueError(
                f"batch: episodes of one batch must have equal sizes, got {key} shapes "
                f"{sorted(shapes)}"
            )
        out[key] = torch.stack([ep[key] for ep in batch])
    return out
