"""The training/evaluation step of the LRA tasks: cross-entropy and accuracy."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...training.spec import StepOutput

__all__ = ["compute"]


def compute(model: nn.Module, batch: Mapping[str, Tensor]) -> StepOutput:
    """Cross-entropy and accuracy ``acc`` as ``(num, den)`` for single and paired inputs."""
    if "tokens1" in batch:
        logits = model(batch["tokens1"], batch["mask1"], batch["tokens2"], batch["mask2"])
    else:
        logits = model(batch["tokens"], batch["padding_mask"])
    y = batch["label"]
    loss = F.cross_entropy(logits, y)
    with torch.no_grad():
        correct = (logits.argmax(-1) == y).sum().float()
    return StepOutput(loss=loss, metrics={"acc": (correct, torch.tensor(float(len(y))))})
