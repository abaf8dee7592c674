"""Few-shot experiment (paper §6): generalised N-way K-shot with the cosine and NAM heads.

Protocol (after Gidaris & Komodakis 2018):

- **Stage 1** (task ``fewshot_stage1``, model ``convnet``): a small ConvNet + cosine classifier
  trained on the base classes' ``train`` samples; selected on their held-out ``val`` samples.
- **Stage 2** (task ``fewshot_stage2``, models ``cosine``, ``cosine_att``, ``nam``): the backbone
  is frozen (its features are computed once and cached in the stage-1 run folder, which is exactly
  equivalent); the head starts from the stage-1 base weights and is trained on fake-novel episodes
  drawn from the base classes (from their ``holdout`` images, which stage 1 never saw, when the
  source has them); selected on episodes whose novel classes are the ``val`` classes.
- **Test**: many episodes with novel classes from the ``novel`` split and base queries from the
  base classes' held-out ``test`` samples; every head of one setting sees the same episodes, so
  differences between heads come with paired confidence intervals.

Metrics per episode: novel accuracy (N-way, among novel columns), base accuracy (among base
columns), joint accuracy (all columns, all queries), the false-positive rates across the boundary
(base queries predicted as a novel class, novel queries predicted as a base class) and a 2x3
confusion summary; means come with 95% confidence intervals over episodes.

``nam reproduce fewshot --preset quick`` runs all of it for 5-way 1-shot and 5-shot on the glyph
data set (and on mini-ImageNet / Omniglot when their folders are given) and writes a Markdown
report with tables and plots.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..models.convnet import ConvNet, ConvNetConfig
from ..models.few_shot import (
    ConstantGate,
    CosineClassifier,
    FewShotNetwork,
    NAMFewShotClassifier,
)
from ..models.resnet12 import ResNet12, ResNet12Config
from ..tasks.episodes import (
    EpisodeDataset,
    FewShotImages,
    GeneralizedEpisodeSampler,
    collate_episode,
)
from ..training.spec import StepOutput, TaskSpec
from .registry import register_reproducer, register_task
from .runner import Job

__all__ = [
    "STAGE1",
    "STAGE2",
    "episode_metrics",
    "evaluate_heads",
    "load_fewshot_data",
    "load_stage1",
    "reproduce_fewshot",
    "stage1_features",
    "summarize",
]

STAGE1, STAGE2 = "fewshot_stage1", "fewshot_stage2"
TEST_SEED = 2026  # test episodes: the same for every head and run
HEADS = ("cosine", "cosine_att", "nam", "nam_tied")
BACKBONES = ("convnet", "resnet12")
DATASETS = ("glyphs", "noto", "miniimagenet", "omniglot")
RENDERED = ("glyphs", "noto")  # rendered here from installed fonts: no folder needed

# Reference numbers (Gidaris & Komodakis 2018, cosine classifier + attention-based weight
# generator, ResNet backbone, mini-ImageNet 5-way), as restated in docs/paper.md §6.
PAPER_REFERENCE = {
    1: {"novel_acc": 56.21, "base_acc": 79.79, "joint_acc": 52.81},
    5: {"novel_acc": 70.64, "base_acc": 79.56, "joint_acc": 59.48},
}

# ----------------------------------------------------------------------------- data


def _data_key(data_cfg: Mapping[str, Any]) -> str:
    keys = ("dataset", "root", "image_size", "glyphs", "noto")
    return json.dumps({k: data_cfg.get(k) for k in keys}, sort_keys=True, default=str)


@lru_cache(maxsize=4)
def _load_cached(key: str) -> FewShotImages:
    cfg = json.loads(key)
    name = cfg["dataset"]
    if name in RENDERED:
        from ..tasks.glyphs import load_glyphs

        if name == "noto":
            return load_glyphs(source="noto", **(cfg.get("noto") or {}))
        return load_glyphs(**(cfg.get("glyphs") or {}))
    from ..tasks import fewshot_readers as readers

    if name == "miniimagenet":
        return readers.load_mini_imagenet(cfg["root"], image_size=cfg.get("image_size"))
    if name == "omniglot":
        return readers.load_omniglot(cfg["root"], image_size=cfg.get("image_size") or 28)
    raise ValueError(f"data.dataset: expected one of {', '.join(DATASETS)}, got {name!r}")


def load_fewshot_data(data_cfg: Mapping[str, Any]) -> FewShotImages:
    """The :class:`FewShotImages` described by a config's ``data`` section (cached per process)."""
    name = data_cfg.get("dataset", "glyphs")
    if name not in DATASETS:
        raise ValueError(f"data.dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    if name not in RENDERED and not data_cfg.get("root"):
        raise ValueError(f"data.root: expected the folder of the {name} data set, got None")
    return _load_cached(_data_key({**data_cfg, "dataset": name}))


class _LabelledImages(Dataset):
    """Images (uint8, converted per item) with their base-class row as target."""

    def __init__(self, data: FewShotImages, idx: np.ndarray, base_row: dict[int, int]) -> None:
        self.data, self.idx = data, idx
        self.targets = torch.tensor([base_row[int(c)] for c in data.labels[idx]], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img = torch.from_numpy(np.ascontiguousarray(self.data.images[self.idx[i]]))
        return img.float().div_(255.0), self.targets[i]


def _base_rows(data: FewShotImages) -> dict[int, int]:
    return {int(c): j for j, c in enumerate(data.class_split["base"])}


# ----------------------------------------------------------------------------- stage 1


def _stage1_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    data = load_fewshot_data(config["data"])
    rows = _base_rows(data)
    return {
        "train": _LabelledImages(data, data.indices("base", "train"), rows),
        "val": _LabelledImages(data, data.indices("base", "val"), rows),
    }


def _stage1_model(config: Mapping[str, Any]) -> nn.Module:
    data = load_fewshot_data(config["data"])
    m = config["model"]
    channels = int(data.images.shape[1])
    backbone: ConvNet | ResNet12
    if m["name"] == "resnet12":
        backbone = ResNet12(
            ResNet12Config(in_channels=channels, widths=tuple(m.get("widths", (32, 64, 128, 256))))
        )
    elif m["name"] == "convnet":
        backbone = ConvNet(
            ConvNetConfig(in_channels=channels, widths=tuple(m.get("widths", (32, 64, 64, 128))))
        )
    else:
        raise ValueError(f"model.name: expected one of {', '.join(BACKBONES)}, got {m['name']!r}")
    head = CosineClassifier(
        len(data.class_split["base"]), backbone.out_dim, scale=float(m.get("scale", 10.0))
    )
    return FewShotNetwork(backbone, head)


def _stage1_compute(model: nn.Module, batch: Any) -> StepOutput:
    x, y = batch
    scores = model(x)
    loss = F.cross_entropy(scores, y)
    correct = (scores.argmax(-1) == y).sum()
    return StepOutput(loss=loss, metrics={"acc": (correct, torch.tensor(len(y)))})


_GLYPHS_QUICK = {
    "seed": 0,
    "image_size": 32,
    "samples_per_class": 100,
    "base_val": 5,
    "base_test": 15,
    "base_holdout": 20,
}

# Noto scripts (tasks.noto): 2,407 classes from 41 scripts at the default settings. Quick: 20
# renderings per character (stage 2 then uses 5 novel queries per class, like Omniglot, and the
# base classes' train images); medium: 40, with 20 held out of stage 1 for stage-2 episodes.
_NOTO_QUICK = {
    "seed": 0,
    "image_size": 32,
    "samples_per_class": 20,
    "base_val": 2,
    "base_test": 4,
    "base_holdout": 0,
}
_NOTO_MEDIUM = {**_NOTO_QUICK, "samples_per_class": 40, "base_holdout": 20}

STAGE1_PRESETS = {
    "quick": {
        "model": {"name": "convnet", "widths": [32, 64, 64, 128], "scale": 10.0},
        "data": {
            "dataset": "glyphs",
            "root": None,
            "image_size": None,
            "glyphs": _GLYPHS_QUICK,
            "noto": _NOTO_QUICK,
        },
        "optim": {"name": "adam", "lr": 2e-3, "weight_decay": 5e-4, "lr_decay": 0.85},
        "trainer": {"max_epochs": 12, "batch_size": 64, "eval_batch_size": 256},
        "per_model": {"resnet12": {"model": {"widths": [32, 64, 128, 256]}}},
    },
    # The verdict preset: glyphs with the quick ConvNet stage 1; Noto with a ResNet-12 stage 1
    # (6 epochs of 1,490 base classes x 14 images: about 15 min of CPU on one thread).
    "medium": {
        "model": {"name": "convnet", "widths": [32, 64, 64, 128], "scale": 10.0},
        "data": {
            "dataset": "glyphs",
            "root": None,
            "image_size": None,
            "glyphs": _GLYPHS_QUICK,
            "noto": _NOTO_MEDIUM,
        },
        "optim": {"name": "adam", "lr": 2e-3, "weight_decay": 5e-4, "lr_decay": 0.85},
        "trainer": {"max_epochs": 12, "batch_size": 64, "eval_batch_size": 256},
        "per_model": {
            "resnet12": {
                "model": {"widths": [32, 64, 128, 256]},
                "optim": {"lr_decay": 0.7},
                "trainer": {"max_epochs": 6},
            }
        },
    },
    "paper": {
        "model": {"name": "convnet", "widths": [64, 64, 128, 256], "scale": 10.0},
        "data": {
            "dataset": "glyphs",
            "root": None,
            "image_size": None,
            "glyphs": {**_GLYPHS_QUICK, "samples_per_class": 160, "base_test": 30},
            "noto": _NOTO_MEDIUM,
        },
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4, "lr_decay": 0.92},
        "trainer": {"max_epochs": 40, "batch_size": 128, "eval_batch_size": 256},
        "per_model": {"resnet12": {"model": {"widths": [64, 160, 320, 640]}}},
    },
}

# ----------------------------------------------------------------------------- stage 2


def _read_stage1_config(run_dir: Path) -> dict[str, Any]:
    from ..training.rundir import read_config

    return read_config(run_dir)


def load_stage1(run_dir: str | os.PathLike[str]) -> tuple[FewShotNetwork, dict[str, Any]]:
    """The trained stage-1 network (selected epoch, eval mode) and its config."""
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    if not ckpt.is_file():
        ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"data.stage1_run: expected a finished {STAGE1} run folder with checkpoints/best.ckpt, "
            f"got {run_dir}"
        )
    config = _read_stage1_config(run_dir)
    if config.get("task") != STAGE1:
        raise ValueError(
            f"data.stage1_run: expected a {STAGE1} run, got task {config.get('task')!r}"
        )
    net = _stage1_model(config)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    net.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return net.eval(), config


