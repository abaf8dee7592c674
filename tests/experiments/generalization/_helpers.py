"""Shared set-up of the length-generalisation tests: tiny algorithmic splits, a fixed model."""

import torch
from torch import nn

#: ``--set`` overrides that shrink every split of an algorithmic task to a few problems.
TINY_SPLITS = [
    "data.splits.train.count=96",
    "data.splits.id.count=16",
    "data.splits.od_easy.count=16",
    "data.splits.od_hard.count=16",
    "data.splits.test.count=16",
    "data.splits.od_hard.digits=[12, 12]",
    "data.splits.test.digits=[13, 13]",
]


class FixedLogits(nn.Module):
    """A "model" that returns the same logits whatever it is given (tests of the step)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(
        self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.logits
