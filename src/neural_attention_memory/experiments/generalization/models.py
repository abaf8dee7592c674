"""Model construction for the length-generalisation tasks: every model is a per-position tagger."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ...models.baselines import all_model_names, build_tagger
from ...tasks import algorithmic as alg

__all__ = ["MODELS", "build_model"]

#: Every model a length-generalisation task accepts.
MODELS: tuple[str, ...] = tuple(all_model_names())


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """``config["model"] = {"name": ..., "size": "quick"|"paper", ...field overrides}``."""
    mcfg = dict(config["model"])
    name = mcfg.pop("name")
    size = mcfg.pop("size", "quick")
    return build_tagger(name, alg.VOCAB_SIZE, alg.VOCAB_SIZE, size, **mcfg)
