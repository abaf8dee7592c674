"""The few-shot protocol's names and the paper's reference numbers (docs/paper.md §6)."""

from __future__ import annotations

__all__ = ["PAPER_REFERENCE", "STAGE1", "STAGE2", "TASKS", "TEST_SEED"]

#: Task names: stage 1 (backbone + cosine classifier), stage 2 (a head on frozen features).
STAGE1, STAGE2 = "fewshot_stage1", "fewshot_stage2"
TASKS = (STAGE1, STAGE2)

#: Seed of the test episodes: the same episodes for every head and run (paired comparisons).
TEST_SEED = 2026

#: Gidaris & Komodakis (2018), cosine classifier + attention-based weight generator, ResNet
#: backbone, mini-ImageNet 5-way, as restated in docs/paper.md §6: ``{shots: {metric: %}}``.
PAPER_REFERENCE = {
    1: {"novel_acc": 56.21, "base_acc": 79.79, "joint_acc": 52.81},
    5: {"novel_acc": 70.64, "base_acc": 79.56, "joint_acc": 59.48},
}
