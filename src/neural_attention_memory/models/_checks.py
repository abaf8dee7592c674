"""Argument checks shared by the recurrent models."""

from __future__ import annotations

import torch
from torch import Tensor


def check_padding_mask(padding_mask: object, B: int, T: int) -> Tensor | None:
    """``padding_mask`` `[B, T]` bool (True = padding) or None; a clear error otherwise."""
    if padding_mask is None:
        return None
    if not isinstance(padding_mask, Tensor) or padding_mask.dtype != torch.bool:
        got = (
            padding_mask.dtype if isinstance(padding_mask, Tensor) else type(padding_mask).__name__
        )
        raise TypeError(f"padding_mask: expected a bool tensor [B, T] (True = padding), got {got}")
    if tuple(padding_mask.shape) != (B, T):
        raise ValueError(
            f"padding_mask: expected shape [B, T] = {(B, T)}, got {tuple(padding_mask.shape)}"
        )
    return padding_mask
