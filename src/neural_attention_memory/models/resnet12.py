"""ResNet-12, the few-shot field's standard backbone (Oreshkin et al. 2018; Lee et al. 2019).

Four residual blocks; each is three ``conv3x3 -> BatchNorm -> LeakyReLU(0.1)`` layers (no
activation after the third BatchNorm) plus a ``conv1x1 -> BatchNorm`` shortcut, added, then
``LeakyReLU(0.1)`` and ``MaxPool2``; a global average pool gives the feature vector. The field uses
widths (64, 160, 320, 640) at 84 px (12 M parameters); the default here, (32, 64, 128, 256), keeps
the architecture and is sized so that stage 1 of the few-shot protocol trains in minutes per epoch
on one CPU thread at 32 px. Any input of at least 16 pixels works.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["ResNet12", "ResNet12Config"]


@dataclass
class ResNet12Config:
    """``in_channels`` (1 grey, 3 colour) and the output width of each of the 4 blocks."""

    in_channels: int = 1
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    negative_slope: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.in_channels, int) or self.in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {self.in_channels!r}")
        widths = tuple(self.widths)
        if len(widths) != 4 or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths: expected 4 positive ints, got {self.widths!r}")
        self.widths = widths  # type: ignore[assignment]
        if not 0.0 <= self.negative_slope < 1.0:
            raise ValueError(
                f"negative_slope: expected a float in [0, 1), got {self.negative_slope!r}"
            )


class ResidualBlock(nn.Module):
    """`[B, c_in, H, W]` -> `[B, c_out, H // 2, W // 2]`."""

    def __init__(self, c_in: int, c_out: int, negative_slope: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
            ]
            if i < 2:
                layers.append(nn.LeakyReLU(negative_slope))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.LeakyReLU(negative_slope)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.body(x) + self.shortcut(x)))


class ResNet12(nn.Module):
    """Images `[B, C, H, W]` -> features `[B, widths[-1]]` (``out_dim``)."""

    def __init__(self, config: ResNet12Config | None = None) -> None:
        super().__init__()
        self.config = config or ResNet12Config()
        c = self.config
        chans = (c.in_channels, *c.widths)
        self.blocks = nn.Sequential(
            *(ResidualBlock(chans[i], chans[i + 1], c.negative_slope) for i in range(4))
        )
        self.out_dim = c.widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, a=c.negative_slope, mode="fan_out", nonlinearity="leaky_relu"
                )

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
        if min(x.shape[2:]) < 16:
            raise ValueError(f"x: expected H, W >= 16, got {tuple(x.shape[2:])}")
        return self.blocks(x).mean(dim=(2, 3))
