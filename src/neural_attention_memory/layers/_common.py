"""Argument checks shared by the attention layers (one message format for every layer)."""

from __future__ import annotations

import functools

from torch import Tensor

from ..functional._validate import check_padding_mask as _check_padding_mask

__all__ = ["check_dims", "check_input", "check_padding_mask", "zero_padded"]


def check_dims(embed_dim: object, num_heads: object, head_dim: object) -> int:
    """Validate the layer sizes; return the per-head size."""
    for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name}: expected a positive int, got {val!r}")
    if head_dim is None:
        if embed_dim % num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of embed_dim={embed_dim} (or pass head_dim), "
                f"got {num_heads}"
            )
        return embed_dim // num_heads
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"head_dim: expected a positive int or None, got {head_dim!r}")
    return head_dim


def check_input(x: object, name: str, rank: int, embed_dim: int) -> Tensor:
    """``x`` must be a floating tensor `[B, T, E]` (rank 3) or `[B, E]` (rank 2), ``T >= 1``."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name}: expected a floating-point tensor, got {got}")
    if x.dim() != rank or x.shape[-1] != embed_dim:
        want = "[B, T, E]" if rank == 3 else "[B, E]"
        raise ValueError(
            f"{name}: expected shape {want} with E = {embed_dim}, got {tuple(x.shape)}"
        )
    if rank == 3 and x.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty sequence (T >= 1), got T = 0")
    return x


#: ``padding_mask`` `[B, T]` bool (True = padding) or None (the functional layer's validator).
check_padding_mask = functools.partial(_check_padding_mask, name="padding_mask")


def zero_padded(out: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the outputs `[B, T, ...]` at padded positions (mask `[B, T]`, True = padding)."""
    if mask is None:
        return out
    shape = mask.shape + (1,) * (out.dim() - 2)
    return out.masked_fill(mask.view(shape), 0.0)
