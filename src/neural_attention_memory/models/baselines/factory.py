"""One factory for every model of the length-generalisation experiment (docs/paper.md §5).

``build_tagger(name, vocab_size, num_classes, size, **overrides)`` returns a per-position tagger
``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``:

=================  ===============================================  =========================
name               model                                            paper size (ours / paper)
=================  ===============================================  =========================
``transformer``    BERT-like encoder, learned positions (TF)        see ``PAPER_PARAMS``
``ut``             Universal Transformer, one shared block
``lstm``           2-layer LSTM with attention
``dnc``            Differentiable Neural Computer
``stack-rnn``      Stack-RNN (Joulin & Mikolov 2015)
``lsam``, ``nam-tm-2022``, ``nam-tm-2023``, ``nam-tm*``   from :func:`..sequence.build_memory_model`
                   (``nam-tm`` = ``nam-tm-2022``, the Table 2 model)
=================  ===============================================  =========================

``quick`` sizes train in minutes on one CPU thread (0.1–0.6M parameters); ``paper`` sizes are
chosen so that the parameter counts are close to the paper's (``PAPER_PARAMS``, Table 2 caption).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from torch import nn

from .dnc import DNC, DNCConfig
from .lstm_attention import LSTMAttention, LSTMAttentionConfig
from .stack_rnn import StackRNN, StackRNNConfig
from .transformer_tagger import TransformerTagger, TransformerTaggerConfig
from .universal_transformer import UniversalTransformer, UniversalTransformerConfig

__all__ = ["BASELINES", "PAPER_PARAMS", "SIZES", "all_model_names", "build_tagger"]

_CLASSES: dict[str, tuple[type, type]] = {
    "transformer": (TransformerTagger, TransformerTaggerConfig),
    "ut": (UniversalTransformer, UniversalTransformerConfig),
    "lstm": (LSTMAttention, LSTMAttentionConfig),
    "dnc": (DNC, DNCConfig),
    "stack-rnn": (StackRNN, StackRNNConfig),
}
BASELINES: tuple[str, ...] = tuple(_CLASSES)

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "transformer": {
        "quick": {"d_model": 128, "num_layers": 3, "num_heads": 4, "d_ff": 256, "dropout": 0.0},
        # BERT-medium-like: 9 x (512, 8 heads, 2048)
        "paper": {"d_model": 512, "num_layers": 9, "num_heads": 8, "d_ff": 2048, "dropout": 0.1},
    },
    "ut": {
        "quick": {"d_model": 128, "num_steps": 4, "num_heads": 4, "d_ff": 256, "dropout": 0.0},
        "paper": {"d_model": 1472, "num_steps": 8, "num_heads": 8, "d_ff": 5888, "dropout": 0.1},
    },
    "lstm": {
        "quick": {"d_embed": 64, "hidden": 192, "num_heads": 4},
        "paper": {"d_embed": 512, "hidden": 1264, "num_heads": 8},
    },
    "dnc": {
        "quick": {"d_embed": 64, "hidden": 192, "word_size": 32, "num_reads": 2},
        "paper": {"d_embed": 512, "hidden": 2320, "word_size": 256, "num_reads": 4},
    },
    "stack-rnn": {
        "quick": {"d_embed": 64, "hidden": 256, "num_stacks": 8, "stack_dim": 8},
        "paper": {"d_embed": 512, "hidden": 4096, "num_stacks": 64, "stack_dim": 16},
    },
}

# Parameter counts in the paper (Table 2 caption), in millions.
PAPER_PARAMS: dict[str, float] = {
    "transformer": 28.7,
    "lstm": 31.5,
    "ut": 26.0,
    "dnc": 40.2,
    "lsam": 25.8,
    "nam-tm": 23.3,
    "nam-tm-nojump": 22.2,
    "nam-tm-2022": 23.3,
    "nam-tm-2022-nojump": 22.2,
}


def all_model_names() -> tuple[str, ...]:
    """Baselines plus the NAM models of :mod:`..sequence` (when that module is available)."""
    try:
        from ..sequence import MEMORY_MODELS
    except ImportError:  # the memory models are built elsewhere; baselines still work
        MEMORY_MODELS = ()
    return (*BASELINES, *MEMORY_MODELS)


def build_tagger(
    name: str, vocab_size: int, num_classes: int, size: str = "quick", **overrides: Any
) -> nn.Module:
    """Build model ``name`` at ``size`` (``"quick"`` or ``"paper"``) with field ``overrides``."""
    if size not in ("quick", "paper"):
        raise ValueError(f"size: expected one of quick, paper, got {size!r}")
    for arg, value in (("vocab_size", vocab_size), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{arg}: expected an int >= 2, got {value!r}")
    if name not in _CLASSES:
        names = all_model_names()
        if name in names:
            from ..sequence import build_memory_model

            return build_memory_model(name, vocab_size, num_classes, size, **overrides)
        raise ValueError(f"model: unknown model {name!r}; valid choices: {', '.join(names)}")
    cls, cfg_cls = _CLASSES[name]
    valid = [f.name for f in fields(cfg_cls) if f.name not in ("vocab_size", "num_classes")]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(
            f"model: unknown field(s) {', '.join(unknown)} for {name!r}; valid: {', '.join(valid)}"
        )
    params = {**SIZES[name][size], **overrides}
    return cls(cfg_cls(vocab_size=vocab_size, num_classes=num_classes, **params))
