"""Test-time evaluation: every head on the same episodes, means with 95% confidence intervals,
the calibration-free offset sweep and the CI-aware verdict against the cosine head."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ...tasks.episodes import EpisodeDataset, GeneralizedEpisodeSampler
from .step import episode_metrics

__all__ = [
    "OFFSETS",
    "SUMMARY_METRICS",
    "equal_error_point",
    "evaluate_heads",
    "summarize",
    "verdict",
]

SUMMARY_METRICS = (
    "novel_acc",
    "base_acc",
    "joint_acc",
    "fp_base_to_novel",
    "fp_novel_to_base",
    "conf_base_right",
    "conf_base_wrong",
    "conf_base_cross",
    "conf_novel_right",
    "conf_novel_wrong",
    "conf_novel_cross",
)

#: Offsets added to the novel columns (in cosine units, i.e. scores / gamma) to trace each head's
#: trade-off between the two false-positive rates independently of its calibration.
OFFSETS = np.round(np.linspace(-0.3, 0.3, 61), 4)


def _ci95(x: np.ndarray) -> float:
    return float(1.96 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def summarize(per_episode: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """``{metric: {"mean": %, "ci95": %}}`` from per-episode rates (fractions)."""
    return {
        k: {"mean": 100.0 * float(np.mean(v)), "ci95": 100.0 * _ci95(np.asarray(v))}
        for k, v in per_episode.items()
    }


@torch.no_grad()
def evaluate_heads(
    heads: Mapping[str, nn.Module],
    features: Tensor,
    sampler: GeneralizedEpisodeSampler,
    offsets: np.ndarray = OFFSETS,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Every head on the same episodes.

    Returns:
        ``per_episode``: ``{head: {metric: [E]}}`` rates (fractions) of :data:`SUMMARY_METRICS`;
        ``curves``: ``{head: [len(offsets), 3]}`` mean ``(joint acc, FP b->n, FP n->b)`` in % when
        ``offset`` is added to every novel score (divided by ``gamma``).
    """
    out: dict[str, dict[str, list[float]]] = {h: {k: [] for k in SUMMARY_METRICS} for h in heads}
    curves = {h: np.zeros((len(offsets), 3)) for h in heads}
    delta = torch.as_tensor(np.asarray(offsets), dtype=features.dtype).unsqueeze(1)  # [O, 1]
    ds = EpisodeDataset(sampler, features)
    for i in range(len(ds)):
        ep = ds[i]
        labels, nov, nb = ep["query_labels"], ep["is_novel"], len(ep["base_ids"])
        for name, head in heads.items():
            head.eval()
            head.process_support_set(
                ep["support"], ep["support_labels"], base_ids=ep["base_ids"], n_way=ep["n_way"]
            )
            scores = head(ep["query"])
            head.reset_episode()
            m = episode_metrics(scores, labels, nov, nb)
            for k in SUMMARY_METRICS:
                num, den = m[k]
                out[name][k].append(float(num) / float(den) if int(den) else float("nan"))
            # Offset sweep: only the side (base / novel) of the prediction depends on the offset.
            s = scores / head.gamma
            b_max, b_arg = s[:, :nb].max(-1)
            n_max, n_arg = s[:, nb:].max(-1)
            pred_novel = n_max.unsqueeze(0) + delta > b_max.unsqueeze(0)  # [O, Q]
            right = torch.where(pred_novel, (n_arg + nb) == labels, b_arg == labels)
            curves[name] += np.stack(
                [
                    right.double().mean(1).numpy(),
                    pred_novel[:, ~nov].double().mean(1).numpy(),
                    (~pred_novel[:, nov]).double().mean(1).numpy(),
                ],
                1,
            )
    per_episode = {h: {k: np.asarray(v) for k, v in ms.items()} for h, ms in out.items()}
    return per_episode, {h: 100.0 * c / max(len(ds), 1) for h, c in curves.items()}


def equal_error_point(curve: np.ndarray, offsets: np.ndarray = OFFSETS) -> dict[str, float]:
    """Where FP b->n equals FP n->b on a curve from :func:`evaluate_heads` (linear interpolation).

    Returns ``{"offset", "fp", "joint_acc", "best_joint_acc", "best_offset"}`` (NaN when the two
    rates never cross inside the offset range).
    """
    diff = curve[:, 1] - curve[:, 2]  # increases with the offset
    best = int(np.argmax(curve[:, 0]))
    res = {
        "offset": float("nan"),
        "fp": float("nan"),
        "joint_acc": float("nan"),
        "best_joint_acc": float(curve[best, 0]),
        "best_offset": float(offsets[best]),
    }
    for j in range(len(diff) - 1):
        if diff[j] <= 0 <= diff[j + 1]:
            t = 0.0 if diff[j + 1] == diff[j] else -diff[j] / (diff[j + 1] - diff[j])
            lerp = curve[j] + t * (curve[j + 1] - curve[j])
            res.update(
                offset=float(offsets[j] + t * (offsets[j + 1] - offsets[j])),
                fp=float(lerp[1]),
                joint_acc=float(lerp[0]),
            )
            break
    return res


def verdict(diff: Mapping[str, Mapping[str, float]]) -> str:
    """Whether a head lowers both FP rates at equal or better joint accuracy than cosine (CI-aware)."""

    def lower(m: str) -> bool:  # significantly lower
        return diff[m]["mean"] + diff[m]["ci95"] < 0

    joint = diff["joint_acc"]
    joint_ok = joint["mean"] + joint["ci95"] >= 0  # not significantly worse
    both = lower("fp_base_to_novel") and lower("fp_novel_to_base")
    if both and joint_ok:
        return "yes: both FP rates lower, joint not worse"
    parts = []
    for m, label in (("fp_base_to_novel", "FP b→n"), ("fp_novel_to_base", "FP n→b")):
        if lower(m):
            parts.append(f"{label} lower")
        elif diff[m]["mean"] - diff[m]["ci95"] > 0:
            parts.append(f"{label} higher")
        else:
            parts.append(f"{label} n.s.")
    parts.append("joint not worse" if joint_ok else "joint worse")
    return "no: " + ", ".join(parts)
