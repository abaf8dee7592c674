"""Argument checks shared by the models."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..functional._validate import check_padding_mask as _check_padding_mask

__all__ = ["check_choice", "check_padding_mask", "check_tokens"]


#: ``padding_mask`` `[B, T]` bool (True = padding) or None (the functional layer's validator).
check_padding_mask = functools.partial(_check_padding_mask, name="padding_mask")


def check_tokens(tokens: object, padding_mask: object, vocab_size: int) -> Tensor | None:
    """The one token validator of the taggers: ``tokens`` `[B, T]` int64/int32 ids in
    ``[0, vocab_size)`` (B, T >= 1) and ``padding_mask`` `[B, T]` bool or None (returned)."""
    if not isinstance(tokens, Tensor):
        raise TypeError(f"tokens: expected a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"tokens: expected an int64/int32 tensor, got dtype {tokens.dtype}")
    if tokens.dim() != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(
            f"tokens: expected a non-empty [B, T] tensor, got shape {tuple(tokens.shape)}"
        )
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"tokens: expected ids in [0, {vocab_size}), got values in [{lo}, {hi}]")
    return check_padding_mask(padding_mask, tokens.shape[0], tokens.shape[1])


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; else ``ValueError`` naming ``name`` and the choices."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value  # type: ignore[return-value]