@torch.no_grad()
def stage1_features(run_dir: str | os.PathLike[str], batch_size: int = 512) -> Tensor:
    """Frozen-backbone features `[n, d]` of every image, cached as ``features.pt`` in the run."""
    run_dir = Path(run_dir)
    cache = run_dir / "features.pt"
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    stamp = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    if cache.is_file():
        blob = torch.load(cache, map_location="cpu", weights_only=True)
        if blob.get("stamp") == stamp:
            return blob["features"]
    net, config = load_stage1(run_dir)
    data = load_fewshot_data(config["data"])
    feats = torch.cat(
        [
            net.features(data.float_images(np.arange(i, min(i + batch_size, len(data.labels)))))
            for i in range(0, len(data.labels), batch_size)
        ]
    )
    tmp = cache.with_suffix(".tmp")
    torch.save({"features": feats, "stamp": stamp}, tmp)
    os.replace(tmp, cache)
    return feats


@lru_cache(maxsize=4)
def _features_cached(run_dir: str, stamp: int | None) -> Tensor:
    return stage1_features(run_dir)


def _stage1_of(config: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    run = config["data"].get("stage1_run")
    if not run:
        raise ValueError(
            f"data.stage1_run: expected the run folder of a finished {STAGE1} run "
            f"(nam train {STAGE1} ...), got {run!r}"
        )
    run = Path(run)
    return run, _read_stage1_config(run)


def _features_for(config: Mapping[str, Any]) -> tuple[Tensor, FewShotImages]:
    run, s1 = _stage1_of(config)
    ckpt = run / "checkpoints" / "best.ckpt"
    stamp = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    return _features_cached(str(run.resolve()), stamp), load_fewshot_data(s1["data"])


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


def _stage2_datasets(config: Mapping[str, Any], seed: int) -> dict[str, Dataset]:
    feats, data = _features_for(config)
    d = config["data"]
    return {
        "train": EpisodeDataset(
            episode_sampler(data, d, "train", seed, d["train_episodes"]), feats
        ),
        "val": EpisodeDataset(
            episode_sampler(data, d, "val", int(d["val_seed"]), d["val_episodes"]), feats
        ),
    }


def build_stage2_head(config: Mapping[str, Any]) -> CosineClassifier | NAMFewShotClassifier:
    """The head named by ``model.name``, initialised from the stage-1 base weights."""
    run, _s1 = _stage1_of(config)
    net, _ = load_stage1(run)
    m = config["model"]
    num_base, dim = net.head.num_base, net.head.dim
    name = m["name"]
    if name in ("cosine", "cosine_att"):
        head: CosineClassifier | NAMFewShotClassifier = CosineClassifier(
            num_base, dim, generator="att" if name == "cosine_att" else "avg"
        )
    elif name in ("nam", "nam_tied"):
        head = NAMFewShotClassifier(
            num_base,
            dim,
            gate_hidden=int(m.get("gate_hidden", 64)),
            write_mode=str(m.get("write_mode", "batched")),
            value_scale=str(m.get("value_scale", "mean")),
            p_w_init=float(m.get("p_w_init", 0.9)),
            p_e_init=float(m.get("p_e_init", 0.2)),
            gate="tied" if name == "nam_tied" else "separate",
            p_init=float(m.get("p_init", 0.5)),
            erase=str(m.get("erase", "episode")),
        )
    else:
        raise ValueError(f"model.name: expected one of {', '.join(HEADS)}, got {name!r}")
    with torch.no_grad():
        head.weight_base.copy_(net.head.weight_base)
        head.gamma.copy_(net.head.gamma)
        head.beta.copy_(net.head.beta)
        if name == "cosine_att":
            head.att_keys.copy_(net.head.weight_base)
    return head


def episode_metrics(
    scores: Tensor, labels: Tensor, is_novel: Tensor, n_base: int
) -> dict[str, Tensor]:
    """Per-episode counts from joint scores `[Q, B' + N]`, joint labels `[Q]`, novel mask `[Q]`.

    Returns ``(numerator, denominator)`` pairs as 0-dim tensors under ``novel_acc``, ``base_acc``,
    ``joint_acc``, ``fp_base_to_novel`` and ``fp_novel_to_base``, plus the confusion counts
    ``conf_{base,novel}_{right,wrong,cross}`` (cross = predicted on the other side).
    """
    pred = scores.argmax(-1)
    nov, bas = is_novel, ~is_novel
    pred_novel = pred >= n_base
    novel_pred = scores[:, n_base:].argmax(-1) + n_base  # N-way among novel columns
    base_pred = scores[:, :n_base].argmax(-1) if n_base else pred
    one = torch.ones((), dtype=torch.long)
    out = {
        "novel_acc": ((novel_pred == labels)[nov].sum(), nov.sum()),
        "base_acc": ((base_pred == labels)[bas].sum(), bas.sum()),
        "joint_acc": ((pred == labels).sum(), one * len(labels)),
        "fp_base_to_novel": (pred_novel[bas].sum(), bas.sum()),
        "fp_novel_to_base": ((~pred_novel)[nov].sum(), nov.sum()),
    }
    right = pred == labels
    out["conf_base_right"] = (right[bas].sum(), bas.sum())
    out["conf_base_wrong"] = ((~right & ~pred_novel)[bas].sum(), bas.sum())
    out["conf_base_cross"] = out["fp_base_to_novel"]
    out["conf_novel_right"] = (right[nov].sum(), nov.sum())
    out["conf_novel_wrong"] = ((~right & pred_novel)[nov].sum(), nov.sum())
    out["conf_novel_cross"] = out["fp_novel_to_base"]
    return out


def _stage2_compute(model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
    # One episode (`[S, d]` support) or a batch of equal-sized episodes (`[E, S, d]`).
    process = (
        model.process_support_sets if batch["support"].dim() == 3 else model.process_support_set
    )
    process(
        batch["support"], batch["support_labels"], base_ids=batch["base_ids"], n_way=batch["n_way"]
    )
    scores = model(batch["query"])
    model.reset_episode()
    n_base = batch["base_ids"].shape[-1]
    scores, labels = scores.reshape(-1, scores.shape[-1]), batch["query_labels"].reshape(-1)
    loss = F.cross_entropy(scores, labels)
    m = episode_metrics(scores, labels, batch["is_novel"].reshape(-1), n_base)
    keep = ("novel_acc", "base_acc", "joint_acc", "fp_base_to_novel", "fp_novel_to_base")
    return StepOutput(loss=loss, metrics={k: m[k] for k in keep})


_EPISODES_QUICK = {
    "stage1_run": None,
    "n_way": 5,
    "k_shot": 1,
    "n_query_novel": 15,
    "n_query_base": 75,
    "train_episodes": 600,
    "val_episodes": 200,
    "val_seed": 17,
}

STAGE2_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "model": {
            "name": "nam",
            "gate_hidden": 64,
            "write_mode": "batched",
            "value_scale": "mean",
            "p_w_init": 0.9,
            "p_e_init": 0.2,
            "p_init": 0.5,
            "erase": "episode",
        },
        "data": _EPISODES_QUICK,
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4, "lr_decay": 0.8},
        "trainer": {
            "max_epochs": 4,
            "batch_size": 1,
            "eval_batch_size": 1,
            "log_every_n_steps": 100,
        },
    },
    "paper": {
        "model": {
            "name": "nam",
            "gate_hidden": 128,
            "write_mode": "batched",
            "value_scale": "mean",
            "p_w_init": 0.9,
            "p_e_init": 0.2,
            "p_init": 0.5,
            "erase": "episode",
        },
        "data": {**_EPISODES_QUICK, "train_episodes": 4000, "val_episodes": 1000},
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 5e-4, "lr_decay": 0.8},
        "trainer": {
            "max_epochs": 10,
            "batch_size": 1,
            "eval_batch_size": 1,
            "log_every_n_steps": 200,
        },
    },
}

