"""The one reproducer every experiment family runs on: grid -> runs (resumed) -> report.

A family (``generalization``, ``lra``, ``fewshot``, ``lm``) describes itself as a :class:`Family`:
its tasks and models, one grid of runs per preset (in its ``presets.py``), and a function that
turns the finished runs into the lines of its Markdown report. :func:`reproduce` does the rest, the
same way for every family:

1. :func:`plan_jobs`: validate the preset, tasks, models, seed and data root, and resolve every
   run's configuration (so a bad ``--set`` fails before any data is generated or any folder is
   written);
2. :func:`run_jobs`: train the jobs with :func:`.runner.run_grid` (finished runs are skipped,
   interrupted ones resume), run the family's ``after_runs`` hook (e.g. timing a training step, or
   the few-shot test episodes), write its report lines, append the runs that did not finish, and
   write ``<out_dir>/report.md`` atomically.

A family whose runs depend on each other (the few-shot protocol: stage 2 reads the stage-1 run)
plans its own jobs (all checked before anything is written) and hands them to :func:`run_jobs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.config import ConfigError, check_names, resolve_config
from . import runner
from .registry import get_task
from .report import write_markdown

__all__ = ["Family", "ReportContext", "plan_jobs", "reproduce", "run_jobs"]


@dataclass(frozen=True)
class ReportContext:
    """What a family's report writer gets.

    Attributes:
        preset: the preset that was run.
        out_dir: the reproduction folder (plots go here, beside ``report.md``).
        tasks: the tasks of the grid, in order.
        models: every model of the grid, in order of first appearance.
        results: one dict per run (``results.json`` plus ``run_dir``; failed runs have
            ``status == "failed"`` and ``error``), in grid order.
        elapsed_s: wall-clock seconds of the training, as measured after it.
        extra: what ``after_runs`` computed for the report (e.g. test-episode results).
    """

    preset: str
    out_dir: Path
    tasks: list[str]
    models: list[str]
    results: list[dict[str, Any]]
    elapsed_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") == "finished"]


@dataclass(frozen=True)
class Family:
    """An experiment family as the shared reproducer sees it.

    Attributes:
        name: ``nam reproduce <name>``.
        description: one line for ``nam list`` and ``--help``.
        tasks: every task of the family (registered task names).
        models: every model the family's tasks accept.
        grids: preset name -> ``{task: models}``, the runs ``reproduce`` trains by default. Every
            preset the family's tasks define has a grid (tested).
        write_report: ``fn(ctx) -> list of Markdown lines`` (the shared writer appends the runs
            that did not finish).
        default_tasks: ``fn(preset, data_root) -> tasks`` when no ``tasks`` are given (default:
            the preset's grid), e.g. only the tasks whose user files are present.
        after_runs: ``fn(ctx)`` called after training, before the report (may add keys to
            ``ctx.results``).
        data_root_key: the config key that ``data_root`` sets (``None``: the family generates all
            its data and ``data_root`` is an error).
        keep_going: a failed run is reported and the others go on (``False``: the first failure
            stops the reproduction, for families whose runs depend on each other).
    """

    name: str
    description: str
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    grids: Mapping[str, Mapping[str, Sequence[str]]]
    write_report: Callable[[ReportContext], list[str]]
    default_tasks: Callable[[str, str | None], Sequence[str]] | None = None
    after_runs: Callable[[ReportContext], None] | None = None
    data_root_key: str | None = None
    keep_going: bool = True

    @property
    def presets(self) -> tuple[str, ...]:
        return tuple(self.grids)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _has_key(config: Mapping[str, Any], dotted: str) -> bool:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def plan_jobs(
    family: Family,
    preset: str,
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    data_root: str | Path | None = None,
) -> list[runner.Job]:
    """The validated jobs of a reproduction; every job's configuration is resolved (checked)."""
    check_names("preset", [preset], family.presets)
    grid = {t: tuple(ms) for t, ms in family.grids[preset].items()}
    grid_models = _unique([m for ms in grid.values() for m in ms])
    if tasks is None:
        tasks = (
            family.default_tasks(preset, None if data_root is None else str(data_root))
            if family.default_tasks is not None
            else list(grid)
        )
        if not tasks:
            raise ConfigError(f"tasks: no task of the {family.name} family can run here")
    tasks = _unique(check_names("tasks", tasks, family.tasks))
    if models is not None:
        models = _unique(check_names("models", models, family.models))
    extra = [str(o) for o in overrides]
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed: expected an integer, got {seed!r}")
        extra.append(f"seed={seed}")
    if data_root is not None and family.data_root_key is None:
        raise ConfigError(
            f"data_root: the {family.name} family generates all its data and reads no "
            f"data root (got {str(data_root)!r})"
        )
    jobs = []
    for t in tasks:
        job_extra = list(extra)
        spec = get_task(t)
        if data_root is not None and _has_key(spec.presets[preset], str(family.data_root_key)):
            job_extra.append(f"{family.data_root_key}={data_root}")
        for m in models if models is not None else grid.get(t, grid_models):
            job = runner.Job(task=t, model=m, preset=preset, overrides=tuple(job_extra))
            # Typed config check before anything is generated or written.
            resolve_config(spec, job.preset, job.overrides, model=job.model)
            jobs.append(job)
    return jobs


def reproduce(
    family: Family,
    preset: str,
    out_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    data_root: str | Path | None = None,
    report_only: bool = False,
) -> Path:
    """Train ``family``'s grid for ``preset`` and write ``<out_dir>/report.md``.

    Args:
        family: the family.
        preset: one of ``family.presets``.
        out_dir: reproduction folder: ``<task>/<model>/`` run folders, ``grid.json``, plots and
            ``report.md``.
        tasks: restrict the grid to these tasks (default: the preset's grid, or
            ``family.default_tasks``).
        models: train these models on every task (default: the grid's models per task).
        overrides: ``KEY=VALUE`` applied to every run (see :func:`~..training.resolve_config`).
        seed: the seed of every run (default: the preset's).
        data_root: folder of user-provided data (families that read any); set as
            ``family.data_root_key`` in the runs of the tasks that have that key.
        report_only: train nothing: write the report over the runs already finished in
            ``out_dir`` (the others are listed as not run). Every job is still checked.

    Returns:
        The path of ``report.md``.

    Raises:
        ConfigError: unknown preset, task, model or key, a bad value, or a run folder that holds
            a different configuration; raised before anything is trained or written.
    """
    jobs = plan_jobs(
        family,
        preset,
        tasks=tasks,
        models=models,
        overrides=overrides,
        seed=seed,
        data_root=data_root,
    )
    return run_jobs(family, preset, jobs, out_dir, train=not report_only)


def run_jobs(
    family: Family,
    preset: str,
    jobs: Sequence[runner.Job],
    out_dir: str | Path,
    *,
    train: bool = True,
) -> Path:
    """Train planned ``jobs`` (skipping finished runs, resuming others) and write the report.

    ``train=False`` trains nothing and reports the finished runs (:func:`.runner.run_grid`).
    Returns the path of ``<out_dir>/report.md``; ``<out_dir>/grid.json`` lists every job.
    """
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    results = runner.run_grid(
        jobs,
        out_dir,
        keep_going=family.keep_going,
        log=lambda msg: print(f"[{family.name}] {msg}", flush=True),
        train=train,
    )
    ctx = ReportContext(
        preset=preset,
        out_dir=out_dir,
        tasks=_unique([j.task for j in jobs]),
        models=_unique([j.model for j in jobs]),
        results=results,
        elapsed_s=time.perf_counter() - t0,
    )
    if family.after_runs is not None:
        family.after_runs(ctx)
    lines = list(family.write_report(ctx))
    failed = [r for r in results if r.get("status") != "finished"]
    if failed:
        lines += ["## Runs that did not finish", ""]
        lines += [f"- {r.get('task')}/{r.get('model')}: {r.get('error')}" for r in failed]
        lines.append("")
    return write_markdown(out_dir / "report.md", "\n".join(lines))
