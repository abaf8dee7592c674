"""``SoftmaxAttention``: the softmax (scaled dot-product) sibling of :class:`NAMAttention`.

Non-causal: every token attends to every non-padded token. Causal: token ``t`` attends to the
non-padded tokens ``s <= t``; the state is a key/value cache that grows by one entry per token
(so, unlike NAM and linear attention, decoding costs memory and time linear in the context).
The kernel is :func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_dims, zero_padded
from ._qkv import QKVAttention, check_dropout

__all__ = ["SoftmaxAttention", "SoftmaxAttentionState", "softmax_attention"]


class SoftmaxAttentionState(NamedTuple):
    """State of a causal :class:`SoftmaxAttention`: the key/value cache.

    Attributes:
        keys: `[B, H, S, d]` keys of the ``S`` tokens so far.
        values: `[B, H, S, d]` their values.
        padding: `[B, S]` bool, True where the cached token was padding (never attended to).
    """

    keys: Tensor
    values: Tensor
    padding: Tensor


def softmax_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """Non-causal scaled dot-product attention over non-padded keys.

    Args:
        q, k: `[B, T, H, d_k]`; v: `[B, T, H, d_v]`.
        key_padding_mask: `[B, T]` bool, True = padding, or None.
    Returns:
        `[B, T, H, d_v]`, zero at padded positions.
    """
    mask = None
    if key_padding_mask is not None and bool(key_padding_mask.any()):
        # Only pass a mask when something is padded: without one SDPA may pick a fused kernel.
        mask = ~key_padding_mask[:, None, None, :]  # [B, 1, 1, T]: True = may attend
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout_p
    ).transpose(1, 2)
    return out if mask is None else zero_padded(out, key_padding_mask)


def causal_softmax_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: SoftmaxAttentionState | None = None,
    key_padding_mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, SoftmaxAttentionState]:
    """Causal scaled dot-product attention over a cache of earlier tokens plus ``q, k, v``.

    Args:
        q, k, v: `[B, T, H, d]` the new tokens; state: the cache of earlier tokens or None.
        key_padding_mask: `[B, T]` bool for the new tokens, True = padding.
    Returns:
        ``(out [B, T, H, d], cache extended by the T new tokens)``; outputs at padding are 0.
    """
    B, T = q.shape[:2]
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, d]
    pad = key_padding_mask
    if pad is None:
        pad = torch.zeros(B, T, dtype=torch.bool, device=q.device)
    if state is not None and state.keys.shape[2] > 0:
        S0 = state.keys.shape[2]
        kh = torch.cat([state.keys, kh], dim=2)
        vh = torch.cat([state.values, vh], dim=2)
        pad_all = torch.cat([state.padding, pad], dim=1)
    else:
        S0, pad_all = 0, pad
    if S0 == 0 and key_padding_mask is None:
        out = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=dropout_p, is_causal=True)
    else:
        i = torch.arange(T, device=q.device)[:, None] + S0
        j = torch.arange(S0 + T, device=q.device)[None, :]
        allowed = (j <= i) & ~pad_all[:, None, None, :]  # [B, 1, T, S0 + T]
        # A padded query would see no key (NaN); let it see itself, its output is zeroed below.
        allowed = allowed | ((j == i) & pad[:, None, :, None])
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=allowed, dropout_p=dropout_p)
    out = zero_padded(out.transpose(1, 2), key_padding_mask)
    return out, SoftmaxAttentionState(kh, vh, pad_all)


class SoftmaxAttention(QKVAttention):
    """Multi-head softmax attention, the sibling of :class:`NAMAttention` (same projections).

    ``forward(x [B, T, E], state=None, padding_mask=None) -> (out [B, T, E], state)``: a
    :class:`SoftmaxAttentionState` cache for a causal layer, ``None`` for a non-causal one;
    ``step(x_t [B, E], state)``; ``init_state(batch, device, dtype)`` (an empty cache).

    Args:
        embed_dim, num_heads, causal, bias, head_dim: as :class:`NAMAttention`.
        attn_dropout: dropout on the attention weights (training only).
        dropout: dropout on the attention output before the output projection.
    """

    _layer_name = "SoftmaxAttention"
    _state_cls = SoftmaxAttentionState

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        causal: bool = False,
        attn_dropout: float = 0.0,
        dropout: float = 0.0,
        bias: bool = True,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        head_dim = check_dims(embed_dim, num_heads, head_dim)
        check_dropout("attn_dropout", attn_dropout)
        self._init_qkv(embed_dim, num_heads, head_dim, causal, dropout, bias)
        self.attn_dropout = attn_dropout

    def init_state(self, batch: int, device=None, dtype=None) -> SoftmaxAttentionState:
        """An empty cache: ``keys``/``values`` `[batch, H, 0, d]`, ``padding`` `[batch, 0]`."""
        kw = self._state_factory(
            "SoftmaxAttention(causal=False) carries no state: every token sees the whole sequence",
            device,
            dtype,
        )
        empty = torch.zeros(batch, self.num_heads, 0, self.head_dim, **kw)
        pad = torch.zeros(batch, 0, dtype=torch.bool, device=kw["device"])
        return SoftmaxAttentionState(empty, empty.clone(), pad)

    def _check_state_shape(self, state: SoftmaxAttentionState, B: int) -> None:
        k = state.keys
        if k.dim() != 4 or k.shape[0] != B or k.shape[1] != self.num_heads:
            raise ValueError(
                f"state: expected keys [B={B}, H={self.num_heads}, S, {self.head_dim}], got "
                f"{tuple(k.shape)}"
            )

    def forward(
        self,
        x: Tensor,
        state: SoftmaxAttentionState | None = None,
        padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, SoftmaxAttentionState | None]:
        """``x`` `[B, T, E]` -> ``(out [B, T, E], state)``; padded tokens are never attended to
        and output 0."""
        q, k, v, padding_mask, state = self._qkv(x, state, padding_mask)
        p = self.attn_dropout if self.training else 0.0
        if self.causal:
            out, state = causal_softmax_attention(q, k, v, state, padding_mask, p)
        else:
            out, state = softmax_attention(q, k, v, padding_mask, p), None
        return self._out(out, padding_mask), state

    def step(
        self, x_t: Tensor, state: SoftmaxAttentionState | None = None
    ) -> tuple[Tensor, SoftmaxAttentionState]:
        """One token: ``x_t`` `[B, E]` -> ``(out_t [B, E], cache + 1 token)``."""
        return self._step(
            x_t,
            state,
            "SoftmaxAttention(causal=False) cannot step: every output attends to the whole "
            "sequence",
        )
