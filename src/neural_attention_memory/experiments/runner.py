"""Train a grid of (task, model, preset, overrides) jobs, resuming whatever was interrupted.

Each job gets its own run directory ``<out_dir>/<folder>/<task>/<name>`` (``folder`` defaults to
nothing, ``name`` to the model).
A run whose ``results.json`` says ``finished`` (with as many epochs as asked for) is skipped; any
other is resumed from its last checkpoint (or started). So re-running an interrupted
``nam reproduce`` picks up where it stopped and ends with the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.config import ENGINE_DEFAULTS, ConfigError, deep_merge, resolve_config
from ..training.engine import LAST_CKPT, fit
from ..training.rundir import atomic_write_json, read_config, read_results, to_jsonable
from ..training.spec import TaskSpec

__all__ = ["Job", "job_run_dir", "run_grid"]

# Keys that may differ between a stored run and a resumed job without changing its results.
_RESUMABLE_DIFFS = {("trainer", "max_epochs"), ("trainer", "progress_bar")}


@dataclass(frozen=True)
class Job:
    """One training run of a grid.

    Attributes:
        task: registered task name.
        model: one of the task's models.
        preset: preset name (``"quick"``, ``"paper"``).
        overrides: ``"a.b=value"`` strings applied after the preset.
        name: run folder name under ``<out_dir>/<folder>/<task>`` (default: the model name); set
            it when one grid trains the same model twice (e.g. an ablation).
        folder: relative folder that groups runs inside ``out_dir`` (e.g. ``runs/noto/stage1``
            for one data set's stage of the few-shot protocol); default: none.
    """

    task: str
    model: str
    preset: str = "quick"
    overrides: tuple[str, ...] = field(default_factory=tuple)
    name: str | None = None
    folder: str = ""

    @property
    def run_name(self) -> str:
        return self.name or self.model


def job_run_dir(job: Job, out_dir: str | Path) -> Path:
    """``<out_dir>/<folder>/<task>/<name>``."""
    return Path(out_dir) / job.folder / job.task / job.run_name


def _diff_keys(a: Any, b: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), (*prefix, str(k)))
        return out
    return [] if a == b else [prefix]


def _not_run(job: Job, prev: Mapping[str, Any] | None, max_epochs: int) -> dict[str, Any]:
    """The result of a job that ``train=False`` left alone: where it stands, without training."""
    if prev is None:
        why = "not trained (report only)"
    else:
        why = (
            f"unfinished: {prev.get('epochs_completed', 0)} of {max_epochs} epochs "
            "(report only; run without it to resume)"
        )
    return {
        "task": job.task,
        "model": job.model,
        "preset": job.preset,
        "status": "not run",
        "error": why,
        "skipped": True,
    }


def run_grid(
    jobs: Iterable[Job],
    out_dir: str | Path,
    *,
    keep_going: bool = False,
    get_spec: Callable[[str], TaskSpec] | None = None,
    log: Callable[[str], None] | None = print,
    config_hook: Callable[[Job, dict[str, Any]], dict[str, Any]] | None = None,
    train: bool = True,
) -> list[dict[str, Any]]:
    """Train every job (skipping finished runs, resuming unfinished ones); return their results.

    Args:
        jobs: the grid.
        out_dir: root folder; also receives ``grid.json`` (status of every job, updated as it goes).
        keep_going: a job that raises is recorded as ``failed`` (with the error) and the grid goes
            on; without it the error propagates (after ``grid.json`` is updated).
        get_spec: task lookup (default: :func:`~.registry.get_task`).
        log: one-line progress messages (``None``: silent).
        config_hook: ``fn(job, config) -> config`` applied to each resolved config (e.g. to set
            a tape length that depends on the task).
        train: ``False``: train nothing; a job that has not finished is returned with
            ``status == "not run"`` (and why in ``error``), for a report over the runs that exist.

    Returns:
        One dict per job, in order: the run's ``results.json`` content plus ``run_dir``,
        ``job_name`` and ``skipped`` (``True`` when it was already finished). A failed job (with
        ``keep_going``) gives ``{"task", "model", "status": "failed", "error", "run_dir", ...}``;
        an unfinished one with ``train=False``, the same with ``"status": "not run"``.

    Raises:
        ConfigError: a run folder holds a run whose configuration differs from the job's (other
            than ``trainer.max_epochs``); delete it or pick another ``out_dir``.
    """
    if get_spec is None:
        from .registry import get_task as get_spec
    out_dir = Path(out_dir)
    jobs = list(jobs)
    names = [(j.folder, j.task, j.run_name) for j in jobs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"jobs: two jobs share a run folder {dupes}; give them distinct names")
    summary: list[dict[str, Any]] = []
    all_results: list[dict[str, Any]] = []
    for i, job in enumerate(jobs):
        run_dir = job_run_dir(job, out_dir)
        tag = f"[{i + 1}/{len(jobs)}] {job_run_dir(job, '')}"
        t0 = time.perf_counter()
        try:
            spec = get_spec(job.task)
            cfg = resolve_config(spec, job.preset, job.overrides, model=job.model)
            if config_hook is not None:
                cfg = config_hook(job, cfg)
            prev = read_results(run_dir)
            done = (
                prev is not None
                and prev.get("status") == "finished"
                and prev.get("epochs_completed", 0) >= cfg["trainer"]["max_epochs"]
            )
            if (run_dir / LAST_CKPT).exists() or done:
                # Engine keys added since the run was written take their defaults.
                stored = deep_merge(ENGINE_DEFAULTS, read_config(run_dir))
                diff = _diff_keys(stored, to_jsonable(cfg))
                diff = [d for d in diff if d not in _RESUMABLE_DIFFS]
                if diff:
                    keys = ", ".join(".".join(d) for d in diff)
                    raise ConfigError(
                        f"{run_dir} holds a run with a different configuration ({keys}); "
                        "delete it or choose another output folder"
                    )
            if done:
                assert prev is not None
                res = dict(prev)
                res["skipped"] = True
                if log:
                    log(f"{tag}: finished earlier, skipped")
            elif not train:
                res = _not_run(job, prev, cfg["trainer"]["max_epochs"])
                if log:
                    log(f"{tag}: {res['error']}")
            else:
                resuming = (run_dir / LAST_CKPT).exists()
                if log:
                    log(f"{tag}: {'resuming' if resuming else 'training'} -> {run_dir}")
                res = fit(spec, cfg, run_dir, resume=True)
                res["skipped"] = False
        except ConfigError:
            raise
        except Exception as err:
            if not keep_going:
                summary.append({"task": job.task, "name": job.run_name, "status": "failed"})
                atomic_write_json(out_dir / "grid.json", {"jobs": summary})
                raise
            res = {
                "task": job.task,
                "model": job.model,
                "preset": job.preset,
                "status": "failed",
                "error": f"{type(err).__name__}: {err}",
                "skipped": False,
            }
            if log:
                log(f"{tag}: FAILED ({res['error']})")
        res["run_dir"] = str(run_dir)
        res["job_name"] = job.run_name
        res.setdefault("wall_clock_s", time.perf_counter() - t0)
        all_results.append(res)
        summary.append(
            {
                "task": job.task,
                "name": job.run_name,
                "model": job.model,
                "preset": job.preset,
                "overrides": list(job.overrides),
                "status": res.get("status"),
                "run_dir": str(run_dir),
                "wall_clock_s": res.get("wall_clock_s"),
                "error": res.get("error"),
            }
        )
        atomic_write_json(out_dir / "grid.json", {"jobs": summary})
    return all_results
