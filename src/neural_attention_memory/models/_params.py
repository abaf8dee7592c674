"""Parameter counts: the one helper every layer of the package uses."""

from __future__ import annotations

from torch import nn

__all__ = ["count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``module``: the trainable ones (default) or all of them."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
