"""``nam reproduce fewshot``: the two-stage protocol on the shared reproducer.

:func:`plan_fewshot` checks every option and resolves every run's configuration before anything
is written: per data set one stage-1 job (``runs/<data set>/stage1/``, unless a finished or stopped
stage-1 run is given) and one stage-2 job per (head, shots) (``runs/<data set>/stage2/``, reading
the stage-1 run's cached features). :func:`reproduce_fewshot` hands the jobs to
:func:`..reproducer.run_jobs` (finished runs skipped, interrupted ones resumed), then
:func:`evaluate_all` scores every head on the same test episodes (``runs/<data set>/test_<K>shot.json``
and ``results.json``) and :mod:`.report` writes ``report.md`` and the plots.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...training.config import ConfigError, check_names, resolve_config
from ...training.rundir import atomic_write_text, read_config, read_results
from .. import reproducer
from ..registry import get_task
from ..runner import Job, job_run_dir
from .data import DATASETS, RENDERED, episode_sampler, load_fewshot_data
from .evaluate import OFFSETS, SUMMARY_METRICS, equal_error_point, evaluate_heads, summarize
from .features import stage1_features
from .models import HEADS, erase_ablation, load_head
from .paper import STAGE1, STAGE2, TASKS, TEST_SEED
from .presets import GRIDS, PRESET_DEFAULTS, dataset_overrides
from .report import report_lines, trained_from

__all__ = ["FAMILY", "FewShotPlan", "overrides_for", "plan_fewshot", "reproduce_fewshot"]

DEFAULT_OUT = "nam_runs/fewshot-quick"


@dataclasses.dataclass(frozen=True)
class DataSetPlan:
    """One data set of a reproduction: its stage-1 run (trained here or given) and its heads."""

    name: str
    backbone: str
    stage1_dir: Path  # resolved
    stage1_given: dict[str, Any] | None  # results of a given stage-1 run
    stage2: dict[tuple[str, int], Job]  # (head, shots) -> job


@dataclasses.dataclass(frozen=True)
class FewShotPlan:
    """The checked plan of a reproduction: jobs in training order plus what the test needs."""

    preset: str
    out_dir: Path
    shots: tuple[int, ...]
    heads: tuple[str, ...]
    ablate_erase: tuple[float, ...]
    test_episodes: int
    datasets: tuple[DataSetPlan, ...]
    jobs: tuple[Job, ...]


def overrides_for(task: str, overrides: Sequence[str]) -> list[str]:
    """``stage1:key=value`` / ``stage2:key=value`` go to one stage; plain ``key=value`` to both."""
    out = []
    for o in overrides:
        if o.startswith("stage1:"):
            if task == STAGE1:
                out.append(o[len("stage1:") :])
        elif o.startswith("stage2:"):
            if task == STAGE2:
                out.append(o[len("stage2:") :])
        else:
            out.append(o)
    return out


def _given_stage1(run_dir: str | os.PathLike[str], ds_name: str) -> dict[str, Any]:
    """Results of a user-given stage-1 run folder (finished or stopped), checked for the data set."""
    run_dir = Path(run_dir)
    res = read_results(run_dir)
    if res is None or not (run_dir / "checkpoints" / "best.ckpt").is_file():
        raise ConfigError(
            f"stage1_runs: expected a {STAGE1} run folder with results.json and "
            f"checkpoints/best.ckpt for {ds_name}, got {run_dir}"
        )
    dataset = read_config(run_dir)["data"].get("dataset")
    if res.get("task") != STAGE1 or dataset != ds_name:
        raise ConfigError(
            f"stage1_runs: {run_dir} is a {res.get('task')} run on {dataset!r}, expected a "
            f"{STAGE1} run on {ds_name!r}"
        )
    return {**res, "run_dir": str(run_dir)}


def _roots(
    datasets: Sequence[str] | None,
    data_root: str | os.PathLike[str] | None,
    miniimagenet: str | None,
    omniglot: str | None,
) -> dict[str, str | None]:
    """Data set -> folder (``None`` for the rendered sets), in the order they run."""
    under: dict[str, str | None] = {"miniimagenet": None, "omniglot": None}
    if data_root is not None:
        root = Path(data_root)
        if not root.is_dir():
            raise ConfigError(f"data_root: expected a folder, got {str(root)!r} (no such folder)")
        under = {d: str(root / d) if (root / d).is_dir() else None for d in under}
        if datasets is None and not any(under.values()):
            raise ConfigError(
                f"data_root: expected miniimagenet/ or omniglot/ under {str(root)!r}, found neither"
            )
    roots: dict[str, str | None] = {
        "glyphs": None,
        "miniimagenet": miniimagenet
        or under["miniimagenet"]
        or os.environ.get("NAM_MINIIMAGENET_DIR"),
        "omniglot": omniglot or under["omniglot"] or os.environ.get("NAM_OMNIGLOT_DIR"),
    }
    if datasets is None:  # the glyphs, plus the user sets whose folders are known
        return {d: r for d, r in roots.items() if d in RENDERED or r}
    datasets = check_names("datasets", datasets, DATASETS)
    missing = [d for d in datasets if d not in RENDERED and not roots[d]]
    if missing:
        raise ConfigError(
            f"datasets: {missing} requested but no folder given (--data-root DIR holding "
            f"{'/, '.join(missing)}/, or $NAM_MINIIMAGENET_DIR / $NAM_OMNIGLOT_DIR)"
        )
    return {d: roots.get(d) for d in dict.fromkeys(datasets)}


def plan_fewshot(
    preset: str = "quick",
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    shots: Sequence[int] = (1, 5),
    models: Sequence[str] | None = None,
    test_episodes: int | None = None,
    ablate_erase: Sequence[float] | None = None,
    datasets: Sequence[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    miniimagenet: str | None = None,
    omniglot: str | None = None,
    stage1_runs: Mapping[str, str | os.PathLike[str]] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
) -> FewShotPlan:
    """Check the options of :func:`reproduce_fewshot` and plan its jobs; writes nothing.

    Raises:
        ConfigError: an unknown preset, head, data set or key, a bad value, a missing data folder
            or font package, or a given stage-1 run that does not fit.
    """
    preset = check_names("preset", [preset], PRESET_DEFAULTS)[0]
    defaults = PRESET_DEFAULTS[preset]
    heads = tuple(check_names("models", defaults["heads"] if models is None else models, HEADS))
    heads = tuple(dict.fromkeys(heads))
    shots = tuple(shots)
    if not shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in shots):
        raise ConfigError(f"shots: expected integers >= 1, got {shots!r}")
    ablate = tuple(defaults["ablate_erase"] if ablate_erase is None else ablate_erase)
    if any(not 0.0 <= float(p) < 1.0 for p in ablate):
        raise ConfigError(f"ablate_erase: expected probabilities in [0, 1), got {ablate!r}")
    episodes = int(defaults["test_episodes"]) if test_episodes is None else test_episodes
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"test_episodes: expected an integer >= 1, got {test_episodes!r}")
    extra = [str(o) for o in overrides]
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed: expected an integer >= 0, got {seed!r}")
        extra.append(f"seed={seed}")
    roots = _roots(datasets, data_root, miniimagenet, omniglot)
    given = dict(stage1_runs or {})
    if given:
        check_names("stage1_runs", list(given), list(roots))
    if "noto" in roots:
        from ...tasks.noto import find_noto_fonts

        find_noto_fonts()  # a missing font package fails here, before anything is written
    out_dir = Path(out_dir)
    plans, jobs = [], []
    for ds_name, root in roots.items():
        ds_over, ds_over2 = dataset_overrides(ds_name, root, preset)
        s1_given = _given_stage1(given[ds_name], ds_name) if ds_name in given else None
        if s1_given is not None:
            backbone = str(s1_given["model"])
            s1_dir = Path(s1_given["run_dir"]).resolve()
        else:
            backbone = defaults.get("backbone", {}).get(ds_name, "convnet")
            s1_job = Job(
                STAGE1,
                backbone,
                preset,
                (*ds_over, *overrides_for(STAGE1, extra)),
                folder=f"runs/{ds_name}/stage1",
            )
            jobs.append(s1_job)
            s1_dir = job_run_dir(s1_job, out_dir).resolve()
        stage2 = {}
        for k in shots:
            for h in heads:
                stage2[(h, k)] = Job(
                    STAGE2,
                    h,
                    preset,
                    (
                        f"data.stage1_run={s1_dir}",
                        f"data.k_shot={k}",
                        *ds_over2,
                        *overrides_for(STAGE2, extra),
                    ),
                    name=f"{h}_{k}shot",
                    folder=f"runs/{ds_name}/stage2",
                )
        jobs += stage2.values()
        plans.append(DataSetPlan(ds_name, backbone, s1_dir, s1_given, stage2))
    for job in jobs:  # typed config check before anything is generated or written
        try:
            cfg = resolve_config(get_task(job.task), job.preset, job.overrides, model=job.model)
        except ConfigError as err:
            raise ConfigError(
                f"{err} (in {job.task}; KEY=VALUE goes to both stages, "
                "stage1:KEY=VALUE or stage2:KEY=VALUE to one)"
            ) from None
        if job.task == STAGE1 and cfg["data"]["dataset"] not in RENDERED:
            # Read the user's files now (cached for the run): missing data stops before writing.
            try:
                load_fewshot_data(cfg["data"])
            except (OSError, ValueError) as err:
                raise ConfigError(f"data_root: {cfg['data']['dataset']}: {err}") from None
    return FewShotPlan(preset, out_dir, shots, heads, ablate, episodes, tuple(plans), tuple(jobs))


def _stage1_summary(ds: DataSetPlan, by_dir: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    s1 = ds.stage1_given if ds.stage1_given is not None else by_dir[str(ds.stage1_dir)]
    return {
        "run_dir": str(ds.stage1_dir),
        "backbone": ds.backbone,
        "val_acc": s1["splits"].get("val", {}).get("acc"),
        "selected_epoch": s1.get("selected_epoch"),
        "epochs": s1.get("epochs_completed"),
        "max_epochs": s1.get("max_epochs"),
        "status": s1.get("status"),
        "wall_clock_s": s1.get("wall_clock_s"),
    }


def _test_setting(
    plan: FewShotPlan, ds: DataSetPlan, k: int, feats: torch.Tensor, data: Any
) -> dict[str, Any]:
    """Every head of one (data set, shots) on the same test episodes, with the ablations."""
    run_dirs = {h: job_run_dir(ds.stage2[(h, k)], plan.out_dir) for h in plan.heads}
    cfg = read_config(run_dirs[plan.heads[0]])
    sampler = episode_sampler(data, cfg["data"], "test", TEST_SEED, plan.test_episodes)
    trained = {h: load_head(run_dirs[h]) for h in plan.heads}
    nam_heads = [h for h in plan.heads if h.startswith("nam")]
    for h in nam_heads:
        for p_e in plan.ablate_erase:
            trained[f"{h}_pe{p_e:g}"] = erase_ablation(trained[h], p_e)
    print(f"[fewshot] {ds.name}: evaluating {k}-shot on {plan.test_episodes} test episodes")
    per_ep, curves = evaluate_heads(trained, feats, sampler)
    setting: dict[str, Any] = {
        "heads": {
            h: {
                "summary": summarize(per_ep[h]),
                "run_dir": str(run_dirs[trained_from(h)]),
                "tradeoff": equal_error_point(curves[h]),
                "curve": np.round(curves[h], 3).tolist(),
            }
            for h in trained
        },
        "offsets": OFFSETS.tolist(),
    }
    keys = F.normalize(feats[torch.from_numpy(data.indices("novel"))], dim=-1)
    gates = {}
    for h in nam_heads:
        with torch.no_grad():
            p_w, p_e = trained[h].gates(keys)
        gates[h] = {
            "p_w": [float(p_w.mean()), float(p_w.std())],
            "p_e": [float(p_e.mean()), float(p_e.std())],
        }
    setting["gates_on_novel"] = gates
    if "nam" in gates:
        setting["nam_gates_on_novel"] = gates["nam"]
    if "cosine" in plan.heads:
        setting["minus_cosine"] = {
            h: summarize({m: per_ep[h][m] - per_ep["cosine"][m] for m in SUMMARY_METRICS[:5]})
            for h in trained
            if h != "cosine"
        }
        if "nam" in trained:
            setting["nam_minus_cosine"] = setting["minus_cosine"]["nam"]
    return setting


def evaluate_all(plan: FewShotPlan, started: float, ctx: reproducer.ReportContext) -> None:
    """After training: the test of every data set and shots; writes ``runs/<ds>/test_<K>shot.json``
    and ``results.json`` and puts the results in ``ctx.extra["results"]`` for the report."""
    by_dir = {r["run_dir"]: r for r in ctx.results}
    by_dir.update({str(Path(d).resolve()): r for d, r in by_dir.items()})
    results: dict[str, Any] = {"preset": plan.preset, "datasets": {}}
    for ds in plan.datasets:
        ds_res: dict[str, Any] = {"stage1": _stage1_summary(ds, by_dir), "settings": {}}
        feats = stage1_features(ds.stage1_dir)
        data = load_fewshot_data(read_config(ds.stage1_dir)["data"])
        ds_res["classes"] = {s: len(v) for s, v in data.class_split.items()}
        for k in plan.shots:
            setting = _test_setting(plan, ds, k, feats, data)
            path = plan.out_dir / "runs" / ds.name / f"test_{k}shot.json"
            atomic_write_text(path, json.dumps(setting, indent=2))
            ds_res["settings"][f"{k}shot"] = setting
        results["datasets"][ds.name] = ds_res
    results["wall_clock_s"] = time.perf_counter() - started
    results["test_episodes"] = plan.test_episodes
    atomic_write_text(plan.out_dir / "results.json", json.dumps(results, indent=2))
    ctx.extra["results"] = results


def write_report(ctx: reproducer.ReportContext) -> list[str]:
    """The report's lines from ``ctx.extra["results"]`` (or ``results.json``), with the plots."""
    results = ctx.extra.get("results")
    if results is None:
        results = json.loads((ctx.out_dir / "results.json").read_text())
    return report_lines(results, ctx.out_dir)


