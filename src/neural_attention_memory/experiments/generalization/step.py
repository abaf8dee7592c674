"""The training/evaluation step of the length-generalisation tasks: loss and metrics."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...tasks import algorithmic as alg
from ...training.spec import StepOutput

__all__ = ["TIE_BREAK", "compute"]

# Weight of the per-sample token accuracy in ``select``: below 1 / (samples in a split) for any split
# of fewer than 10,000 samples, so ``select`` orders epochs by sequence accuracy first.
TIE_BREAK = 1e-4


def compute(model: nn.Module, batch: Mapping[str, Tensor]) -> StepOutput:
    """Cross-entropy on the target positions (every real position with ``input_loss``); metrics,
    always on the target positions only, as ``(num, den)``.

    ``batch``: ``tokens`` ``[B, T]``, ``targets`` ``[B, T]`` (``IGNORE_INDEX`` off target),
    ``padding_mask`` ``[B, T]`` (True = padding). ``seq_acc`` (all target tokens right),
    ``tok_acc`` and ``select`` = ``seq_acc + TIE_BREAK * mean per-sample token accuracy``: the
    model-selection score. It ranks epochs by sequence accuracy exactly as the paper does and
    breaks ties (typically several epochs at 0% OD-easy) by token accuracy, instead of always
    keeping the first of the tied epochs.
    """
    tokens, targets, mask = batch["tokens"], batch["targets"], batch["padding_mask"]
    logits = model(tokens, mask)  # [B, T, C]
    valid = targets != alg.IGNORE_INDEX
    if "input_loss" in batch:
        # The authors' loss (data.input_loss): every real position, the input token itself off
        # the answer slots. The metrics below stay on the answer slots.
        real = ~mask
        goal = torch.where(valid, targets, tokens)
        loss = F.cross_entropy(logits[real], goal[real])
    else:
        loss = F.cross_entropy(logits[valid], targets[valid])
    with torch.no_grad():
        correct = (logits.argmax(-1) == targets) & valid
        seq_ok = (correct | ~valid).all(dim=1)
        n_tok = valid.sum()
        n_seq = torch.tensor(float(len(seq_ok)))
        per_sample = correct.sum(1).float() / valid.sum(1).clamp_min(1).float()
        metrics = {
            "seq_acc": (seq_ok.sum().float(), n_seq),
            "tok_acc": (correct.sum().float(), n_tok.float()),
            "select": (seq_ok.sum().float() + TIE_BREAK * per_sample.sum(), n_seq),
        }
    return StepOutput(loss=loss, metrics=metrics)
