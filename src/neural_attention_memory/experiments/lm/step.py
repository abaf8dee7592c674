"""The training/evaluation step of the byte-level LM: cross-entropy and bits per byte.

Metrics (``(num, den)`` pairs summed over a split): ``bpb`` over every predicted byte, and in
evaluation ``bpb@A-B``: bits per byte of the bytes at positions ``A <= t < B`` of their window
(how well a model uses ``t`` bytes of context), for the buckets of :data:`BUCKETS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...training.spec import StepOutput

__all__ = ["BUCKETS", "compute"]

#: Context-position buckets of the evaluation metrics (window positions).
BUCKETS: tuple[tuple[int, int], ...] = ((0, 64), (64, 256), (256, 1024), (1024, 4096))


def compute(model: nn.Module, batch: Mapping[str, Tensor]) -> StepOutput:
    ids, labels = batch["input_ids"], batch["labels"]
    logits = model(ids).logits  # [B, T, V]
    nats = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # [B, T]
    loss = nats.mean()
    with torch.no_grad():
        bits = nats.detach() / math.log(2.0)
        metrics = {"bpb": (bits.sum(), torch.tensor(float(bits.numel())))}
        if not model.training:
            T = bits.shape[1]
            for lo, hi in BUCKETS:
                if lo < T:
                    part = bits[:, lo:hi]
                    metrics[f"bpb@{lo}-{hi}"] = (part.sum(), torch.tensor(float(part.numel())))
    return StepOutput(loss=loss, metrics=metrics)
