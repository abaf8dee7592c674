"""Universal Transformer (Dehghani et al., 2019) as a per-position tagger (the paper's "UT").

One pre-LN encoder block (:class:`neural_attention_memory.models.transformer.EncoderBlock`, the
project's only Transformer block) is applied ``num_steps`` times with shared weights. Before every
step the fixed sinusoidal *coordinate embedding* is added: the position signal plus a timestep
signal, so the shared block knows both where it is and which iteration it runs. Sinusoidal
positions are defined at any length. The dynamic halting (ACT) of the original is not used: a
fixed number of steps, as in the UT's simpler variant.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..transformer import EncoderBlock, TransformerConfig, sinusoidal_positions
from ._common import check_tokens

__all__ = ["UniversalTransformer", "UniversalTransformerConfig"]


@dataclass
class UniversalTransformerConfig:
    vocab_size: int
    num_classes: int
    d_model: int = 64
    num_steps: int = 4
    num_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.1
    attention: str = "softmax"
    max_len: int = 512


class UniversalTransformer(nn.Module):
    """``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``."""

    def __init__(self, config: UniversalTransformerConfig) -> None:
        super().__init__()
        if config.num_steps < 1:
            raise ValueError(f"num_steps: expected a positive int, got {config.num_steps!r}")
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        self.config = config
        block_cfg = TransformerConfig(
            d_model=config.d_model,
            num_layers=1,
            num_heads=config.num_heads,
            d_ff=config.d_ff,
            attention=config.attention,
            dropout=config.dropout,
            max_len=config.max_len,
        )
        self.embed = nn.Embedding(config.vocab_size, config.d_model, padding_idx=0)
        self.block = EncoderBlock(block_cfg)  # shared across steps
        self.ln_f = nn.LayerNorm(config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.num_classes)
        table = sinusoidal_positions(max(config.max_len, config.num_steps), config.d_model)
        self.register_buffer("coords", table, persistent=False)

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        padding_mask = check_tokens(tokens, padding_mask, self.config.vocab_size)
        T = tokens.shape[1]
        coords = self.coords
        if T > coords.shape[0]:  # sinusoids exist at any length: extend instead of failing
            coords = sinusoidal_positions(T, self.config.d_model).to(coords.device)
        x = self.drop(self.embed(tokens) * self.config.d_model**0.5)
        for step in range(self.config.num_steps):
            x = x + coords[:T] + coords[step]
            x, _ = self.block(x, padding_mask=padding_mask)
        return self.head(self.ln_f(x))
