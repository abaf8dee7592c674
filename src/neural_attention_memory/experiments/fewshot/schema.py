"""Config schemas of the two few-shot stages (see :mod:`...training.schema`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ...models.few_shot import ERASES, WRITE_MODES
from ...training.config import ConfigError
from ...training.schema import RunConfig, num
from .data import DATASETS

__all__ = ["Stage1Config", "Stage2Config"]


@dataclasses.dataclass
class RenderedSet:
    """``data.glyphs`` / ``data.noto``: arguments of :func:`...tasks.glyphs.load_glyphs`."""

    seed: int = num(0, ge=0)
    image_size: int = num(32, ge=8)
    samples_per_class: int = num(20, ge=2)
    base_val: int = num(2, ge=0)
    base_test: int = num(4, ge=0)
    base_holdout: int = num(0, ge=0)
    scripts: list[str] | None = None
    split_fractions: list[float] | None = None
    split_seed: int | None = num(None, ge=0)
    min_faces: int | None = num(None, ge=1, doc="Noto only")

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        held = sum(values.get(k, 0) for k in ("base_val", "base_test", "base_holdout"))
        if "samples_per_class" in values and held >= values["samples_per_class"]:
            raise ConfigError(
                f"{where}: expected base_val + base_test + base_holdout < samples_per_class "
                f"(images left for stage 1), got {held} >= {values['samples_per_class']}"
            )


@dataclasses.dataclass
class Stage1Data:
    """``data``: which image set, and its settings."""

    dataset: Literal[DATASETS] = "glyphs"  # type: ignore[valid-type]
    root: str | None = None
    image_size: int | None = num(None, ge=8, doc="null: the reader's default")
    glyphs: RenderedSet = dataclasses.field(default_factory=RenderedSet)
    noto: RenderedSet = dataclasses.field(default_factory=RenderedSet)


@dataclasses.dataclass
class Stage1Model:
    """``model``: the backbone (``convnet``/``resnet12``), its block widths, the cosine scale."""

    name: str | None = None
    widths: list[int] = dataclasses.field(default_factory=lambda: [32, 64, 64, 128])
    scale: float = num(10.0, gt=0.0)

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        widths = values.get("widths", [1])
        if not widths or any(w < 1 for w in widths):
            raise ConfigError(
                f"{where}.widths: expected a non-empty list of ints >= 1, got {widths}"
            )
        if values.get("name") == "resnet12" and len(widths) != 4:
            raise ConfigError(f"{where}.widths: expected 4 widths for resnet12, got {widths}")


@dataclasses.dataclass
class Stage1Config(RunConfig):
    model: Stage1Model = dataclasses.field(default_factory=Stage1Model)
    data: Stage1Data = dataclasses.field(default_factory=Stage1Data)


@dataclasses.dataclass
class Stage2Data:
    """``data``: the stage-1 run and the episodes (N-way K-shot, queries per episode)."""

    stage1_run: str | None = None
    n_way: int = num(5, ge=1)
    k_shot: int = num(1, ge=1)
    n_query_novel: int = num(15, ge=0)
    n_query_base: int = num(75, ge=0)
    train_episodes: int = num(600, ge=1)
    val_episodes: int = num(200, ge=1)
    val_seed: int = num(17, ge=0)

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        if values.get("n_query_novel", 1) + values.get("n_query_base", 1) == 0:
            raise ConfigError(
                f"{where}.n_query_novel, {where}.n_query_base: expected at least one query, "
                "got 0 and 0"
            )


@dataclasses.dataclass
class Stage2Model:
    """``model``: the head; the NAM keys are read by ``nam`` and ``nam_tied`` only."""

    name: str | None = None
    gate_hidden: int = num(64, ge=1)
    write_mode: Literal[WRITE_MODES] = "batched"  # type: ignore[valid-type]
    value_scale: Literal["mean", "one"] = "mean"
    p_w_init: float = num(0.9, gt=0.0, lt=1.0)
    p_e_init: float = num(0.2, gt=0.0, lt=1.0)
    p_init: float = num(0.5, gt=0.0, lt=1.0)
    erase: Literal[ERASES] = "episode"  # type: ignore[valid-type]

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        if values.get("erase") == "batch_mean" and values.get("write_mode") != "batched":
            raise ConfigError(
                f"{where}.erase: 'batch_mean' averages the batched erase and needs "
                f"{where}.write_mode=batched, got {values.get('write_mode')!r}"
            )


@dataclasses.dataclass
class Stage2Config(RunConfig):
    model: Stage2Model = dataclasses.field(default_factory=Stage2Model)
    data: Stage2Data = dataclasses.field(default_factory=Stage2Data)
