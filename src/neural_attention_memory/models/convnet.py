"""A small convolutional feature extractor for few-shot image classification.

Blocks of ``conv3x3 -> BatchNorm -> ReLU -> MaxPool2`` followed by a global average pool, the
usual "ConvNet" family of the few-shot literature, sized so that stage 1 of the few-shot protocol
trains in minutes on a CPU at 32x32 pixels. Any input of at least ``2 ** len(widths)`` pixels works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ConvNet", "ConvNetConfig"]


@dataclass
class ConvNetConfig:
    """``in_channels`` (1 grey, 3 colour) and the output width of each block."""

    in_channels: int = 1
    widths: tuple[int, ...] = (32, 64, 64, 128)

    def __post_init__(self) -> None:
        if not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {self.in_channels!r}")
        widths = tuple(self.widths)
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(
                f"widths: expected a non-empty sequence of positive ints, got {self.widths!r}"
            )
        self.widths = widths


class ConvNet(nn.Module):
    """Images `[B, C, H, W]` -> features `[B, widths[-1]]` (``out_dim``)."""

    def __init__(self, config: ConvNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or ConvNetConfig()
        layers: list[nn.Module] = []
        c_in = self.config.in_channels
        for c_out in self.config.widths:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x: Tensor) -> Tensor:
        """`[B, C, H, W]` float images -> `[B, out_dim]` features."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(
                f"x: expected a floating-point tensor [B, C, H, W], got {type(x).__name__}"
            )
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"x: expected shape [B, {self.config.in_channels}, H, W], got {tuple(x.shape)}"
            )
        min_side = 2 ** len(self.config.widths)
        if min(x.shape[2:]) < min_side:
            raise ValueError(f"x: expected H, W >= {min_side}, got {tuple(x.shape[2:])}")
        return torch.flatten(self.blocks(x).mean(dim=(2, 3)), 1)
