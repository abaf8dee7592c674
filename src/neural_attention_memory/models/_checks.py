"""Argument checks shared by the recurrent models."""

from __future__ import annotations

import functools

from ..functional._validate import check_padding_mask as _check_padding_mask

__all__ = ["check_padding_mask"]


#: ``padding_mask`` `[B, T]` bool (True = padding) or None (the functional layer's validator).
check_padding_mask = functools.partial(_check_padding_mask, name="padding_mask")