STAGE2_PRESETS["medium"] = {
    **STAGE2_PRESETS["quick"],
    "data": {**_EPISODES_QUICK, "train_episodes": 1000, "val_episodes": 300},
    "trainer": {**STAGE2_PRESETS["quick"]["trainer"], "max_epochs": 5},
}

register_task(
    TaskSpec(
        name=STAGE1,
        family="fewshot",
        build_datasets=_stage1_datasets,
        build_model=_stage1_model,
        compute=_stage1_compute,
        models=BACKBONES,
        presets=STAGE1_PRESETS,
        selection_metric="val/acc",
        description="few-shot stage 1: ConvNet or ResNet-12 + cosine classifier on the base classes",
    )
)
register_task(
    TaskSpec(
        name=STAGE2,
        family="fewshot",
        build_datasets=_stage2_datasets,
        build_model=build_stage2_head,
        compute=_stage2_compute,
        models=HEADS,
        presets=STAGE2_PRESETS,
        collate_fn=collate_episode,
        selection_metric="val/joint_acc",
        description="few-shot stage 2: frozen backbone, head trained on fake-novel episodes",
    )
)

# ----------------------------------------------------------------------------- evaluation

SUMMARY_METRICS = (
    "novel_acc",
    "base_acc",
    "joint_acc",
    "fp_base_to_novel",
    "fp_novel_to_base",
    "conf_base_right",
    "conf_base_wrong",
    "conf_base_cross",
    "conf_novel_right",
    "conf_novel_wrong",
    "conf_novel_cross",
)


