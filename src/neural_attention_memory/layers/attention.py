"""``NAMAttention``: multi-head NAM attention as a drop-in ``nn.Module``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..functional import (
    chunk_causal_nam_attention,
    naive_causal_nam_attention,
    nam_attention,
    recurrent_causal_nam_attention,
)

__all__ = ["NAMAttention"]

GATES = ("write", "erase", "read")
MODES = ("auto", "chunk", "recurrent", "naive")
_CAUSAL_FNS = {
    "chunk": chunk_causal_nam_attention,
    "recurrent": recurrent_causal_nam_attention,
    "naive": naive_causal_nam_attention,
}


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
        mode: causal algorithm: ``"auto"`` (chunk for float32/64 sequences longer than one chunk
            step, recurrent otherwise), ``"chunk"``, ``"recurrent"`` or ``"naive"``.
        chunk_size: chunk length of the chunk form.
        dropout: dropout on the attention output before the output projection.
        bias: bias in the projections.
        head_dim: per-head size (default ``embed_dim // num_heads``).

    Shapes:
        ``forward(x [B, T, E]) -> [B, T, E]``; the state is `[B, H, head_dim, head_dim]`.
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
    ) -> None:
        super().__init__()
        for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name}: expected a positive int, got {val!r}")
        if head_dim is None:
            if embed_dim % num_heads:
                raise ValueError(
                    f"num_heads: expected a divisor of embed_dim={embed_dim} (or pass head_dim), "
                    f"got {num_heads}"
                )
            head_dim = embed_dim // num_heads
        elif isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
            raise ValueError(f"head_dim: expected a positive int or None, got {head_dim!r}")
        if isinstance(gates, str):
            gates = (gates,)
        bad = [g for g in gates if g not in GATES]
        if bad or len(set(gates)) != len(gates):
            raise ValueError(f"gates: expected distinct names from {GATES}, got {tuple(gates)}")
        if "erase" in gates and not causal:
            raise ValueError(
                "gates: 'erase' needs causal=True (a non-causal memory is written once)"
            )
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.causal, self.mode, self.chunk_size = causal, mode, chunk_size
        self.gates = tuple(g for g in GATES if g in gates)  # canonical order
        inner = num_heads * head_dim
        self.qkv_proj = nn.Linear(embed_dim, 3 * inner, bias=bias)
        self.gate_proj = nn.Linear(embed_dim, len(self.gates) * num_heads) if self.gates else None
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"causal={self.causal}, gates={self.gates}, mode={self.mode!r}"
        )

    def init_state(self, batch: int, device=None, dtype=None) -> Tensor:
        """An empty memory `[batch, H, head_dim, head_dim]`."""
        w = self.qkv_proj.weight
        return torch.zeros(
            batch,
            self.num_heads,
            self.head_dim,
            self.head_dim,
            device=device or w.device,
            dtype=dtype or w.dtype,
        )

    def _check_x(self, x: object, name: str, rank: int) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"{name}: expected a floating-point tensor, got {got}")
        if x.dim() != rank or x.shape[-1] != self.embed_dim:
            want = "[B, T, E]" if rank == 3 else "[B, E]"
            raise ValueError(
                f"{name}: expected shape {want} with E = {self.embed_dim}, got {tuple(x.shape)}"
            )
        return x

    def forward(
        self,
        x: Tensor,
        key_padding_mask: Tensor | None = None,
        state: Tensor | None = None,
        return_state: bool = False,
        mode: str | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend over ``x`` `[B, T, E]`.

        Args:
            key_padding_mask: `[B, T]` bool, True = padding (writes nothing; output 0 before the
                output projection).
            state: causal only: memory `[B, H, head_dim, head_dim]` carried from earlier tokens.
            return_state: causal only: also return the memory after the last token.
            mode: override ``self.mode`` for this call.
        Returns:
            `[B, T, E]`, or ``(out, state)`` when ``return_state``.
        """
        x = self._check_x(x, "x", 3)
        B, T, _ = x.shape
        H, d = self.num_heads, self.head_dim
        q, k, v = self.qkv_proj(x).view(B, T, 3, H, d).unbind(2)
        g = {}
        if self.gate_proj is not None:
            probs = torch.sigmoid(self.gate_proj(x)).view(B, T, len(self.gates), H).unbind(2)
            g = dict(zip(self.gates, probs, strict=True))
        if not self.causal:
            if state is not None or return_state:
                raise ValueError("state/return_state: only causal NAMAttention carries a state")
            out = nam_attention(
                q, k, v, g.get("write"), g.get("read"), key_padding_mask=key_padding_mask
            )
        else:
            mode = self.mode if mode is None else mode
            if mode not in MODES:
                raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
            if mode == "auto":
                fast = x.dtype in (torch.float32, torch.float64) and T > 8
                mode = "chunk" if fast else "recurrent"
            kwargs = {"chunk_size": self.chunk_size} if mode == "chunk" else {}
            out, state = _CAUSAL_FNS[mode](
                q,
                k,
                v,
                g.get("write"),
                g.get("erase"),
                g.get("read"),
                initial_state=state,
                output_final_state=return_state,
                key_padding_mask=key_padding_mask,
                **kwargs,
            )
        out = self.out_proj(self.dropout(out.reshape(B, T, H * d)))
        return (out, state) if return_state else out

    def step(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One token of causal decoding: ``x_t`` `[B, E]` -> ``(out_t [B, E], new state)``."""
        if not self.causal:
            raise ValueError("step: only causal NAMAttention decodes token by token (causal=True)")
        x_t = self._check_x(x_t, "x_t", 2)
        out, state = self.forward(
            x_t.unsqueeze(1), state=state, return_state=True, mode="recurrent"
        )
        return out.squeeze(1), state
