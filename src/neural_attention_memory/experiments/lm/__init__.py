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
from .schema import LMConfig
from .step import BUCKETS, compute

__all__ = [
    "BUCKETS",
    "FAMILY",
    "MODELS",
    "SPEC",
    "LMConfig",
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
        schema=LMConfig,
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
    data_root_key="data.root",
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
    report_only: bool = False,
) -> Path:
    """Train the four attentions for equal CPU time and write ``<out_dir>/report.md``.

    See :func:`..reproducer.reproduce` for the arguments; ``data_root`` is a standard-library folder
    to read instead of this interpreter's.
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
        report_only=report_only,
    )


register_reproducer(
    "lm",
    reproduce,
    description=FAMILY.description,
    models={
        "nam": "NAM attention with write, erase and read gates",
        "nam-tied": "NAM attention with erase tied to write (the delta rule)",
        "linear": "linear attention (elu + 1 features, normaliser)",
        "softmax": "softmax attention (key/value cache when decoding)",
    },
    presets={n: (f.__doc__ or "").strip().splitlines()[0] for n, f in PRESETS.items()},
    datasets={"pysource": "the running interpreter's standard-library .py files (no download)"},
    family_spec=FAMILY,
)
