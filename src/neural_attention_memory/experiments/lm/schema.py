"""The config schema of the byte-level LM family (see :mod:`...training.schema`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ...training.schema import RunConfig, num

__all__ = ["LMConfig"]


@dataclasses.dataclass
class LMModel:
    """``model``: ``name`` = the attention kind; the rest are :class:`...models.lm.NAMConfig`
    fields (checked again by ``NAMConfig``)."""

    name: Literal["nam", "nam-tied", "linear", "softmax"] | None = None
    hidden_size: int = num(128, ge=1)
    num_layers: int = num(2, ge=1)
    num_heads: int = num(4, ge=1)
    intermediate_size: int | None = num(None, ge=1, doc="null: 4 * hidden_size")
    gates: list[str] = dataclasses.field(default_factory=lambda: ["write", "erase", "read"])
    chunk_size: int = num(64, ge=1)
    positional: Literal["none", "sinusoidal", "learned"] = "none"
    max_position: int = num(2048, ge=1)
    dropout: float = num(0.0, ge=0.0, lt=1.0)
    activation: Literal["gelu", "relu"] = "gelu"
    tie_word_embeddings: bool = True


@dataclasses.dataclass
class LMData:
    """``data``: window lengths and evaluation sizes (see :mod:`.data`)."""

    root: str | None = None
    train_length: int = num(256, ge=1)
    eval_length: int = num(1024, ge=1)
    val_windows: int = num(8, ge=1)
    test_windows: int = num(32, ge=1)


@dataclasses.dataclass
class LMConfig(RunConfig):
    model: LMModel = dataclasses.field(default_factory=LMModel)
    data: LMData = dataclasses.field(default_factory=LMData)
