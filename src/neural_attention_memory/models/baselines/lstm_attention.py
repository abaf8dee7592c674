"""Two-layer LSTM with attention, as a per-position tagger (the paper's "LSTM" baseline).

A unidirectional two-layer LSTM reads the sequence; every position then attends (multi-head,
scaled dot-product, over all non-padded positions) to the LSTM states, and a small MLP maps
``[h_t ; context_t]`` to the logits. Because the problem precedes the ``<mask>`` slots, the LSTM has
read the whole problem when it reaches the answer, and attention lets every slot look back at any
input position (the classic LSTM + attention of Bahdanau/Luong, here in an encoder-only form).

:class:`LSTMAttentionCore` (embedded inputs -> ``[h_t ; context_t]``) speaks the sequence-model
protocol as a non-causal model: ``forward(x, state=None, padding_mask=None) -> (y, None)``; it
cannot ``step`` (every position attends to the whole sequence). :class:`LSTMAttention` is the tagger.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...layers._common import check_input, check_padding_mask, zero_padded
from ...layers.softmax import softmax_attention
from ._common import check_tokens

__all__ = ["LSTMAttention", "LSTMAttentionConfig", "LSTMAttentionCore"]


@dataclass
class LSTMAttentionConfig:
    vocab_size: int
    num_classes: int
    d_embed: int = 64
    hidden: int = 128
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.0


class LSTMAttentionCore(nn.Module):
    """Unidirectional LSTM + multi-head attention over its states (all non-padded positions).

    ``forward(x [B, T, input_size], state=None, padding_mask=None) -> (y [B, T, 2 * hidden],
    None)`` with ``y_t = [h_t ; Linear(context_t)]``, zero at padded positions. Padding must come
    after the real tokens (trailing), which the unidirectional LSTM then never reads into them.
    """

    def __init__(
        self,
        input_size: int,
        hidden: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"num_heads: expected a divisor of hidden={hidden}, got {num_heads}")
        self.input_size, self.hidden, self.num_heads = input_size, hidden, num_heads
        self.output_size = 2 * hidden
        self.lstm = nn.LSTM(
            input_size,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)

    def init_state(self, batch: int, device=None, dtype=None):
        raise NotImplementedError(
            "LSTMAttentionCore carries no state: every position attends to the whole sequence"
        )

    def step(self, x_t: Tensor, state=None):
        raise NotImplementedError(
            "LSTMAttentionCore cannot step: every position attends to the whole sequence"
        )

    def forward(
        self, x: Tensor, state: None = None, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, None]:
        x = check_input(x, "x", 3, self.input_size)
        if state is not None:
            raise ValueError("state: LSTMAttentionCore is non-causal and carries no state")
        B, T, _ = x.shape
        padding_mask = check_padding_mask(padding_mask, B, T)
        # Unidirectional: trailing padding cannot change the states of real positions.
        h, _ = self.lstm(x)  # [B, T, H]
        q, k, v = self.qkv(h).view(B, T, 3, self.num_heads, -1).unbind(2)
        ctx = softmax_attention(q, k, v, padding_mask).reshape(B, T, -1)
        y = torch.cat([h, self.attn_out(ctx)], dim=-1)
        return zero_padded(y, padding_mask), None


class LSTMAttention(nn.Module):
    """The tagger: embedding, :class:`LSTMAttentionCore`, MLP head.

    ``forward(tokens [B, T], padding_mask [B, T] | None) -> logits [B, T, C]``."""

    def __init__(self, config: LSTMAttentionConfig) -> None:
        super().__init__()
        if config.num_classes < 2:
            raise ValueError(f"num_classes: expected an int >= 2, got {config.num_classes!r}")
        self.config = config
        H = config.hidden
        self.embed = nn.Embedding(config.vocab_size, config.d_embed, padding_idx=0)
        self.core = LSTMAttentionCore(
            config.d_embed, H, config.num_layers, config.num_heads, config.dropout
        )
        self.head = nn.Sequential(nn.Linear(2 * H, H), nn.Tanh(), nn.Linear(H, config.num_classes))

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        padding_mask = check_tokens(tokens, padding_mask, self.config.vocab_size)
        y, _ = self.core(self.embed(tokens), None, padding_mask)
        return self.head(y)
