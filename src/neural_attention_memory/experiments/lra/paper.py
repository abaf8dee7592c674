"""The paper's published numbers and labels for the Long Range Arena experiment.

Table 1 of Nam & Seo (docs/paper.md §7): accuracy (%) and training speedup relative to the
softmax Transformer; the original LRA benchmark's accuracies are kept beside it for reference.
"""

from __future__ import annotations

__all__ = ["LRA_ORIGINAL", "MODEL_LABELS", "NUM_CLASSES", "PAPER_TABLE1", "TASKS", "TASK_LABELS"]

MODEL_LABELS: dict[str, str] = {
    "softmax-transformer": "Transformer",
    "linear-transformer": "Linear Transformer",
    "nam-transformer": "NAM Transformer",
}
TASKS: tuple[str, ...] = (
    "lra-listops",
    "lra-text",
    "lra-retrieval",
    "lra-image",
    "lra-pathfinder32",
)
TASK_LABELS = {
    "lra-listops": "ListOps",
    "lra-text": "Text",
    "lra-retrieval": "Retrieval",
    "lra-image": "Image",
    "lra-pathfinder32": "Pathfinder",
}
NUM_CLASSES = {
    "lra-listops": 10,
    "lra-text": 2,
    "lra-retrieval": 2,
    "lra-image": 10,
    "lra-pathfinder32": 2,
}

# Table 1 of the paper: (accuracy %, training speedup vs Transformer); Retrieval and Pathfinder
# are not in it. The original LRA paper's accuracies are kept beside it for reference.
PAPER_TABLE1: dict[tuple[str, str], tuple[float, float]] = {
    ("softmax-transformer", "lra-listops"): (29.75, 1.0),
    ("softmax-transformer", "lra-text"): (57.28, 1.0),
    ("softmax-transformer", "lra-image"): (40.16, 1.0),
    ("linear-transformer", "lra-listops"): (36.5, 2.59),
    ("linear-transformer", "lra-text"): (64.27, 2.35),
    ("linear-transformer", "lra-image"): (38.76, 10.02),
    ("nam-transformer", "lra-listops"): (36.1, 2.66),
    ("nam-transformer", "lra-text"): (63.49, 2.44),
    ("nam-transformer", "lra-image"): (37.18, 10.07),
}
LRA_ORIGINAL: dict[tuple[str, str], float] = {
    ("softmax-transformer", "lra-listops"): 36.37,
    ("softmax-transformer", "lra-text"): 64.27,
    ("softmax-transformer", "lra-retrieval"): 57.46,
    ("softmax-transformer", "lra-image"): 42.44,
    ("softmax-transformer", "lra-pathfinder32"): 71.40,
    ("linear-transformer", "lra-listops"): 16.13,
    ("linear-transformer", "lra-text"): 65.90,
    ("linear-transformer", "lra-retrieval"): 53.09,
    ("linear-transformer", "lra-image"): 42.34,
    ("linear-transformer", "lra-pathfinder32"): 75.30,
}
