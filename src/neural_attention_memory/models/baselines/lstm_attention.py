"""Two-layer LSTM with attention, as a per-position tagger (the paper's "LSTM" baseline).

A unidirectional two-layer LSTM reads the sequence; every position then attends (multi-head,
scaled dot-product, over all non-padded positions) to the LSTM states, and a small MLP maps
``[h_t ; context_t]`` to the logits. Because the problem precedes the ``<mask>`` slots, the LSTM has
read the whole problem when it reaches the answer, and attention lets every slot look back at any
input position (the classic LSTM + attention of Bahdanau/Luong, here in an encoder-only form).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...layers.softmax import softmax_attention
from ._common import check_tokens

__all__ = ["LSTMAttention", "LSTMAttentionConfig"]


@dataclass
class LSTMAttentionConfig:
    vocab_size: int
    num_classes: int
    d_embed: int = 64
    hidden: int = 128
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.0


class LSTMAttention(nn.Module):
    """``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``."""

    def __init__(self, config: LSTMAttentionConfig) -> None:
        super().__init__()
        if config.hidden % config.num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of hidden={config.hidden}, got {config.num_heads}"
            )
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        self.config = config
        H = config.hidden
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=0)
        self.lstm = nn.LSTM(
            config.d_embed,
            H,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.qkv = nn.Linear(H, 3 * H)
        self.attn_out = nn.Linear(H, H)
        self.head = nn.Sequential(nn.Linear(2 * H, H), nn.Tanh(), nn.Linear(H, config.num_classes))

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        padding_mask = check_tokens(tokens, padding_mask, self.config.vocab_size)
        B, T = tokens.shape
        # Unidirectional: trailing padding cannot change the states of real positions.
        h, _ = self.lstm(self.embed(tokens))  # [B, T, H]
        nh = self.config.num_heads
        q, k, v = self.qkv(h).view(B, T, 3, nh, -1).unbind(2)
        ctx = softmax_attention(q, k, v, padding_mask).reshape(B, T, -1)
        return self.head(torch.cat([h, self.attn_out(ctx)], dim=-1))
