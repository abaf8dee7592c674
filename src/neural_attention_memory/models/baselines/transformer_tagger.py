"""BERT-like Transformer encoder as a per-position tagger (the paper's "TF" baseline).

A thin wrapper around :class:`neural_attention_memory.models.transformer.TransformerEncoder`
(pre-LN blocks, learned absolute positions as in BERT, softmax attention by default) with a linear
classifier on every position. Learned positions beyond the longest training sequence are never
trained, which is the usual reason such encoders fail to generalise to longer inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..transformer import TransformerConfig, TransformerEncoder
from ._common import check_tokens

__all__ = ["TransformerTagger", "TransformerTaggerConfig"]


@dataclass
class TransformerTaggerConfig:
    """Hyper-parameters; ``attention`` may be ``"softmax"`` (the baseline), ``"nam"`` or ``"linear"``."""

    vocab_size: int
    num_classes: int
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.1
    attention: str = "softmax"
    positional: str = "learned"
    max_len: int = 512
    #: std of the initial token embeddings (and learned positions); 0.02 as in BERT. Next to fixed
    #: sinusoidal positions (amplitude 1), 0.02 leaves the token a small part of the input.
    embed_std: float = 0.02


class TransformerTagger(nn.Module):
    """``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``."""

    def __init__(self, config: TransformerTaggerConfig) -> None:
        super().__init__()
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        self.config = config
        self.encoder = TransformerEncoder(
            TransformerConfig(
                d_model=config.d_model,
                num_layers=config.num_layers,
                num_heads=config.num_heads,
                d_ff=config.d_ff,
                attention=config.attention,
                vocab_size=config.vocab_size,
                max_len=config.max_len,
                positional=config.positional,
                dropout=config.dropout,
                embed_std=config.embed_std,
                padding_idx=0,
            )
        )
        self.head = nn.Linear(config.d_model, config.num_classes)

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        padding_mask = check_tokens(tokens, padding_mask, self.config.vocab_size)
        h, _ = self.encoder(tokens, padding_mask=padding_mask)
        return self.head(h)
