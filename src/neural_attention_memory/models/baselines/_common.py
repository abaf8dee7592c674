"""Input checks and small helpers shared by the baseline taggers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["check_tokens", "count_parameters"]


def check_tokens(tokens: object, padding_mask: object, vocab_size: int) -> Tensor | None:
    """Validate ``tokens`` `[B, T]` (integer ids < ``vocab_size``) and ``padding_mask`` `[B, T]`."""
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dim() != 2:
        got = (
            f"{tokens.dtype} {tuple(tokens.shape)}"
            if isinstance(tokens, Tensor)
            else type(tokens).__name__
        )
        raise ValueError(f"tokens: expected an integer tensor [B, T], got {got}")
    if tokens.shape[1] == 0:
        raise ValueError("tokens: expected a non-empty sequence (T >= 1), got T = 0")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(
            f"tokens: expected ids in [0, {vocab_size}), got range "
            f"[{int(tokens.min())}, {int(tokens.max())}]"
        )
    if padding_mask is None:
        return None
    if not isinstance(padding_mask, Tensor) or padding_mask.dtype.is_floating_point:
        raise TypeError(
            f"padding_mask: expected a bool tensor [B, T] (True = padding), got "
            f"{padding_mask.dtype if isinstance(padding_mask, Tensor) else type(padding_mask).__name__}"
        )
    if padding_mask.dtype != torch.bool:
        raise TypeError(f"padding_mask: expected dtype torch.bool, got {padding_mask.dtype}")
    if padding_mask.shape != tokens.shape:
        raise ValueError(
            f"padding_mask: expected shape {tuple(tokens.shape)} (as tokens), got "
            f"{tuple(padding_mask.shape)}"
        )
    return padding_mask


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
