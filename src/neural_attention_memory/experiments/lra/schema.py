"""The config schema of the LRA family (see :mod:`...training.schema`)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from ...training.config import ConfigError
from ...training.schema import RunConfig, addable, num

__all__ = ["LRAConfig"]


@dataclasses.dataclass
class ListOpsWarmup:
    """``data.warmup`` (ListOps only): the first ``epochs`` epochs train on ``train`` generated
    expressions of ``min_length``-``max_length`` tokens instead of the full-length training set;
    with ``bridge_epochs > 0`` the last ``bridge_epochs`` of them train on ``train`` expressions of
    ``bridge_min_length``-``bridge_max_length`` tokens instead (a step between the short and the
    full lengths). Validation and test never change. See :func:`.data.train_schedule`."""

    epochs: int = num(1, ge=1, doc="warm-up epochs (counted in trainer.max_epochs)")
    min_length: int = num(50, ge=1)
    max_length: int = num(300, ge=1)
    train: int = num(3_000, ge=1, doc="warm-up expressions (per stage)")
    bridge_epochs: int = num(
        0, ge=0, doc="the last bridge_epochs warm-up epochs train on bridge-length expressions"
    )
    bridge_min_length: int = num(150, ge=1)
    bridge_max_length: int = num(800, ge=1)

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        # keys left out take their defaults, so config.yaml records the whole warm-up
        for f in dataclasses.fields(ListOpsWarmup):
            values.setdefault(f.name, f.default)
        for lo, hi in (("min_length", "max_length"), ("bridge_min_length", "bridge_max_length")):
            if values[lo] > values[hi]:
                raise ConfigError(
                    f"{where}.{lo}: expected <= {where}.{hi} ({values[hi]}), got {values[lo]}"
                )
        if values["bridge_epochs"] >= values["epochs"]:
            raise ConfigError(
                f"{where}.bridge_epochs: expected < {where}.epochs ({values['epochs']}: at least "
                f"one epoch on the short expressions), got {values['bridge_epochs']}"
            )


@dataclasses.dataclass
class LRAData:
    """``data``: generated-set sizes (ListOps, Pathfinder) or user-file limits (Text, ...)."""

    min_length: int | None = num(None, ge=1)
    max_length: int | None = num(None, ge=1)
    max_depth: int | None = num(None, ge=1)
    max_args: int | None = num(None, ge=1)
    size: int | None = num(None, ge=8)
    difficulty: Literal["easy", "medium", "hard"] | None = None
    num_distractors: int | None = num(None, ge=0)
    train: int | None = num(None, ge=1, doc="null: all")
    val: int | None = num(None, ge=1, doc="null: all")
    test: int | None = num(None, ge=1, doc="null: all")
    val_count: int | None = num(None, ge=1)
    release: str | None = None
    cache_root: str | None = None
    root: str | None = None
    warmup: ListOpsWarmup | None = dataclasses.field(
        default=None, metadata=addable("null: every epoch trains on the full-length set")
    )


@dataclasses.dataclass
class LRAModel:
    """``model``: the encoder (other keys: :class:`...models.transformer.TransformerConfig`)."""

    OPEN: ClassVar[bool] = True
    name: str | None = None
    d_model: int = num(64, ge=1)
    num_layers: int = num(2, ge=1)
    num_heads: int = num(4, ge=1)
    d_ff: int = num(128, ge=1)
    positional: str = "learned"
    dropout: float = num(0.1, ge=0.0, lt=1.0)
    attn_dropout: float = num(0.0, ge=0.0, lt=1.0)
    pooling: Literal["cls", "mean"] = "cls"
    head_hidden: int | None = num(None, ge=1)


@dataclasses.dataclass
class LRAConfig(RunConfig):
    model: LRAModel = dataclasses.field(default_factory=LRAModel)
    data: LRAData = dataclasses.field(default_factory=LRAData)

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        data = values.get("data") or {}
        warmup = data.get("warmup")
        if warmup is None:
            return
        if values.get("task") != "lra-listops":
            raise ConfigError(
                f"data.warmup: a short-expression warm-up applies to lra-listops only, "
                f"got it for task {values.get('task')!r}"
            )
        # learned positions cover data.max_length tokens (+ CLS): warm-up expressions must fit
        top = data.get("max_length")
        keys = ["max_length"] + (["bridge_max_length"] if warmup["bridge_epochs"] else [])
        for key in keys:
            if top is not None and warmup[key] > top:
                raise ConfigError(
                    f"data.warmup.{key}: expected <= data.max_length ({top}), got {warmup[key]}"
                )