#: The family as the shared reproducer sees it; :func:`reproduce_fewshot` adds the test
#: (``after_runs``) of its plan. Runs depend on each other, so the first failure stops it.
FAMILY = reproducer.Family(
    name="fewshot",
    description="generalised 5-way K-shot: cosine vs NAM heads (paper §6), false positives both ways",
    tasks=TASKS,
    models=HEADS,
    grids=GRIDS,
    write_report=write_report,
    keep_going=False,
)


def reproduce_fewshot(
    preset: str = "quick",
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    *,
    shots: Sequence[int] = (1, 5),
    models: Sequence[str] | None = None,
    test_episodes: int | None = None,
    ablate_erase: Sequence[float] | None = None,
    datasets: Sequence[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    miniimagenet: str | None = None,
    omniglot: str | None = None,
    stage1_runs: Mapping[str, str | os.PathLike[str]] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
) -> Path:
    """Run the few-shot protocol and write ``<out_dir>/report.md`` (plus JSON and PNG plots).

    Args:
        preset: ``quick``, ``medium`` or ``paper`` (:mod:`.presets`).
        out_dir: reproduction folder; re-running continues where it stopped (finished runs are
            reused, interrupted ones resume).
        shots: K of the N-way K-shot settings.
        models: the stage-2 heads (default per preset; ``cosine`` is the reference of the paired
            differences).
        test_episodes: test episodes per setting (default per preset).
        ablate_erase: for each ``p_e``, every trained NAM head is also evaluated with its erase
            gate fixed at ``p_e`` (no retraining), as head ``<head>_pe<p_e>``.
        datasets: some of ``glyphs``, ``noto``, ``miniimagenet``, ``omniglot``, in this order
            (default: the glyphs plus the user sets whose folders are known; Noto only when named).
        data_root: folder holding ``miniimagenet/`` and/or ``omniglot/``.
        miniimagenet, omniglot: the data sets' folders (default: under ``data_root``, else
            ``$NAM_MINIIMAGENET_DIR`` / ``$NAM_OMNIGLOT_DIR``).
        stage1_runs: ``{data set: run folder}`` reuses an existing stage-1 run (finished or
            stopped: its selected checkpoint) instead of training one; the report states its
            epochs.
        overrides: ``KEY=VALUE`` for both stages, or ``stage1:KEY=VALUE`` / ``stage2:KEY=VALUE``
            for one.
        seed: the seed of every run (default: the preset's).

    Raises:
        ConfigError: see :func:`plan_fewshot`; raised before anything is written.
    """
    started = time.perf_counter()
    plan = plan_fewshot(
        preset,
        out_dir,
        shots=shots,
        models=models,
        test_episodes=test_episodes,
        ablate_erase=ablate_erase,
        datasets=datasets,
        data_root=data_root,
        miniimagenet=miniimagenet,
        omniglot=omniglot,
        stage1_runs=stage1_runs,
        overrides=overrides,
        seed=seed,
    )
    family = dataclasses.replace(FAMILY, after_runs=functools.partial(evaluate_all, plan, started))
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    return reproducer.run_jobs(family, preset, plan.jobs, plan.out_dir)
