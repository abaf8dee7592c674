"""Input checks and small helpers shared by the baseline taggers."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ...layers._common import zero_padded
from .._checks import check_tokens
from .._params import count_parameters

__all__ = ["check_h_state", "check_tokens", "count_parameters", "keep_where", "run_steps"]


def keep_where(pad: Tensor, old: NamedTuple, new: NamedTuple) -> NamedTuple:
    """Per sequence: the old state where ``pad`` `[B]` is True, else the new one."""
    parts = []
    for o, n in zip(old, new, strict=True):
        m = pad.view(-1, *([1] * (n.dim() - 1)))
        parts.append(torch.where(m, o, n))
    return type(new)(*parts)


def check_h_state(state: object, state_cls: type, B: int, hidden: int):
    """A recurrent core's state must be a ``state_cls`` whose ``h`` is `[B, hidden]`."""
    if not isinstance(state, state_cls):
        raise TypeError(f"state: expected a {state_cls.__name__}, got {type(state).__name__}")
    if state.h.shape != (B, hidden):
        raise ValueError(f"state: expected h of shape {(B, hidden)}, got {tuple(state.h.shape)}")
    return state


def run_steps(
    step: Callable[[Tensor, NamedTuple], tuple[Tensor, NamedTuple]],
    x: Tensor,
    state: NamedTuple,
    padding_mask: Tensor | None,
) -> tuple[Tensor, NamedTuple]:
    """Run ``step`` over ``x`` `[B, T, ...]`; a padded step keeps the state and outputs 0."""
    outs = []
    for t in range(x.shape[1]):
        y, new = step(x[:, t], state)
        if padding_mask is not None:
            new = keep_where(padding_mask[:, t], state, new)
        state = new
        outs.append(y)
    return zero_padded(torch.stack(outs, dim=1), padding_mask), state
