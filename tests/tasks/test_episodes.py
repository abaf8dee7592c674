"""Generalised episode sampler: counts, disjointness, label mapping, determinism, no leakage."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_attention_memory.tasks.episodes import (
    EpisodeDataset,
    FewShotImages,
    GeneralizedEpisodeSampler,
    collate_episode,
)

N_CLASSES, PER_CLASS = 20, 12
BASE, VAL, NOVEL = np.arange(0, 10), np.arange(10, 14), np.arange(14, 20)


def _data() -> FewShotImages:
    labels = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    subset = np.full(len(labels), -1, dtype=np.int8)
    for c in BASE:
        idx = np.flatnonzero(labels == c)
        subset[idx] = [0] * 8 + [1] * 1 + [2] * 3
    images = np.arange(len(labels), dtype=np.int64).reshape(-1, 1, 1, 1).astype(np.uint8)
    return FewShotImages(
        images=images,
        labels=labels,
        class_names=[str(c) for c in range(N_CLASSES)],
        class_split={"base": BASE, "val": VAL, "novel": NOVEL},
        base_subset=subset,
    )


def _eval_sampler(d, **kw):
    args = dict(
        labels=d.labels,
        base_classes=d.class_split["base"],
        novel_classes=d.class_split["novel"],
        novel_pool=d.indices("novel"),
        base_pool=d.indices("base", "test"),
        n_way=5,
        k_shot=2,
        n_query_novel=3,
        n_query_base=15,
        num_episodes=50,
        seed=3,
    )
    args.update(kw)
    return GeneralizedEpisodeSampler(**args)


def _stage2_sampler(d, **kw):
    train = d.indices("base", "train")
    args = dict(
        labels=d.labels,
        base_classes=d.class_split["base"],
        novel_classes=d.class_split["base"],
        novel_pool=train,
        base_pool=train,
        n_way=3,
        k_shot=2,
        n_query_novel=3,
        n_query_base=10,
        fake_novel=True,
        num_episodes=50,
        seed=1,
    )
    args.update(kw)
    return GeneralizedEpisodeSampler(**args)


def _check_episode(d, s, ep):
    n_way, k = s.n_way, s.k_shot
    assert ep.support.shape == (n_way * k,)
    assert np.bincount(ep.support_labels, minlength=n_way).tolist() == [k] * n_way
    assert len(np.unique(ep.novel_classes)) == n_way
    # Support labels point at the right classes.
    assert (d.labels[ep.support] == ep.novel_classes[ep.support_labels]).all()
    # No sample is both support and query, and no query is repeated.
    assert not set(ep.support.tolist()) & set(ep.query.tolist())
    assert len(np.unique(ep.query)) == len(ep.query)
    # Counts of novel / base queries.
    assert ep.is_novel.sum() == n_way * s.n_query_novel
    assert (~ep.is_novel).sum() == s.n_query_base
    # Base ids exclude the novel classes; novel classes never among the episode's base classes.
    base_cls = s.base_classes[ep.base_ids]
    assert not set(base_cls.tolist()) & set(ep.novel_classes.tolist())
    n_base = len(ep.base_ids)
    # Joint labels decode to the true global class of every query.
    decoded = np.where(
        ep.query_labels < n_base,
        base_cls[np.minimum(ep.query_labels, n_base - 1)],
        ep.novel_classes[np.maximum(ep.query_labels - n_base, 0)],
    )
    assert (decoded == d.labels[ep.query]).all()
    assert ((ep.query_labels >= n_base) == ep.is_novel).all()


def test_eval_episodes_invariants_and_split_leakage():
    d = _data()
    s = _eval_sampler(d)
    base_test = set(d.indices("base", "test").tolist())
    novel_pool = set(d.indices("novel").tolist())
    for i in range(len(s)):
        ep = s[i]
        _check_episode(d, s, ep)
        assert set(ep.novel_classes.tolist()) <= set(NOVEL.tolist())
        assert len(ep.base_ids) == len(BASE)
        # Base queries only from held-out base samples; novel from the novel split.
        assert set(ep.query[~ep.is_novel].tolist()) <= base_test
        assert set(ep.query[ep.is_novel].tolist()) | set(ep.support.tolist()) <= novel_pool


def test_stage2_fake_novel_episodes():
    d = _data()
    s = _stage2_sampler(d)
    train = set(d.indices("base", "train").tolist())
    for i in range(len(s)):
        ep = s[i]
        _check_episode(d, s, ep)
        assert len(ep.base_ids) == len(BASE) - 3
        assert set(ep.support.tolist()) | set(ep.query.tolist()) <= train


@settings(max_examples=25, deadline=None)
@given(
    n_way=st.integers(1, 6),
    k_shot=st.integers(1, 4),
    qn=st.integers(0, 4),
    qb=st.integers(0, 20),
    seed=st.integers(0, 10_000),
)
def test_invariants_property(n_way, k_shot, qn, qb, seed):
    if qn + qb == 0 or k_shot + qn > PER_CLASS:
        return
    d = _data()
    s = _eval_sampler(d, n_way=n_way, k_shot=k_shot, n_query_novel=qn, n_query_base=qb, seed=seed)
    _check_episode(d, s, s[seed % len(s)])


def test_determinism_and_seed():
    d = _data()
    a, b, c = _eval_sampler(d), _eval_sampler(d), _eval_sampler(d, seed=4)
    for i in (0, 7, 49):
        for f in ("support", "query", "query_labels", "novel_classes"):
            assert np.array_equal(getattr(a[i], f), getattr(b[i], f))
    assert any(not np.array_equal(a[i].query, c[i].query) for i in range(5))
    # Episodes vary within a set.
    assert len({tuple(a[i].novel_classes) for i in range(20)}) > 1


def test_dataset_and_collate():
    d = _data()
    s = _eval_sampler(d)
    feats = torch.randn(len(d.labels), 4)
    item = EpisodeDataset(s, feats)[2]
    ep = s[2]
    assert torch.equal(item["support"], feats[torch.from_numpy(ep.support)])
    assert item["query"].shape == (len(ep.query), 4)
    loader = torch.utils.data.DataLoader(
        EpisodeDataset(s, d.float_images), batch_size=1, collate_fn=collate_episode
    )
    batch = next(iter(loader))
    assert batch["support"].shape == (10, 1, 1, 1) and batch["n_way"] == 5
    # Several equal-sized episodes stack along a new first dimension.
    items = [EpisodeDataset(s, feats)[i] for i in range(3)]
    stacked = collate_episode(items)
    assert stacked["n_way"] == 5 and stacked["support"].shape == (3, *item["support"].shape)
    for key in ("support", "support_labels", "query", "query_labels", "is_novel", "base_ids"):
        for i in range(3):
            assert torch.equal(stacked[key][i], items[i][key]), key
    short = dict(item, query=item["query"][:-1], query_labels=item["query_labels"][:-1])
    with pytest.raises(ValueError, match="equal sizes"):
        collate_episode([item, short])
    with pytest.raises(ValueError, match="n_way"):
        collate_episode([item, dict(item, n_way=4)])
    with pytest.raises(ValueError, match="at least one"):
        collate_episode([])


def test_errors():
    d = _data()
    with pytest.raises(ValueError, match="novel_classes"):
        _eval_sampler(d, novel_classes=np.array([0, 14, 15, 16, 17]))
    with pytest.raises(ValueError, match="novel_classes"):
        _stage2_sampler(d, novel_classes=NOVEL)
    with pytest.raises(ValueError, match="n_way"):
        _eval_sampler(d, n_way=7)
    with pytest.raises(ValueError, match="novel_pool"):
        _eval_sampler(d, k_shot=10, n_query_novel=5)
    with pytest.raises(ValueError, match="k_shot"):
        _eval_sampler(d, k_shot=0)
    with pytest.raises(IndexError):
        _eval_sampler(d)[50]
    with pytest.raises(ValueError, match="split"):
        d.indices("test")
    with pytest.raises(ValueError, match="class_split"):
        FewShotImages(
            images=d.images,
            labels=d.labels,
            class_names=d.class_names,
            class_split={"base": BASE, "val": BASE[:2], "novel": NOVEL},
            base_subset=d.base_subset,
        )
