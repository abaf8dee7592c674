"""Model construction for the length-generalisation tasks: every model is a per-position tagger."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ...models.baselines import all_model_names, build_tagger
from ...tasks import algorithmic as alg

__all__ = ["MODELS", "MODEL_DESCRIPTIONS", "build_model"]

#: Every model a length-generalisation task accepts.
MODELS: tuple[str, ...] = tuple(all_model_names())

_KNOWN = {
    "transformer": "BERT-like Transformer encoder with learned positions (TF)",
    "ut": "Universal Transformer: one shared block applied repeatedly",
    "lstm": "2-layer LSTM with attention",
    "dnc": "Differentiable Neural Computer",
    "stack-rnn": "Stack-RNN (Joulin & Mikolov 2015)",
    "lsam": "LSAM: LSTM whose cell is a NAM memory per head",
    "nam-tm": "NAM Turing Machine",
    "nam-tm-nojump": "NAM-TM without the jump action (ablation)",
}
#: Model name -> one line for ``nam list models``.
MODEL_DESCRIPTIONS: dict[str, str] = {
    m: _KNOWN.get(m, "NAM-TM variant" if m.startswith("nam-tm") else "") for m in MODELS
}


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """``config["model"] = {"name": ..., "size": "quick"|"paper", ...field overrides}``."""
    mcfg = dict(config["model"])
    name = mcfg.pop("name")
    size = mcfg.pop("size", "quick")
    return build_tagger(name, alg.VOCAB_SIZE, alg.VOCAB_SIZE, size, **mcfg)
