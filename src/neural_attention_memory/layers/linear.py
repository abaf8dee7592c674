"""``LinearAttention``: the linear-attention sibling of :class:`NAMAttention`.

Katharopoulos et al. (2020) with the ``phi(x) = elu(x) + 1`` feature map:
``out_t = phi(q_t)^T S_t / (phi(q_t)^T z_t + eps)`` with ``S_t = sum_s phi(k_s) v_s^T`` and
``z_t = sum_s phi(k_s)`` over all tokens (non-causal) or the tokens ``s <= t`` (causal, a state).
Padded keys are zeroed after the feature map, so they add nothing to either sum.

Kernels (pure tensor math, shapes `[B, T, H, d]`): :func:`linear_attention` (non-causal),
:func:`chunk_causal_linear_attention` (causal, chunk-parallel, for training) and its slow twin
:func:`naive_causal_linear_attention` (a token loop, the reference and the decoding form).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_dims, zero_padded
from ._qkv import QKVAttention

__all__ = [
    "LinearAttention",
    "LinearAttentionState",
    "chunk_causal_linear_attention",
    "linear_attention",
    "naive_causal_linear_attention",
]

EPS = 1e-6


class LinearAttentionState(NamedTuple):
    """State of a causal :class:`LinearAttention`.

    Attributes:
        kv: `[B, H, d_k, d_v]` the sum ``sum_s phi(k_s) v_s^T`` over the tokens so far.
        z: `[B, H, d_k]` the normaliser ``sum_s phi(k_s)``.
    """

    kv: Tensor
    z: Tensor


def _features(q: Tensor, k: Tensor, key_padding_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    phi_q = F.elu(q) + 1.0
    phi_k = F.elu(k) + 1.0
    if key_padding_mask is not None:
        phi_k = phi_k.masked_fill(key_padding_mask[:, :, None, None], 0.0)
    return phi_q, phi_k


def linear_attention(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None, eps: float = EPS
) -> Tensor:
    """Non-causal linear attention.

    Args:
        q, k: `[B, T, H, d_k]`; v: `[B, T, H, d_v]`.
        key_padding_mask: `[B, T]` bool, True = padding, or None.
    Returns:
        `[B, T, H, d_v]`, zero at padded positions.
    """
    phi_q, phi_k = _features(q, k, key_padding_mask)
    kv = torch.einsum("bshk,bshv->bhkv", phi_k, v)  # [B, H, d_k, d_v]
    z = phi_k.sum(dim=1)  # [B, H, d_k]
    num = torch.einsum("bthk,bhkv->bthv", phi_q, kv)
    den = torch.einsum("bthk,bhk->bth", phi_q, z).unsqueeze(-1) + eps
    return zero_padded(num / den, key_padding_mask)


def naive_causal_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: LinearAttentionState | None = None,
    key_padding_mask: Tensor | None = None,
    eps: float = EPS,
) -> tuple[Tensor, LinearAttentionState]:
    """Causal linear attention as a token loop (the reference; also the decoding form).

    Args:
        q, k: `[B, T, H, d_k]`; v: `[B, T, H, d_v]`.
        state: sums carried from earlier tokens (None = zeros).
        key_padding_mask: `[B, T]` bool, True = padding: the token adds nothing, outputs 0.
    Returns:
        ``(out [B, T, H, d_v], state after the last token)``.
    """
    B, T, H, d_k = q.shape
    phi_q, phi_k = _features(q, k, key_padding_mask)
    if state is None:
        kv = q.new_zeros(B, H, d_k, v.shape[-1])
        z = q.new_zeros(B, H, d_k)
    else:
        kv, z = state
    outs = []
    for t in range(T):
        kv = kv + phi_k[:, t, :, :, None] * v[:, t, :, None, :]
        z = z + phi_k[:, t]
        num = torch.einsum("bhk,bhkv->bhv", phi_q[:, t], kv)
        den = (phi_q[:, t] * z).sum(-1, keepdim=True) + eps
        outs.append(num / den)
    out = zero_padded(torch.stack(outs, dim=1), key_padding_mask)
    return out, LinearAttentionState(kv, z)


def chunk_causal_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    state: LinearAttentionState | None = None,
    key_padding_mask: Tensor | None = None,
    chunk_size: int = 64,
    eps: float = EPS,
) -> tuple[Tensor, LinearAttentionState]:
    """Causal linear attention, chunk-parallel: the same numbers as the token loop.

    Inside a chunk of ``C`` tokens the scores ``phi(Q) phi(K)^T`` are masked to the lower triangle
    (diagonal included); across chunks the sums at each chunk start come from an exclusive cumulative
    sum of per-chunk sums, so there is no Python loop over time. Extra memory `[N, d_k, d_v]` per
    head for ``N = ceil(T / C)`` chunks.

    Args and returns: as :func:`naive_causal_linear_attention`, plus ``chunk_size`` ``C``.
    """
    B, T, H, d_k = q.shape
    d_v = v.shape[-1]
    phi_q, phi_k = _features(q, k, key_padding_mask)
    C = min(chunk_size, T)
    N = -(-T // C)
    pad = N * C - T
    if pad:  # zero keys in the tail add nothing; their outputs are cut off below
        phi_q, phi_k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (phi_q, phi_k, v))
    # [B, H, N, C, d]
    qc, kc, vc = (t.view(B, N, C, H, -1).permute(0, 3, 1, 2, 4) for t in (phi_q, phi_k, v))
    kv_chunk = kc.transpose(-1, -2) @ vc  # [B, H, N, d_k, d_v]
    z_chunk = kc.sum(dim=3)  # [B, H, N, d_k]
    if state is None:
        kv0 = q.new_zeros(B, H, 1, d_k, d_v)
        z0 = q.new_zeros(B, H, 1, d_k)
    else:
        kv0, z0 = state.kv.unsqueeze(2), state.z.unsqueeze(2)
    kv_incl = kv0 + kv_chunk.cumsum(dim=2)
    z_incl = z0 + z_chunk.cumsum(dim=2)
    kv_start = torch.cat([kv0, kv_incl[:, :, :-1]], dim=2)  # sums before each chunk
    z_start = torch.cat([z0, z_incl[:, :, :-1]], dim=2)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    scores = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0.0)  # [B, H, N, C, C]
    num = qc @ kv_start + scores @ vc
    den = (qc * z_start.unsqueeze(3)).sum(-1) + scores.sum(-1) + eps  # [B, H, N, C]
    out = (num / den.unsqueeze(-1)).permute(0, 2, 3, 1, 4).reshape(B, N * C, H, d_v)[:, :T]
    out = zero_padded(out, key_padding_mask)
    return out, LinearAttentionState(kv_incl[:, :, -1], z_incl[:, :, -1])


class LinearAttention(QKVAttention):
    """Multi-head linear attention (``elu + 1`` features), the sibling of :class:`NAMAttention`.

    Same projections as :class:`NAMAttention` without gates (fused q/k/v, output projection) and the
    same protocol: ``forward(x [B, T, E], state=None, padding_mask=None) -> (out [B, T, E], state)``
    with a :class:`LinearAttentionState` for a causal layer and ``None`` for a non-causal one;
    ``step(x_t [B, E], state)``; ``init_state(batch, device, dtype)``.

    Args:
        embed_dim, num_heads, causal, dropout, bias, head_dim: as :class:`NAMAttention`.
        mode: causal algorithm, ``"chunk"`` (default) or ``"naive"`` (token loop).
        chunk_size: chunk length of the chunk form.
    """

    _layer_name = "LinearAttention"
    _state_cls = LinearAttentionState

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        causal: bool = False,
        mode: str = "chunk",
        chunk_size: int = 64,
        dropout: float = 0.0,
        bias: bool = True,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        head_dim = check_dims(embed_dim, num_heads, head_dim)
        if mode not in ("chunk", "naive"):
            raise ValueError(f"mode: expected 'chunk' or 'naive', got {mode!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
        self._init_qkv(embed_dim, num_heads, head_dim, causal, dropout, bias)
        self.mode, self.chunk_size = mode, chunk_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode!r}"

    def init_state(self, batch: int, device=None, dtype=None) -> LinearAttentionState:
        """Empty sums: ``kv`` `[batch, H, d, d]` and ``z`` `[batch, H, d]` of zeros."""
        kw = self._state_factory(
            "LinearAttention(causal=False) carries no state: it sums over the whole sequence",
            device,
            dtype,
        )
        H, d = self.num_heads, self.head_dim
        return LinearAttentionState(
            torch.zeros(batch, H, d, d, **kw), torch.zeros(batch, H, d, **kw)
        )

    def _check_state_shape(self, state: LinearAttentionState, B: int) -> None:
        H, d = self.num_heads, self.head_dim
        if tuple(state.kv.shape) != (B, H, d, d) or tuple(state.z.shape) != (B, H, d):
            raise ValueError(
                f"state: expected kv {(B, H, d, d)} and z {(B, H, d)}, got "
                f"{tuple(state.kv.shape)} and {tuple(state.z.shape)}"
            )

    def forward(
        self,
        x: Tensor,
        state: LinearAttentionState | None = None,
        padding_mask: Tensor | None = None,
        *,
        mode: str | None = None,
    ) -> tuple[Tensor, LinearAttentionState | None]:
        """``x`` `[B, T, E]` -> ``(out [B, T, E], state)``; padded tokens add nothing, output 0."""
        q, k, v, padding_mask, state = self._qkv(x, state, padding_mask)
        if not self.causal:
            out, state = linear_attention(q, k, v, padding_mask), None
        else:
            mode = self.mode if mode is None else mode
            if mode == "chunk":
                out, state = chunk_causal_linear_attention(
                    q, k, v, state, padding_mask, self.chunk_size
                )
            elif mode == "naive":
                out, state = naive_causal_linear_attention(q, k, v, state, padding_mask)
            else:
                raise ValueError(f"mode: expected 'chunk' or 'naive', got {mode!r}")
        return self._out(out, padding_mask), state

    def step(
        self, x_t: Tensor, state: LinearAttentionState | None = None
    ) -> tuple[Tensor, LinearAttentionState]:
        """One token: ``x_t`` `[B, E]` -> ``(out_t [B, E], new state)``, constant memory."""
        return self._step(
            x_t,
            state,
            "LinearAttention(causal=False) cannot step: every output sums over the whole sequence",
            mode="naive",
        )
