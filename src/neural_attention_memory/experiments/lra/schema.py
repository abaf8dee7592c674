"""The config schema of the LRA family (see :mod:`...training.schema`)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from ...training.schema import RunConfig, num

__all__ = ["LRAConfig"]


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
