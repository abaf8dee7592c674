"""``nam reproduce`` helpers: option lists, the family's keyword arguments, ``--dry-run`` and the
family-specific ``--help`` (built from the experiment registry)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import typer

__all__ = ["dry_run", "family_help", "names", "reproducer_kwargs"]


def names(values: Sequence[str]) -> list[str] | None:
    """``("fib,scan", "reduce")`` -> ``["fib", "scan", "reduce"]``; nothing given -> ``None``."""
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return out or None


def reproducer_kwargs(info: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``info.reproduce`` (and ``info.plan``) from the CLI options; an
    option the family does not take is a user error."""
    from .training import ConfigError

    params = inspect.signature(info.reproduce).parameters
    kwargs: dict[str, Any] = {"preset": options["preset"], "out_dir": options["out_dir"]}
    overrides = list(options["overrides"])
    for name in ("tasks", "models", "seed", "data_root", "shots", "datasets"):
        value = options.get(name)
        if value is None:
            continue
        if name in params:
            kwargs[name] = value
        elif name == "seed":
            overrides.append(f"seed={value}")
        else:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag}: the {info.name} family does not take this option")
    if options.get("report_only"):
        if "report_only" not in params:
            raise ConfigError(
                f"--report-only: the {info.name} family does not support it (its runs depend "
                "on each other); run it without --report-only"
            )
        kwargs["report_only"] = True
    if "overrides" in params:
        kwargs["overrides"] = tuple(overrides)
    elif overrides:
        raise ConfigError(f"--set/--seed: the {info.name} family takes no config overrides")
    return kwargs


def dry_run(info: Any, kwargs: dict[str, Any]) -> None:
    """Plan (and so check) every run of a reproduction and list them; nothing is trained."""
    from .experiments.runner import job_run_dir
    from .training import ConfigError

    if info.plan is None:
        raise ConfigError(f"--dry-run: the {info.name} family does not support it")
    planned = info.plan(**{k: v for k, v in kwargs.items() if k != "report_only"})
    jobs = list(getattr(planned, "jobs", planned))
    typer.echo(f"{len(jobs)} runs into {kwargs['out_dir']} (checked; nothing trained):")
    for job in jobs:
        typer.echo(f"  {job_run_dir(job, '')}")


def family_help(info: Any) -> str:
    """``nam reproduce FAMILY --help``: the family's options, tasks, models, presets, data sets."""
    from .experiments.registry import get_task, list_tasks

    params = inspect.signature(info.reproduce).parameters
    opts = [("-p, --preset NAME", "preset (default quick): " + ", ".join(info.presets))]
    if "tasks" in params:
        opts.append(("-t, --tasks A,B", "tasks (default: the preset's grid)"))
    if "models" in params:
        opts.append(("-m, --models A,B", "models (default: the preset's grid)"))
    opts += [
        ("-s, --set KEY=VALUE", info.set_help or "config override for every run (repeatable)"),
        ("--seed N", "seed of every run"),
        ("--out DIR", f"output folder (default nam_runs/{info.name}-<preset>); re-run to resume"),
        ("--dry-run", "check everything and list the runs; train nothing"),
    ]
    if "report_only" in params:
        opts.append(("--report-only", "write the report over the finished runs; train nothing"))
    if "data_root" in params:
        opts.append(("--data-root DIR", "folder of the user-provided data sets"))
    if "shots" in params:
        opts.append(("--shots K,K", "K of the K-shot settings, e.g. 1,5"))
    if "datasets" in params:
        opts.append(("--datasets A,B", "data sets: " + ", ".join(info.datasets)))

    def block(title: str, rows: Sequence[tuple[str, str]]) -> list[str]:
        width = max((len(n) for n, _ in rows), default=0)
        return ["", f"{title}:", *(f"  {n.ljust(width)}  {t}".rstrip() for n, t in rows)]

    lines = [
        f"Usage: nam reproduce {info.name} [OPTIONS]",
        "",
        f"  {info.description}.",
        "  Trains the grid (finished runs are skipped, interrupted ones resume) and writes",
        "  <out>/report.md with the paper's numbers beside ours.",
    ]
    lines += block("Options", opts)
    lines += block("Tasks", [(t, get_task(t).description) for t in list_tasks(info.name)])
    lines += block("Models", list(info.models.items()))
    lines += block("Presets", list(info.presets.items()))
    if info.datasets:
        lines += block("Data sets", list(info.datasets.items()))
    return "\n".join(lines)
