"""Experiment 3 of the paper: Long Range Arena with the NAM Transformer (docs/paper.md §7, Table 1).

Registers the tasks ``lra-listops``, ``lra-pathfinder32``, ``lra-text``, ``lra-retrieval`` and
``lra-image``, each trainable with ``nam-transformer``, ``softmax-transformer`` and
``linear-transformer`` (one encoder, :mod:`...models.transformer`; only the attention differs, all
other settings are identical), and the reproducer ``nam reproduce lra``. The pieces: :mod:`.data`,
:mod:`.models`, :mod:`.step`, :mod:`.presets`, :mod:`.paper`, :mod:`.timing` (training-step time)
and :mod:`.report`.

Metric: accuracy ``acc``; the reported epoch is the one with the best ``val/acc``, and the table
shows ``test/acc`` at that epoch. Training speed is compared as the time of one training step on
the same batches relative to the softmax Transformer, the paper's "speedup" column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...tasks.lra import collate_pairs, collate_tokens
from ...training.config import check_names
from ...training.spec import TaskSpec
from .. import reproducer
from ..registry import register_reproducer, register_task
from .data import build_datasets, data_available, train_schedule
from .models import MODEL_DESCRIPTIONS, MODELS, build_model
from .paper import LRA_ORIGINAL, MODEL_LABELS, PAPER_TABLE1, TASK_LABELS, TASKS
from .presets import GRIDS, PRESETS
from .report import add_step_times, write_report
from .schema import LRAConfig
from .step import compute
from .timing import STEP_FILE, compare_step_times, step_time_ms

__all__ = [
    "FAMILY",
    "LRA_ORIGINAL",
    "MODELS",
    "MODEL_LABELS",
    "PAPER_TABLE1",
    "STEP_FILE",
    "TASKS",
    "TASK_LABELS",
    "build_datasets",
    "build_model",
    "compare_step_times",
    "compute",
    "data_available",
    "make_spec",
    "reproduce",
    "step_time_ms",
    "train_schedule",
]

_DESCRIPTIONS = {
    "lra-listops": "ListOps: value of a nested MIN/MAX/MED/SM expression (10 classes), generated",
    "lra-pathfinder32": "Pathfinder 32x32: are the two dots joined by a dashed contour, generated",
    "lra-text": "IMDB sentiment at byte level (files under data.root)",
    "lra-retrieval": "AAN citation pairs at byte level, dual encoder (files under data.root)",
    "lra-image": "CIFAR-10 as 1,024 grey-level tokens (files under data.root)",
}


def make_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of one LRA task."""
    check_names("task", [task], TASKS)
    return TaskSpec(
        name=task,
        family="lra",
        build_datasets=build_datasets,
        build_model=build_model,
        compute=compute,
        models=tuple(MODELS),
        presets={name: fn(task) for name, fn in PRESETS.items()},
        collate_fn=collate_pairs if task == "lra-retrieval" else collate_tokens,
        selection_metric="val/acc",
        selection_mode="max",
        schema=LRAConfig,
        train_schedule=train_schedule,
        description=f"Long Range Arena — {_DESCRIPTIONS[task]}",
    )


for _task in TASKS:
    register_task(make_spec(_task))


def _available_tasks(preset: str, root: str | None) -> list[str]:
    """The preset's tasks whose data is here: generated ones, and user sets whose files exist."""
    probe = {"root": root} if root else {}
    return [t for t in GRIDS[preset] if data_available(t, probe)]


FAMILY = reproducer.Family(
    name="lra",
    description="Long Range Arena: NAM vs softmax vs linear attention (the paper's Table 1)",
    tasks=TASKS,
    models=tuple(MODELS),
    grids=GRIDS,
    write_report=write_report,
    default_tasks=_available_tasks,
    after_runs=add_step_times,
    data_root_key="data.root",
)


def reproduce(
    preset: str = "quick",
    out_dir: str | Path = Path("nam_runs/lra"),
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    data_root: str | Path | None = None,
    report_only: bool = False,
) -> Path:
    """Train NAM, softmax and linear encoders on the LRA tasks and write ``<out_dir>/report.md``.

    By default the tasks are ListOps and Pathfinder-32 (generated) plus every task whose files are
    present under ``data_root`` (default: the data root, see :mod:`.data`); finished runs are
    skipped and interrupted ones resumed. The report holds Table 1's layout (accuracy and speedup
    vs softmax, ours (paper)), per-run details and one accuracy-vs-training-time PNG per task.
    See :func:`..reproducer.reproduce` for the arguments.
    """
    # A `data.root=...` override is the data root (only the user-provided tasks have the key).
    roots = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("data.root=")]
    if roots:
        data_root = roots[-1] if data_root is None else data_root
        overrides = [o for o in overrides if not o.lstrip("+").startswith("data.root=")]
    return reproducer.reproduce(
        FAMILY,
        preset,
        out_dir,
        tasks=tasks,
        models=models,
        overrides=overrides,
        seed=seed,
        data_root=data_root,
        report_only=report_only,
    )


register_reproducer(
    "lra",
    reproduce,
    description=FAMILY.description,
    models=MODEL_DESCRIPTIONS,
    family_spec=FAMILY,
    presets={n: (f.__doc__ or "").strip().splitlines()[0] for n, f in PRESETS.items()},
    datasets={
        "listops": "generated (seeded, cached); or the LRA release under data.release",
        "pathfinder32": "generated (seeded, cached); or the LRA release under data.release",
        "imdb": "user files: <data root>/aclImdb/ or <data root>/imdb/{train,test}.tsv",
        "aan": "user files: <data root>/tsv_data/new_aan_pairs.{train,eval,test}.tsv",
        "cifar10": "user files: <data root>/cifar-10-batches-py/",
    },
)
