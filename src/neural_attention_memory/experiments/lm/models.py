"""Model construction for the byte-level LM benchmark: one :class:`NAMForCausalLM`, only the
attention differs (``nam``, ``nam-tied``, ``linear``, ``softmax``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...models.lm import NAMConfig, NAMForCausalLM
from ...tasks.pysource import VOCAB_SIZE

__all__ = ["MODELS", "build_model", "lm_config"]

#: Model name = the :class:`NAMConfig` ``attention``.
MODELS: tuple[str, ...] = ("nam", "nam-tied", "linear", "softmax")


def lm_config(model_section: Mapping[str, Any]) -> NAMConfig:
    """``config["model"]`` (``name`` = attention kind, plus :class:`NAMConfig` fields)."""
    mcfg = dict(model_section)
    name = mcfg.pop("name")
    if name not in MODELS:
        raise ValueError(f"model.name: expected one of {MODELS}, got {name!r}")
    mcfg["attention"] = name
    mcfg.setdefault("vocab_size", VOCAB_SIZE)
    return NAMConfig.from_dict(mcfg)


def build_model(config: Mapping[str, Any]) -> NAMForCausalLM:
    return NAMForCausalLM(lm_config(config["model"]))
