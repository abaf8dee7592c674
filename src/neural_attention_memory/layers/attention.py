"""``NAMAttention``: multi-head NAM attention as a drop-in ``nn.Module``.

Speaks the project's sequence-model protocol: ``forward(x, state=None, padding_mask=None) ->
(out, state)``, ``step(x_t, state=None) -> (out_t, state)``, ``init_state(batch, device, dtype)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..functional import (
    chunk_causal_nam_attention,
    naive_causal_nam_attention,
    nam_attention,
    recurrent_causal_nam_attention,
)
from ._common import check_dims, check_input, check_padding_mask, zero_padded

__all__ = ["NAMAttention", "NAMAttentionState"]

GATES = ("write", "erase", "read")
MODES = ("auto", "chunk", "recurrent", "naive")
_CAUSAL_FNS = {
    "chunk": chunk_causal_nam_attention,
    "recurrent": recurrent_causal_nam_attention,
    "naive": naive_causal_nam_attention,
}


class NAMAttentionState(NamedTuple):
    """State of a causal :class:`NAMAttention`.

    Attributes:
        memory: `[B, H, d_v, d_k]` one NAM memory per head (value rows, key columns).
    """

    memory: Tensor


class NAMAttention(nn.Module):
    """Multi-head NAM (normalised outer-product) self-attention with optional learned gates.

    Queries, keys and values are linear projections of the input, split into ``num_heads`` heads of
    size ``head_dim``; each head reads a NAM memory built from its keys and values (non-causal: all
    tokens; causal: the tokens so far, a state that can be carried across calls). Heads are merged by
    an output projection. Gates are per head: ``sigmoid(Linear(x))``.

    Args:
        embed_dim: model width ``E``.
        num_heads: number of heads ``H``.
        causal: causal (recurrent memory, state in/out, ``step``) or non-causal attention.
        gates: which learned gates to use, a subset of ``("write", "erase", "read")``; erase only
            for causal attention (a non-causal memory is written once).
        tie_erase: erase with the write probability (``p_e = p_w``: the delta rule, as in LSAM
            and DeltaNet); needs ``causal=True`` and the ``"write"`` gate, excludes ``"erase"``.
        mode: causal algorithm: ``"auto"`` (chunk for sequences longer than one chunk
            step, recurrent otherwise), ``"chunk"``, ``"recurrent"`` or ``"naive"``.
        chunk_size: chunk length of the chunk form.
        dropout: dropout on the attention output before the output projection.
        bias: bias in the projections.
        head_dim: per-head size (default ``embed_dim // num_heads``).

    Shapes:
        ``forward(x [B, T, E]) -> (out [B, T, E], state)``; causal state
        :class:`NAMAttentionState` with ``memory`` `[B, H, head_dim, head_dim]`; a non-causal layer
        carries no state and returns ``None`` in its place.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        causal: bool = False,
        gates: Sequence[str] = (),
        mode: str = "auto",
        chunk_size: int = 64,
        dropout: float = 0.0,
        bias: bool = True,
        head_dim: int | None = None,
        tie_erase: bool = False,
    ) -> None:
        super().__init__()
        head_dim = check_dims(embed_dim, num_heads, head_dim)
        if isinstance(gates, str):
            gates = (gates,)
        bad = [g for g in gates if g not in GATES]
        if bad or len(set(gates)) != len(gates):
            raise ValueError(f"gates: expected distinct names from {GATES}, got {tuple(gates)}")
        if "erase" in gates and not causal:
            raise ValueError(
                "gates: 'erase' needs causal=True (a non-causal memory is written once)"
            )
        if tie_erase and (not causal or "write" not in gates or "erase" in gates):
            raise ValueError(
                "tie_erase: needs causal=True and gates with 'write' and without 'erase', got "
                f"causal={causal}, gates={tuple(gates)}"
            )
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.causal, self.mode, self.chunk_size = causal, mode, chunk_size
        self.tie_erase = bool(tie_erase)
        self.gates = tuple(g for g in GATES if g in gates)  # canonical order
        inner = num_heads * head_dim
        self.qkv_proj = nn.Linear(embed_dim, 3 * inner, bias=bias)
        self.gate_proj = nn.Linear(embed_dim, len(self.gates) * num_heads) if self.gates else None
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"causal={self.causal}, gates={self.gates}, tie_erase={self.tie_erase}, "
            f"mode={self.mode!r}"
        )

    def init_state(self, batch: int, device=None, dtype=None) -> NAMAttentionState:
        """An empty memory: ``memory`` `[batch, H, head_dim, head_dim]` of zeros."""
        if not self.causal:
            raise NotImplementedError(
                "NAMAttention(causal=False) carries no state: its memory is built from the whole "
                "sequence at once"
            )
        w = self.qkv_proj.weight
        memory = torch.zeros(
            batch,
            self.num_heads,
            self.head_dim,
            self.head_dim,
            device=device or w.device,
            dtype=dtype or w.dtype,
        )
        return NAMAttentionState(memory)

    def _check_state(self, state: object, x: Tensor) -> Tensor | None:
        if state is None:
            return None
        if not self.causal:
            raise ValueError("state: only causal NAMAttention carries a state, got a state")
        if not isinstance(state, NAMAttentionState):
            raise TypeError(f"state: expected a NAMAttentionState, got {type(state).__name__}")
        want = (x.shape[0], self.num_heads, self.head_dim, self.head_dim)
        if tuple(state.memory.shape) != want:
            raise ValueError(
                f"state: expected memory of shape {want}, got {tuple(state.memory.shape)}"
            )
        return state.memory

    def forward(
        self,
        x: Tensor,
        state: NAMAttentionState | None = None,
        padding_mask: Tensor | None = None,
        *,
        mode: str | None = None,
    ) -> tuple[Tensor, NAMAttentionState | None]:
        """Attend over ``x`` `[B, T, E]`.

        Args:
            state: causal only: the state after earlier tokens (None = empty memory).
            padding_mask: `[B, T]` bool, True = padding: a padded token writes nothing and its
                output is zero.
            mode: override ``self.mode`` for this call (causal only).
        Returns:
            ``(out [B, T, E], new state)``; the state is ``None`` for a non-causal layer.
        """
        x = check_input(x, "x", 3, self.embed_dim)
        B, T, _ = x.shape
        padding_mask = check_padding_mask(padding_mask, B, T)
        memory = self._check_state(state, x)
        H, d = self.num_heads, self.head_dim
        q, k, v = self.qkv_proj(x).view(B, T, 3, H, d).unbind(2)
        g = {}
        if self.gate_proj is not None:
            probs = torch.sigmoid(self.gate_proj(x)).view(B, T, len(self.gates), H).unbind(2)
            g = dict(zip(self.gates, probs, strict=True))
        if self.tie_erase:
            g["erase"] = g["write"]
        new_state = None
        if not self.causal:
            out = nam_attention(
                q, k, v, g.get("write"), g.get("read"), key_padding_mask=padding_mask
            )
        else:
            mode = self.mode if mode is None else mode
            if mode not in MODES:
                raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
            if mode == "auto":  # any dtype: the kernels accumulate half inputs in float32
                mode = "chunk" if T > 8 else "recurrent"
            kwargs = {"chunk_size": self.chunk_size} if mode == "chunk" else {}
            out, memory = _CAUSAL_FNS[mode](
                q,
                k,
                v,
                g.get("write"),
                g.get("erase"),
                g.get("read"),
                initial_state=memory,
                output_final_state=True,
                key_padding_mask=padding_mask,
                **kwargs,
            )
            new_state = NAMAttentionState(memory)
        out = self.out_proj(self.dropout(out.reshape(B, T, H * d)))
        return zero_padded(out, padding_mask), new_state

    def step(
        self, x_t: Tensor, state: NAMAttentionState | None = None
    ) -> tuple[Tensor, NAMAttentionState]:
        """One token of causal decoding: ``x_t`` `[B, E]` -> ``(out_t [B, E], new state)``."""
        if not self.causal:
            raise NotImplementedError(
                "NAMAttention(causal=False) cannot step: every output reads a memory written by "
                "the whole sequence"
            )
        x_t = check_input(x_t, "x_t", 2, self.embed_dim)
        out, state = self.forward(x_t.unsqueeze(1), state, mode="recurrent")
        return out.squeeze(1), state