def _ci95(x: np.ndarray) -> float:
    return float(1.96 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def summarize(per_episode: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean": %, "ci95": %}}`` from per-episode rates (fractions)."""
    return {
        k: {"mean": 100.0 * float(np.mean(v)), "ci95": 100.0 * _ci95(np.asarray(v))}
        for k, v in per_episode.items()
    }


#: Offsets added to the novel columns (in cosine units, i.e. scores / gamma) to trace each head's
#: trade-off between the two false-positive rates independently of its calibration.
OFFSETS = np.round(np.linspace(-0.3, 0.3, 61), 4)


@torch.no_grad()
def evaluate_heads(
    heads: Mapping[str, nn.Module],
    features: Tensor,
    sampler: GeneralizedEpisodeSampler,
    offsets: np.ndarray = OFFSETS,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Every head on the same episodes.

    Returns:
        ``per_episode``: ``{head: {metric: [E]}}`` rates (fractions) of :data:`SUMMARY_METRICS`;
        ``curves``: ``{head: [len(offsets), 3]}`` mean ``(joint acc, FP b->n, FP n->b)`` in % when
        ``offset`` is added to every novel score (divided by ``gamma``).
    """
    out: dict[str, dict[str, list[float]]] = {h: {k: [] for k in SUMMARY_METRICS} for h in heads}
    curves = {h: np.zeros((len(offsets), 3)) for h in heads}
    delta = torch.as_tensor(np.asarray(offsets), dtype=features.dtype).unsqueeze(1)  # [O, 1]
    ds = EpisodeDataset(sampler, features)
    for i in range(len(ds)):
        ep = ds[i]
        labels, nov, nb = ep["query_labels"], ep["is_novel"], len(ep["base_ids"])
        for name, head in heads.items():
            head.eval()
            head.process_support_set(
                ep["support"], ep["support_labels"], base_ids=ep["base_ids"], n_way=ep["n_way"]
            )
            scores = head(ep["query"])
            head.reset_episode()
            m = episode_metrics(scores, labels, nov, nb)
            for k in SUMMARY_METRICS:
                num, den = m[k]
                out[name][k].append(float(num) / float(den) if int(den) else float("nan"))
            # Offset sweep: only the side (base / novel) of the prediction depends on the offset.
            s = scores / head.gamma
            b_max, b_arg = s[:, :nb].max(-1)
            n_max, n_arg = s[:, nb:].max(-1)
            pred_novel = n_max.unsqueeze(0) + delta > b_max.unsqueeze(0)  # [O, Q]
            right = torch.where(pred_novel, (n_arg + nb) == labels, b_arg == labels)
            curves[name] += np.stack(
                [
                    right.double().mean(1).numpy(),
                    pred_novel[:, ~nov].double().mean(1).numpy(),
                    (~pred_novel[:, nov]).double().mean(1).numpy(),
                ],
                1,
            )
    per_episode = {h: {k: np.asarray(v) for k, v in ms.items()} for h, ms in out.items()}
    return per_episode, {h: 100.0 * c / max(len(ds), 1) for h, c in curves.items()}


def equal_error_point(curve: np.ndarray, offsets: np.ndarray = OFFSETS) -> dict[str, float]:
    """Where FP b->n equals FP n->b on a curve from :func:`evaluate_heads` (linear interpolation).

    Returns ``{"offset", "fp", "joint_acc", "best_joint_acc", "best_offset"}`` (NaN when the two
    rates never cross inside the offset range).
    """
    diff = curve[:, 1] - curve[:, 2]  # increases with the offset
    best = int(np.argmax(curve[:, 0]))
    res = {
        "offset": float("nan"),
        "fp": float("nan"),
        "joint_acc": float("nan"),
        "best_joint_acc": float(curve[best, 0]),
        "best_offset": float(offsets[best]),
    }
    for j in range(len(diff) - 1):
        if diff[j] <= 0 <= diff[j + 1]:
            t = 0.0 if diff[j + 1] == diff[j] else -diff[j] / (diff[j + 1] - diff[j])
            lerp = curve[j] + t * (curve[j + 1] - curve[j])
            res.update(
                offset=float(offsets[j] + t * (offsets[j + 1] - offsets[j])),
                fp=float(lerp[1]),
                joint_acc=float(lerp[0]),
            )
            break
    return res


def erase_ablation(
    head: NAMFewShotClassifier, p_e: float, write_mode: str = "sequential"
) -> NAMFewShotClassifier:
    """A copy of a trained NAM head whose erase gate is the constant ``p_e`` (no retraining).

    The write gate stays the trained one (for a tied head: its one gate, now used for writing
    only). ``p_e = 0`` switches the erase off. Sequential writes by default: with K similar keys
    the batched sum erases up to ``K * p_e`` of a direction (overshooting past zero), whereas
    repeated ``nam_write`` never does.
    """
    if not 0.0 <= p_e < 1.0:
        raise ValueError(f"p_e: expected a probability in [0, 1), got {p_e}")
    ablated = copy.deepcopy(head)
    ablated.write_mode = write_mode
    if ablated.gate_mode == "tied":
        ablated.gate_w = ablated.gate
        del ablated.gate
        ablated.gate_mode = "separate"
    ablated.gate_e = ConstantGate(p_e)
    return ablated


def _load_head(run_dir: Path) -> nn.Module:
    from ..training.rundir import read_config

    config = read_config(run_dir)
    head = build_stage2_head(config)
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    head.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return head.eval()


# ----------------------------------------------------------------------------- reproduce


def _train(jobs: list, out_dir: Path) -> list[dict]:
    """Train the jobs with the shared runner (finished runs are skipped, others resume)."""
    from .runner import run_grid

    return run_grid(jobs, out_dir, log=lambda msg: print(f"[fewshot] {msg}", flush=True))


def _dataset_overrides(name: str, root: str | None, preset: str) -> tuple[list[str], list[str]]:
    """(stage-1, stage-2) overrides that point the presets at a data set other than the glyphs."""
    if name == "glyphs":
        return [], []
    if name == "noto":
        # Quick renders 20 images per character: 5 shots + 5 queries, like Omniglot.
        return ["data.dataset=noto"], (["data.n_query_novel=5"] if preset == "quick" else [])
    if name == "miniimagenet":  # 32 px keeps the quick preset CPU-sized; paper: 84 px
        size = 32 if preset == "quick" else 84
        return [f"data.dataset={name}", f"data.root={root}", f"data.image_size={size}"], []
    # Omniglot has 20 images per character: 5 shots + 5 queries fit in every class's pools.
    return (
        [f"data.dataset={name}", f"data.root={root}", "data.image_size=28"],
        ["data.n_query_novel=5"],
    )


#: Per preset: the heads trained, the fixed-erase ablations and the stage-1 backbone per data set.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"heads": ("cosine", "nam"), "ablate_erase": (0.5,), "test_episodes": 1000},
    "medium": {
        "heads": HEADS,
        "ablate_erase": (0.0, 0.5),
        "test_episodes": 1000,
        "backbone": {"noto": "resnet12"},
    },
    "paper": {
        "heads": HEADS,
        "ablate_erase": (0.0, 0.5),
        "test_episodes": 2000,
        "backbone": {"noto": "resnet12", "miniimagenet": "resnet12"},
    },
}


def reproduce_fewshot(
    preset: str = "quick",
    out_dir: str | os.PathLike[str] = "nam_runs/reproduce/fewshot",
    shots: tuple[int, ...] = (1, 5),
    heads: tuple[str, ...] | None = None,
    test_episodes: int | None = None,
    miniimagenet: str | None = None,
    omniglot: str | None = None,
    overrides: tuple[str, ...] = (),
    ablate_erase: tuple[float, ...] | None = None,
    datasets: tuple[str, ...] | None = None,
    stage1_runs: Mapping[str, str | os.PathLike[str]] | None = None,
    **_: Any,
) -> Path:
    """Run the few-shot protocol and write ``<out_dir>/report.md`` (plus JSON and PNG plots).

    Data sets: the glyphs always; mini-ImageNet / Omniglot when their folders are given (or set in
    ``$NAM_MINIIMAGENET_DIR`` / ``$NAM_OMNIGLOT_DIR``); ``datasets`` restricts the run to some of
    :data:`DATASETS` (the Noto scripts run only when named here). Finished runs are reused and
    interrupted ones resume, so re-running after an interruption continues where it stopped.
    ``heads``, ``ablate_erase``, ``test_episodes`` and the stage-1 backbone default per preset
    (:data:`PRESET_DEFAULTS`). For each ``p_e`` in ``ablate_erase`` every trained NAM head is also
    evaluated with its erase gate fixed at ``p_e`` (an ablation of the erase, no retraining), as
    head ``<head>_pe<p_e>``; every head is compared with the cosine head on the same episodes.
    ``stage1_runs`` (``{data set: run folder}``) reuses an existing stage-1 run (finished or
    stopped: its selected checkpoint) instead of training one; the report states its epochs.
    """
    from ..training import ConfigError

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    defaults = PRESET_DEFAULTS.get(preset, PRESET_DEFAULTS["paper"])
    heads = tuple(defaults["heads"] if heads is None else heads)
    ablate_erase = tuple(defaults["ablate_erase"] if ablate_erase is None else ablate_erase)
    if test_episodes is None:
        test_episodes = int(defaults["test_episodes"])
    for h in heads:
        if h not in HEADS:
            raise ConfigError(f"heads: expected names from {HEADS}, got {h!r}")
    roots = {
        "glyphs": None,
        "miniimagenet": miniimagenet or os.environ.get("NAM_MINIIMAGENET_DIR"),
        "omniglot": omniglot or os.environ.get("NAM_OMNIGLOT_DIR"),
    }
    results: dict[str, Any] = {"preset": preset, "datasets": {}}
    if datasets is not None:
        unknown = [d for d in datasets if d not in DATASETS]
        if unknown:
            raise ConfigError(f"datasets: expected names from {DATASETS}, got {unknown}")
        missing = [d for d in datasets if d not in RENDERED and not roots[d]]
        if missing:
            raise ConfigError(
                f"datasets: {missing} requested but no folder given (pass it or set "
                "$NAM_MINIIMAGENET_DIR / $NAM_OMNIGLOT_DIR)"
            )
        roots = {d: roots.get(d) for d in datasets}
    shots = tuple(shots)
    if not shots or any(not isinstance(k, int) or k < 1 for k in shots):
        raise ConfigError(f"shots: expected positive ints, got {shots!r}")
    if "noto" in roots:
        from ..tasks.noto import find_noto_fonts

        find_noto_fonts()  # a missing font package fails here, before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    for ds_name, root in roots.items():
        if ds_name not in RENDERED and not root:
            continue
        ds_over, ds_over2 = _dataset_overrides(ds_name, root, preset)
        runs = out_dir / "runs" / ds_name
        backbone = defaults.get("backbone", {}).get(ds_name, "convnet")
        if stage1_runs and ds_name in stage1_runs:
            s1 = _given_stage1(stage1_runs[ds_name], ds_name)
            backbone = str(s1["model"])
        else:
            (s1,) = _train(
                [Job(STAGE1, backbone, preset, (*ds_over, *overrides_for(STAGE1, overrides)))],
                runs / "stage1",
            )
        s1_dir = Path(s1["run_dir"]).resolve()
        feats = stage1_features(s1_dir)
        ds_res: dict[str, Any] = {
            "stage1": {
                "run_dir": str(s1_dir),
                "backbone": backbone,
                "val_acc": s1["splits"].get("val", {}).get("acc"),
                "selected_epoch": s1.get("selected_epoch"),
                "epochs": s1.get("epochs_completed"),
                "max_epochs": s1.get("max_epochs"),
                "status": s1.get("status"),
                "wall_clock_s": s1.get("wall_clock_s"),
            },
            "settings": {},
        }
        data = load_fewshot_data(_read_stage1_config(s1_dir)["data"])
        ds_res["classes"] = {s: len(v) for s, v in data.class_split.items()}
        jobs = [
            Job(
                STAGE2,
                h,
                preset,
                (
                    f"data.stage1_run={s1_dir}",
                    f"data.k_shot={k}",
                    *ds_over2,
                    *overrides_for(STAGE2, overrides),
                ),
                name=f"{h}_{k}shot",
            )
            for k in shots
            for h in heads
        ]
        s2 = {
            (j.model, j.name): r for j, r in zip(jobs, _train(jobs, runs / "stage2"), strict=True)
        }
        for k in shots:
            run_dirs = {h: Path(s2[(h, f"{h}_{k}shot")]["run_dir"]) for h in heads}
            cfg = _read_stage1_config(run_dirs[heads[0]])
            sampler = episode_sampler(data, cfg["data"], "test", TEST_SEED, test_episodes)
            trained = {h: _load_head(run_dirs[h]) for h in heads}
            for h in [h for h in heads if h.startswith("nam")]:
                for p_e in ablate_erase:
                    trained[f"{h}_pe{p_e:g}"] = erase_ablation(trained[h], p_e)
            print(f"[fewshot] {ds_name}: evaluating {k}-shot on {test_episodes} test episodes")
            per_ep, curves = evaluate_heads(trained, feats, sampler)
            setting: dict[str, Any] = {
                "heads": {
                    h: {
                        "summary": summarize(per_ep[h]),
                        "run_dir": str(run_dirs[_trained_from(h)]),
                        "tradeoff": equal_error_point(curves[h]),
                        "curve": np.round(curves[h], 3).tolist(),
                    }
                    for h in trained
                },
                "offsets": OFFSETS.tolist(),
            }
            keys = F.normalize(feats[torch.from_numpy(data.indices("novel"))], dim=-1)
            gates = {}
            for h in (h for h in heads if h.startswith("nam")):
                with torch.no_grad():
                    p_w, p_e = trained[h].gates(keys)
                gates[h] = {
                    "p_w": [float(p_w.mean()), float(p_w.std())],
                    "p_e": [float(p_e.mean()), float(p_e.std())],
                }
            setting["gates_on_novel"] = gates
            if "nam" in gates:
                setting["nam_gates_on_novel"] = gates["nam"]
            if "cosine" in heads:
                setting["minus_cosine"] = {
                    h: summarize(
                        {m: per_ep[h][m] - per_ep["cosine"][m] for m in SUMMARY_METRICS[:5]}
                    )
                    for h in trained
                    if h != "cosine"
                }
                if "nam" in trained:
                    setting["nam_minus_cosine"] = setting["minus_cosine"]["nam"]
            (runs / f"test_{k}shot.json").write_text(json.dumps(setting, indent=2))
            ds_res["settings"][f"{k}shot"] = setting
        results["datasets"][ds_name] = ds_res
    results["wall_clock_s"] = time.perf_counter() - t0
    results["test_episodes"] = test_episodes
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    report = write_report(results, out_dir)
    print(f"[fewshot] report: {report}")
    return report


def _given_stage1(run_dir: str | os.PathLike[str], ds_name: str) -> dict[str, Any]:
    """Results of a user-given stage-1 run folder (finished or stopped), checked for the data set."""
    from ..training import ConfigError
    from ..training.rundir import read_results

    run_dir = Path(run_dir)
    res = read_results(run_dir)
    if res is None or not (run_dir / "checkpoints" / "best.ckpt").is_file():
        raise ConfigError(
            f"stage1_runs: expected a {STAGE1} run folder with results.json and "
            f"checkpoints/best.ckpt for {ds_name}, got {run_dir}"
        )
    dataset = _read_stage1_config(run_dir)["data"].get("dataset")
    if res.get("task") != STAGE1 or dataset != ds_name:
        raise ConfigError(
            f"stage1_runs: {run_dir} is a {res.get('task')} run on {dataset!r}, expected a "
            f"{STAGE1} run on {ds_name!r}"
        )
    return {**res, "run_dir": str(run_dir)}


def _trained_from(head: str) -> str:
    """The trained head an evaluated head comes from (``nam_tied_pe0.5`` -> ``nam_tied``)."""
    return head.split("_pe", 1)[0]


def overrides_for(task: str, overrides: tuple[str, ...]) -> list[str]:
    """``stage1:key=value`` / ``stage2:key=value`` go to one stage; plain ``key=value`` to both."""
    out = []
    for o in overrides:
        if o.startswith("stage1:"):
            if task == STAGE1:
                out.append(o[len("stage1:") :])
        elif o.startswith("stage2:"):
            if task == STAGE2:
                out.append(o[len("stage2:") :])
        else:
            out.append(o)
    return out


def _fmt(s: Mapping[str, float]) -> str:
    return f"{s['mean']:.2f} ± {s['ci95']:.2f}"


def _head_label(h: str) -> str:
    base = _trained_from(h)
    if base != h:
        return f"{base}, p_e fixed {h[len(base) + 3 :]}, sequential (ablation)"
    return h


_MAIN = ("novel_acc", "base_acc", "joint_acc", "fp_base_to_novel", "fp_novel_to_base")


def write_report(results: Mapping[str, Any], out_dir: Path) -> Path:
    """Markdown report with one table per data set, the NAM-vs-cosine verdict and plots."""
    lines = [
        "# Few-shot learning: generalised 5-way K-shot, cosine vs NAM head",
        "",
        f"Preset `{results['preset']}`; {results['test_episodes']} test episodes per setting "
        "(the same episodes for every head); ± is the 95% confidence interval over episodes. "
        "Novel = N-way accuracy on novel queries; Base = accuracy among base classes on base "
        "queries; Joint = accuracy over all classes on all queries; FP b→n = base queries "
        "predicted as a novel class; FP n→b = novel queries predicted as a base class. All in %.",
        "",
    ]
    for ds_name, ds in results["datasets"].items():
        s1 = ds["stage1"]
        lines += [
            f"## {ds_name}",
            "",
            f"Classes: {ds['classes']}. Stage 1 ({s1.get('backbone', 'convnet')} + cosine "
            "classifier): base val accuracy "
            f"{100 * (s1['val_acc'] or float('nan')):.2f}% at epoch {s1['selected_epoch']} "
            f"(0-based) of {s1['epochs']} ({(s1['wall_clock_s'] or 0):.0f} s of training)"
            + (
                f"; **stopped** after {s1['epochs']} of {s1.get('max_epochs')} planned epochs."
                if s1.get("status") not in (None, "finished")
                else "."
            ),
            "",
            "| Shots | Head | Novel | Base | Joint | FP b→n | FP n→b |",
            "|---|---|---|---|---|---|---|",
        ]
        for setting, res in ds["settings"].items():
            for h, r in res["heads"].items():
                cells = " | ".join(_fmt(r["summary"][m]) for m in _MAIN)
                lines.append(f"| {setting} | {_head_label(h)} | {cells} |")
        lines += ["", "Confusion summary (% of base / novel queries, joint prediction):", ""]
        lines += [
            "| Shots | Head | base→right | base→other base | base→novel | novel→right | "
            "novel→other novel | novel→base |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for setting, res in ds["settings"].items():
            for h, r in res["heads"].items():
                s = r["summary"]
                cells = " | ".join(
                    f"{s[f'conf_{g}_{c}']['mean']:.1f}"
                    for g in ("base", "novel")
                    for c in ("right", "wrong", "cross")
                )
                lines.append(f"| {setting} | {_head_label(h)} | {cells} |")
        lines += ["", "Paired difference head − cosine (same episodes), mean ± 95% CI:", ""]
        lines += [
            "| Shots | Head | Novel | Base | Joint | FP b→n | FP n→b | "
            "Lowers both FPs at equal or better joint? |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for setting, res in ds["settings"].items():
            diffs = res.get("minus_cosine") or (
                {"nam": res["nam_minus_cosine"]} if "nam_minus_cosine" in res else {}
            )
            for h, d in diffs.items():
                cells = " | ".join(_fmt(d[m]) for m in _MAIN)
                lines.append(f"| {setting} | {_head_label(h)} | {cells} | {verdict(d)} |")
        lines.append("")
        for setting, res in ds["settings"].items():
            gates = res.get("gates_on_novel") or (
                {"nam": res["nam_gates_on_novel"]} if "nam_gates_on_novel" in res else {}
            )
            for h, g in gates.items():
                lines.append(
                    f"- {setting}: learned gates of `{h}` on the novel-split features: "
                    f"p_w = {g['p_w'][0]:.3f} (sd {g['p_w'][1]:.3f}), "
                    f"p_e = {g['p_e'][0]:.3f} (sd {g['p_e'][1]:.3f})."
                )
        lines += [
            "",
            "Calibration-free view: adding an offset to every novel score (in cosine units) moves a "
            "head along a trade-off between the two FP rates. The equal-error point is where "
            "FP b→n = FP n→b; a head that separates base from novel better has a lower equal-error "
            "FP (means over the test episodes; no CI).",
            "",
            "| Shots | Head | Equal-error FP | at offset | Joint there | Best joint (offset) |",
            "|---|---|---|---|---|---|",
        ]
        for setting, res in ds["settings"].items():
            for h, r in res["heads"].items():
                t = r["tradeoff"]
                lines.append(
                    f"| {setting} | {_head_label(h)} | {t['fp']:.2f} | {t['offset']:+.3f} | "
                    f"{t['joint_acc']:.2f} | {t['best_joint_acc']:.2f} ({t['best_offset']:+.3f}) |"
                )
        bars = plot_setting(ds, out_dir / f"{ds_name}.png", ds_name)
        curve = plot_tradeoff(ds, out_dir / f"{ds_name}_tradeoff.png", ds_name)
        lines += ["", f"![{ds_name}]({bars.name})", "", f"![{ds_name} trade-off]({curve.name})", ""]
    lines += [
        "## Reference (paper §6)",
        "",
        "Gidaris & Komodakis (2018) cosine classifier + attention weight generator, ResNet "
        "backbone, mini-ImageNet (a different data set and backbone; listed for scale only):",
        "",
        "| Shots | Novel | Base | Joint |",
        "|---|---|---|---|",
    ]
    for k, ref in PAPER_REFERENCE.items():
        lines.append(f"| {k}shot | {ref['novel_acc']} | {ref['base_acc']} | {ref['joint_acc']} |")
    lines += ["", f"Total wall-clock: {results['wall_clock_s']:.0f} s.", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def verdict(diff: Mapping[str, Mapping[str, float]]) -> str:
    """Whether a head lowers both FP rates at equal or better joint accuracy than cosine (CI-aware)."""

    def lower(m: str) -> bool:  # significantly lower
        return diff[m]["mean"] + diff[m]["ci95"] < 0

    joint = diff["joint_acc"]
    joint_ok = joint["mean"] + joint["ci95"] >= 0  # not significantly worse
    both = lower("fp_base_to_novel") and lower("fp_novel_to_base")
    if both and joint_ok:
        return "yes: both FP rates lower, joint not worse"
    parts = []
    for m, label in (("fp_base_to_novel", "FP b→n"), ("fp_novel_to_base", "FP n→b")):
        if lower(m):
            parts.append(f"{label} lower")
        elif diff[m]["mean"] - diff[m]["ci95"] > 0:
            parts.append(f"{label} higher")
        else:
            parts.append(f"{label} n.s.")
    parts.append("joint not worse" if joint_ok else "joint worse")
    return "no: " + ", ".join(parts)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_setting(ds: Mapping[str, Any], path: Path, title: str) -> Path:
    """Bar chart of every metric with 95% CI error bars, one panel per shot setting."""
    plt = _pyplot()
    labels = ("Novel", "Base", "Joint", "FP b→n", "FP n→b")
    settings = list(ds["settings"])
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        res = ds["settings"][setting]["heads"]
        width = 0.8 / max(len(res), 1)
        for j, (h, r) in enumerate(res.items()):
            s = r["summary"]
            x = np.arange(len(_MAIN)) + j * width
            ax.bar(
                x,
                [s[m]["mean"] for m in _MAIN],
                width,
                yerr=[s[m]["ci95"] for m in _MAIN],
                capsize=3,
                label=_head_label(h),
            )
        ax.set_xticks(np.arange(len(_MAIN)) + width * (len(res) - 1) / 2, labels)
        ax.set_ylabel("%")
        ax.set_title(f"{title}: 5-way {setting}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_tradeoff(ds: Mapping[str, Any], path: Path, title: str) -> Path:
    """FP n->b against FP b->n as the novel-score offset varies; dots mark offset 0."""
    plt = _pyplot()
    settings = list(ds["settings"])
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4.5), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        res = ds["settings"][setting]
        zero = int(np.argmin(np.abs(np.asarray(res["offsets"]))))
        for h, r in res["heads"].items():
            c = np.asarray(r["curve"])
            (line,) = ax.plot(c[:, 1], c[:, 2], label=_head_label(h))
            ax.plot(c[zero, 1], c[zero, 2], "o", color=line.get_color())
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("FP base→novel (%)")
        ax.set_ylabel("FP novel→base (%)")
        ax.set_title(f"{title}: 5-way {setting} (lower-left is better)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


register_reproducer(
    "fewshot",
    reproduce_fewshot,
    description="generalised 5-way K-shot: cosine vs NAM heads (paper §6), false positives both ways",
    models={
        "cosine": "cosine classifier (Gidaris & Komodakis 2018), novel weights = mean features",
        "cosine_att": "cosine classifier + attention-based weight generator",
        "nam": "NAM head, separate write and erase gates",
        "nam_tied": "the authors' NAM head: one tied gate (p_w = p_e), batched erase",
    },
    presets={
        "quick": "cosine and NAM heads, ConvNet stage 1 (minutes on a CPU)",
        "medium": "every head + fixed-erase ablations, ResNet-12 on Noto, 1,000 test episodes",
        "paper": "larger sizes, 2,000 test episodes",
    },
    datasets={
        "glyphs": "rendered from matplotlib's DejaVu fonts (230 classes)",
        "noto": "rendered from the Noto fonts (fonts-noto-core): 2,407 classes, 41 scripts",
        "miniimagenet": "folder in $NAM_MINIIMAGENET_DIR (pickles, split files or image folders)",
        "omniglot": "folder in $NAM_OMNIGLOT_DIR (images_background/, images_evaluation/)",
    },
)
