"""Model construction for the LRA tasks: one encoder, only the attention differs.

``nam-transformer``, ``softmax-transformer`` and ``linear-transformer`` are the same
:mod:`...models.transformer` encoder with NAM, softmax or linear attention; the retrieval task
wraps it in a dual encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ...models.transformer import DualEncoderClassifier, SequenceClassifier, TransformerConfig
from ...tasks.lra import BYTE_VOCAB_SIZE, LISTOPS_VOCAB
from .paper import NUM_CLASSES

__all__ = ["MODELS", "MODEL_DESCRIPTIONS", "build_model"]

#: Model name -> the encoder's ``attention``.
MODELS: dict[str, str] = {
    "nam-transformer": "nam",
    "softmax-transformer": "softmax",
    "linear-transformer": "linear",
}
#: Model name -> one line for ``nam list models``.
MODEL_DESCRIPTIONS: dict[str, str] = {
    "nam-transformer": "Transformer encoder with non-causal NAM attention",
    "softmax-transformer": "the same encoder with softmax attention",
    "linear-transformer": "the same encoder with linear attention (elu + 1)",
}


def _vocab(task: str) -> tuple[int, int | None]:
    """(vocab size, padding id) of a task's tokens; pixel tasks have no padding id (0 is black)."""
    if task == "lra-listops":
        return len(LISTOPS_VOCAB), 0
    if task in ("lra-text", "lra-retrieval"):
        return BYTE_VOCAB_SIZE, 0
    return 256, None


def _seq_len(task: str, data: Mapping[str, Any]) -> int:
    if task == "lra-pathfinder32":
        return int(data["size"]) ** 2
    if task == "lra-image":
        return 1024
    return int(data["max_length"])


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """``config["model"]``: ``name`` (one of :data:`MODELS`) plus :class:`TransformerConfig` fields,
    ``pooling`` (``cls``/``mean``) and ``head_hidden``; vocabulary and ``max_len`` follow the task."""
    task = config["task"]
    mcfg = dict(config["model"])
    name = mcfg.pop("name")
    if name not in MODELS:
        raise ValueError(f"model.name: expected one of {tuple(MODELS)}, got {name!r}")
    pooling = mcfg.pop("pooling", "cls")
    head_hidden = mcfg.pop("head_hidden", None)
    vocab, pad = _vocab(task)
    mcfg.update(
        attention=MODELS[name],
        vocab_size=vocab,
        padding_idx=pad,
        max_len=_seq_len(task, config.get("data", {})) + 1,  # + the CLS token
    )
    unknown = sorted(set(mcfg) - set(TransformerConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(
            f"model: unknown keys {unknown}; valid: {sorted(TransformerConfig.__dataclass_fields__)}"
        )
    cfg = TransformerConfig(**mcfg)
    if task == "lra-retrieval":
        return DualEncoderClassifier(cfg, NUM_CLASSES[task], pooling, head_hidden)
    return SequenceClassifier(cfg, NUM_CLASSES[task], pooling, head_hidden)
