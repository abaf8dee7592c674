"""Training/evaluation steps of the two stages and the generalised few-shot metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...training.spec import StepOutput

__all__ = ["MAIN_METRICS", "episode_metrics", "stage1_compute", "stage2_compute"]

#: The five metrics of the tables (stage-2 training logs these too).
MAIN_METRICS = ("novel_acc", "base_acc", "joint_acc", "fp_base_to_novel", "fp_novel_to_base")


def stage1_compute(model: nn.Module, batch: Any) -> StepOutput:
    """Cross-entropy over the base classes and accuracy ``acc``."""
    x, y = batch
    scores = model(x)
    loss = F.cross_entropy(scores, y)
    correct = (scores.argmax(-1) == y).sum()
    return StepOutput(loss=loss, metrics={"acc": (correct, torch.tensor(len(y)))})


def episode_metrics(
    scores: Tensor, labels: Tensor, is_novel: Tensor, n_base: int
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per-episode counts from joint scores `[Q, B' + N]`, joint labels `[Q]`, novel mask `[Q]`.

    Returns ``(numerator, denominator)`` pairs as 0-dim tensors under ``novel_acc``, ``base_acc``,
    ``joint_acc``, ``fp_base_to_novel`` and ``fp_novel_to_base``, plus the confusion counts
    ``conf_{base,novel}_{right,wrong,cross}`` (cross = predicted on the other side).
    """
    pred = scores.argmax(-1)
    nov, bas = is_novel, ~is_novel
    pred_novel = pred >= n_base
    novel_pred = scores[:, n_base:].argmax(-1) + n_base  # N-way among novel columns
    base_pred = scores[:, :n_base].argmax(-1) if n_base else pred
    one = torch.ones((), dtype=torch.long)
    out = {
        "novel_acc": ((novel_pred == labels)[nov].sum(), nov.sum()),
        "base_acc": ((base_pred == labels)[bas].sum(), bas.sum()),
        "joint_acc": ((pred == labels).sum(), one * len(labels)),
        "fp_base_to_novel": (pred_novel[bas].sum(), bas.sum()),
        "fp_novel_to_base": ((~pred_novel)[nov].sum(), nov.sum()),
    }
    right = pred == labels
    out["conf_base_right"] = (right[bas].sum(), bas.sum())
    out["conf_base_wrong"] = ((~right & ~pred_novel)[bas].sum(), bas.sum())
    out["conf_base_cross"] = out["fp_base_to_novel"]
    out["conf_novel_right"] = (right[nov].sum(), nov.sum())
    out["conf_novel_wrong"] = ((~right & pred_novel)[nov].sum(), nov.sum())
    out["conf_novel_cross"] = out["fp_novel_to_base"]
    return out


def stage2_compute(model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
    """Cross-entropy over base + novel columns of one episode (``support [S, d]``) or of a batch
    of equal-sized episodes (``support [E, S, d]``), and the :data:`MAIN_METRICS`."""
    process = (
        model.process_support_sets if batch["support"].dim() == 3 else model.process_support_set
    )
    process(
        batch["support"], batch["support_labels"], base_ids=batch["base_ids"], n_way=batch["n_way"]
    )
    scores = model(batch["query"])
    model.reset_episode()
    n_base = batch["base_ids"].shape[-1]
    scores, labels = scores.reshape(-1, scores.shape[-1]), batch["query_labels"].reshape(-1)
    loss = F.cross_entropy(scores, labels)
    m = episode_metrics(scores, labels, batch["is_novel"].reshape(-1), n_base)
    return StepOutput(loss=loss, metrics={k: m[k] for k in MAIN_METRICS})
