"""Experiment 1 of the paper: zero-shot length generalisation (docs/paper.md §5, Table 2).

Registers one :class:`~...training.spec.TaskSpec` per task (``fib``, ``palin``, ``reduce``,
``dyck4``, ``copy``, ``repeat-copy``, ``scan``) and the reproducer ``nam reproduce generalization``.
The pieces: :mod:`.data` (splits), :mod:`.models` (taggers), :mod:`.step` (loss and metrics),
:mod:`.presets` (presets and grids), :mod:`.paper` (Table 2), :mod:`.curves` (accuracy vs length)
and :mod:`.report` (the Markdown report).

Every model is a per-position tagger over the one vocabulary of :mod:`...tasks.algorithmic`; the
loss is cross-entropy on the target positions only; metrics are ``seq_acc`` (a sample counts only
if every target token is right, the paper's metric) and ``tok_acc``. The reported epoch is the one
with the best OD-easy sequence accuracy (the paper's rule; SCAN, which has no OD-easy split, uses
``id``, a held-out set of short commands), ties broken by token accuracy (``select``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

from ...tasks import algorithmic as alg
from ...training.config import check_names
from ...training.spec import TaskSpec
from .. import reproducer
from ..registry import register_reproducer, register_task
from .curves import CURVE_FILE, length_curve, plot_length_curves
from .data import build_datasets, build_eval_dataset, train_schedule
from .models import MODEL_DESCRIPTIONS, MODELS, build_model
from .paper import MODEL_LABELS, PAPER_TABLE2, TASKS
from .presets import GRIDS, PAPER_GRID, PRESETS, QUICK_EPOCHS, QUICK_GRID
from .report import write_report
from .schema import GeneralizationConfig
from .step import TIE_BREAK, compute

__all__ = [
    "CURVE_FILE",
    "FAMILY",
    "MODELS",
    "MODEL_LABELS",
    "PAPER_GRID",
    "PAPER_TABLE2",
    "QUICK_EPOCHS",
    "QUICK_GRID",
    "TASKS",
    "TIE_BREAK",
    "build_datasets",
    "build_eval_dataset",
    "build_model",
    "compute",
    "length_curve",
    "make_spec",
    "plot_length_curves",
    "reproduce",
]

_DESCRIPTIONS = {
    "fib": "Fibonacci-like next term (digit-wise addition), little-endian",
    "palin": "reverse the digits",
    "reduce": "drop the zeros",
    "dyck4": "close the open brackets of a 4-type Dyck prefix",
    "copy": "copy the digits",
    "repeat-copy": "copy the digits twice",
    "scan": "SCAN length split, encoder-only",
}


def make_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of one task of the family."""
    check_names("task", [task], TASKS)
    return TaskSpec(
        name=task,
        family="generalization",
        build_datasets=build_datasets,
        build_model=build_model,
        compute=compute,
        models=MODELS,
        presets={name: fn(task) for name, fn in PRESETS.items()},
        collate_fn=alg.collate,
        selection_metric="id/select" if task == "scan" else "od_easy/select",
        selection_mode="max",
        schema=GeneralizationConfig,
        description=f"length generalisation: {_DESCRIPTIONS[task]}",
        build_eval_dataset=build_eval_dataset,
        train_schedule=train_schedule,
    )


for _task in TASKS:
    register_task(make_spec(_task))

FAMILY = reproducer.Family(
    name="generalization",
    description="zero-shot length generalisation (the paper's Table 2)",
    tasks=TASKS,
    models=MODELS,
    grids=GRIDS,
    write_report=write_report,
)


def reproduce(
    preset: str = "quick",
    out_dir: str | Path = Path("nam_runs/generalization"),
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    curve_count: int = 64,
    report_only: bool = False,
) -> Path:
    """Train every (task x model) pair of ``preset`` and write ``<out_dir>/report.md``.

    The grid is ``presets.GRIDS[preset]`` (``quick``: 4 tasks x {NAM-TM, LSAM, LSTM, TF};
    ``paper``: the paper's seven columns); ``tasks``/``models`` restrict it. Finished runs are
    skipped and interrupted ones resumed, so re-running continues a reproduction. The report holds
    our Table 2 beside the paper's, parameter counts, wall-clock per run, the quality bars, and one
    accuracy-vs-length PNG per task (``curve_count`` samples per length). The family generates all
    its data (no data root). ``report_only`` trains nothing and reports the finished runs in
    ``out_dir``. See :func:`..reproducer.reproduce` for the other arguments.
    """
    family = dataclasses.replace(
        FAMILY, write_report=functools.partial(write_report, curve_count=curve_count)
    )
    return reproducer.reproduce(
        family,
        preset,
        out_dir,
        tasks=tasks,
        models=models,
        overrides=overrides,
        seed=seed,
        report_only=report_only,
    )


register_reproducer(
    "generalization",
    reproduce,
    description=FAMILY.description,
    models=MODEL_DESCRIPTIONS,
    family_spec=FAMILY,
    presets={n: (f.__doc__ or "").strip().splitlines()[0] for n, f in PRESETS.items()},
    datasets={
        "algorithmic": "generated: fib, palin, reduce, dyck4, copy, repeat-copy (seeded)",
        "scan": "generated from the SCAN grammar, length split (seeded)",
    },
)
