"""Byte-level language modelling on the Python standard library's source (issue: a real-text
benchmark that downloads nothing).

Registers the task ``lm-pysource`` (``nam train lm-pysource --model nam``; models ``nam``,
``nam-tied``, ``linear``, ``softmax``: one :class:`~...models.lm.NAMForCausalLM`, only the
attention differs) and the reproducer ``nam reproduce lm`` (presets ``quick`` and ``medium``),
which trains every model for the same CPU time and reports bits per byte on held-out files, training
and decoding speed, and which attention wins at which context length. Pieces: :mod:`.data`,
:mod:`.models`, :mod:`.step`, :mod:`.presets`, :mod:`.report`; the data are
:mod:`...tasks.pysource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...training.spec import TaskSpec
from .. import reproducer
from ..registry import register_reproducer, register_task
from .data import build_datasets
from .models import MODELS, build_model, lm_config
from .presets import GRIDS, PRESETS
from .report import add_generation_speed, write_report
from .step import BUCKETS, compute

__all__ = [
    "BUCKETS",
    "FAMILY",
    "MODELS",
    "SPEC",
    "build_datasets",
    "build_model",
    "compute",
    "lm_config",
    "reproduce",
]

TASK = "lm-pysource"

SPEC = register_task(
    TaskSpec(
        name=TASK,
        family="lm",
        build_datasets=build_datasets,
        build_model=build_model,
        compute=compute,
        models=MODELS,
        presets={name: fn(TASK) for name, fn in PRESETS.items()},
        selection_metric="val/bpb",
        selection_mode="min",
        description="byte-level language modelling on the Python standard library's source files",
    )
)

FAMILY = reproducer.Family(
    name="lm",
    description="Byte-level LM on Python stdlib source: NAM vs NAM-tied vs linear vs softmax",
    tasks=(TASK,),
    models=MODELS,
    grids=GRIDS,
    write_report=write_report,
    after_runs=add_generation_speed,
)


def reproduce(
    preset: str = "quick",
    out_dir: str | Path = Path("nam_runs/lm"),
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    data_root: str | Path | None = None,
) -> Path:
    """Train the four attentions for equal CPU time and write ``<out_dir>/report.md``.

    See :func:`..reproducer.reproduce` for the arguments (this family reads no data root).
    """
    return reproducer.reproduce(
        FAMILY,
        preset,
        out_dir,
        tasks=tasks,
        models=models,
        overrides=overrides,
        seed=seed,
        data_root=data_root,
    )


register_reproducer("lm", reproduce, family_spec=FAMILY)
