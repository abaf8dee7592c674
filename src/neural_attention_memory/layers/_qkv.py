"""The part :class:`LinearAttention` and :class:`SoftmaxAttention` share: the fused q/k/v and output
projections, their argument checks, and the forward preamble/epilogue around the attention kernel."""

from __future__ import annotations

from torch import Tensor, nn

from ._common import check_input, check_padding_mask, zero_padded

__all__ = ["QKVAttention", "check_dropout"]


def check_dropout(name: str, p: object) -> None:
    """A dropout probability must be a float in ``[0, 1)``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected a float in [0, 1), got {p!r}")


class QKVAttention(nn.Module):
    """Private base: ``qkv_proj`` `[E -> 3 H d]`, ``out_proj`` `[H d -> E]`, ``dropout``.

    Subclasses name themselves (``_layer_name``) and their state class (``_state_cls``) for the
    error messages, and implement ``_check_state_shape(state, B)``.
    """

    _layer_name: str
    _state_cls: type

    def _init_qkv(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int,
        causal: bool,
        dropout: float,
        bias: bool,
    ) -> None:
        check_dropout("dropout", dropout)
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.causal = causal
        inner = num_heads * head_dim
        self.qkv_proj = nn.Linear(embed_dim, 3 * inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"causal={self.causal}"
        )

    def _state_factory(self, message: str, device=None, dtype=None) -> dict:
        """The init_state preamble: raise ``message`` unless causal; default device/dtype."""
        if not self.causal:
            raise NotImplementedError(message)
        w = self.qkv_proj.weight
        return {"device": device or w.device, "dtype": dtype or w.dtype}

    def _check_state(self, state: object, B: int):
        if state is None:
            return None
        if not self.causal:
            raise ValueError(f"state: only causal {self._layer_name} carries a state, got a state")
        if not isinstance(state, self._state_cls):
            raise TypeError(
                f"state: expected a {self._state_cls.__name__}, got {type(state).__name__}"
            )
        self._check_state_shape(state, B)
        return state

    def _check_state_shape(self, state, B: int) -> None:
        raise NotImplementedError

    def _qkv(self, x: Tensor, state: object, padding_mask: Tensor | None):
        """Checks and projects ``x`` `[B, T, E]` -> ``(q, k, v [B, T, H, d], padding_mask, state)``."""
        x = check_input(x, "x", 3, self.embed_dim)
        B, T, _ = x.shape
        padding_mask = check_padding_mask(padding_mask, B, T)
        state = self._check_state(state, B)
        q, k, v = self.qkv_proj(x).view(B, T, 3, self.num_heads, self.head_dim).unbind(2)
        return q, k, v, padding_mask, state

    def _out(self, out: Tensor, padding_mask: Tensor | None) -> Tensor:
        """``out`` `[B, T, H, d]` -> `[B, T, E]`: dropout, output projection, zero at padding."""
        B, T = out.shape[:2]
        out = self.out_proj(self.dropout(out.reshape(B, T, self.num_heads * self.head_dim)))
        return zero_padded(out, padding_mask)

    def _step(self, x_t: Tensor, state: object, message: str, **kwargs):
        """One token through ``forward``: ``x_t`` `[B, E]` -> ``(out_t [B, E], state)``."""
        if not self.causal:
            raise NotImplementedError(message)
        x_t = check_input(x_t, "x_t", 2, self.embed_dim)
        out, state = self.forward(x_t.unsqueeze(1), state, **kwargs)
        return out.squeeze(1), state
