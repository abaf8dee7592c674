"""The ``nam`` command line: parses arguments, then calls training / experiments / bench.

Every user error (unknown name, bad ``--set`` value, missing data, a run folder in use, a
read-only or full disk) is one line on stderr and exit code 2, raised before anything is written.
``nam reproduce <family>`` is a group whose sub-commands are built from the experiment registry,
so each family's ``--help`` lists its own tasks, models, presets and options.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

import typer

app = typer.Typer(
    name="nam",
    help="Neural Attention Memory: benchmarks, training runs and the paper's experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: Exception | str) -> None:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


# OS errors that are the user's environment, not a bug: reported in one line, exit 2.
_USER_OS_ERRORS = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT}


def _user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's to fix (bad value, missing file, disk) rather than a bug."""
    from .training import ConfigError

    if isinstance(err, (ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return True
    if isinstance(err, OSError) and err.errno in _USER_OS_ERRORS:
        return True
    return type(err).__name__ in ("MissingDataError", "RunLockedError")


@app.command()
def bench(
    name: str = typer.Argument(..., help="Benchmark: attention, mann, lra."),
    quick: bool = typer.Option(False, "--quick", help="Reduced sweep (about a minute)."),
    out: Path = typer.Option(Path("bench_results"), "--out", help="Folder for the JSON and PNG."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch.set_num_threads for the run."),
) -> None:
    """Time NAM against named peers; writes <out>/<name>.json and <name>.png."""
    from .bench.registry import get_benchmark

    try:
        fn = get_benchmark(name)
    except ValueError as err:
        _fail(err)
    fn(quick=quick, out_dir=out, threads=threads)


@app.command()
def demo(
    out: Path = typer.Option(Path("nam_runs/demo"), "--out", help="Folder for the demo's outputs."),
) -> None:
    """A short, convincing demonstration on the CPU (what `make demo` runs)."""
    from .experiments.demo import run_demo

    run_demo(out_dir=out)


# --------------------------------------------------------------------------- training (engine)
def _parse_extra_options(args: list[str]) -> dict[str, object]:
    """``["--digits", "17-22", "--x=1"]`` -> ``{"digits": "17-22", "x": 1}`` (YAML-parsed values)."""
    import yaml

    opts: dict[str, object] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise ValueError(f"options: expected --NAME VALUE task options, got {arg!r}")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ValueError(f"options: --{name} needs a value")
            value = args[i + 1]
            i += 1
        opts[name.replace("-", "_")] = yaml.safe_load(value) if value else ""
        i += 1
    return opts


def _default_run_dir(runs_root: Path, task: str, model: str, preset: str) -> Path:
    import datetime as dt

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = runs_root / task / f"{model}-{preset}-{stamp}"
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = runs_root / task / f"{model}-{preset}-{stamp}-{k}"
    return run_dir


@app.command()
def train(
    task: str = typer.Argument(None, help="Task name (omit with --resume)."),
    model: str = typer.Option(None, "--model", "-m", help="Model name (one of the task's models)."),
    preset: str = typer.Option(
        None,
        "--preset",
        "-p",
        help="Preset (default quick); `nam reproduce FAMILY --help` lists them.",
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Config override KEY=VALUE (repeatable), e.g. optim.lr=1e-3."
    ),
    runs_root: Path = typer.Option(Path("nam_runs"), "--runs-root", help="Parent of new runs."),
    run_dir: Path = typer.Option(None, "--run-dir", help="Exact run folder (default: generated)."),
    resume: Path = typer.Option(None, "--resume", help="Continue the run in this folder."),
    max_epochs: int = typer.Option(None, "--max-epochs", min=1, help="Set trainer.max_epochs."),
    seed: int = typer.Option(None, "--seed", help="Set the seed."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Show a progress bar."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch.set_num_threads."),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the resolved config (YAML) and exit; trains nothing."
    ),
) -> None:
    """Train a model on a task; writes a run folder and prints the results table."""
    from .experiments.registry import get_task, list_tasks
    from .experiments.report import results_table
    from .training import apply_overrides, fit, read_config, resolve_config
    from .training.config import check_run_config

    extra = list(overrides)
    if max_epochs is not None:
        extra.append(f"trainer.max_epochs={max_epochs}")
    if seed is not None:
        extra.append(f"seed={seed}")
    if progress is not None:
        extra.append(f"trainer.progress_bar={str(progress).lower()}")
    try:
        if resume is not None:
            if run_dir is not None and Path(run_dir) != Path(resume):
                raise ValueError(f"--run-dir {run_dir} and --resume {resume}: give only one folder")
            cfg = read_config(resume)
            if task is not None and task != cfg.get("task"):
                raise ValueError(
                    f"task: {resume} holds a run of task {cfg.get('task')!r}, not {task!r}"
                )
            if preset is not None and preset != cfg.get("preset"):
                raise ValueError(
                    f"--preset: {resume} holds a run of preset {cfg.get('preset')!r}, not {preset!r}"
                )
            if model is not None and model != cfg["model"]["name"]:
                raise ValueError(
                    f"--model: {resume} holds a run of model {cfg['model']['name']!r}, not {model!r}"
                )
            spec = get_task(cfg["task"])
            cfg = check_run_config(spec, apply_overrides(cfg, extra, spec.schema), cfg)
            target = Path(resume)
        else:
            if task is None:
                raise ValueError(
                    "task: missing; give a task name or --resume RUN_DIR; "
                    f"valid choices: {', '.join(list_tasks())}"
                )
            spec = get_task(task)
            preset = preset or "quick"
            cfg = resolve_config(spec, preset, extra, model=model)
            target = run_dir or _default_run_dir(runs_root, spec.name, cfg["model"]["name"], preset)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    if print_config:
        import yaml

        from .training.rundir import to_jsonable

        typer.echo(yaml.safe_dump(to_jsonable(cfg), sort_keys=False).rstrip())
        return
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    typer.echo(f"run directory: {target}")
    try:
        res = fit(spec, cfg, target, resume=resume is not None)
    except Exception as err:
        if not _user_error(err):
            raise
        _fail(err)
    typer.echo("")
    typer.echo(results_table([res]))
    typer.echo(
        f"selected epoch {res['selected_epoch']} by {res['selection']['metric']} "
        f"({res['selection']['mode']}); results in {target / 'results.json'}"
    )


@app.command()
def results(
    paths: list[Path] = typer.Argument(..., help="Run folders, or folders holding run folders."),
    split: list[str] = typer.Option([], "--split", help="Only these splits (repeatable)."),
) -> None:
    """Print the results table of finished and running runs (e.g. while a reproduce runs)."""
    from .experiments.report import results_table
    from .training import read_results

    found = []
    for path in paths:
        files = [path / "results.json"] if (path / "results.json").is_file() else []
        files = files or sorted(path.rglob("results.json"))
        if not files:
            _fail(FileNotFoundError(f"paths: no results.json in or under {path}"))
        found += [f.parent for f in files]
    rows = [r for r in (read_results(d) for d in found) if r is not None]
    typer.echo(results_table(rows, splits=split or None, status=True))


@app.command(
    "eval",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def eval_(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(..., help="A run folder written by `nam train`."),
    split: list[str] = typer.Option([], "--split", help="Split to evaluate (repeatable)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last or a .ckpt path."),
    out: Path = typer.Option(None, "--out", help="Also write the metrics to this JSON file."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Evaluation batch size."),
) -> None:
    """Evaluate a trained run on its splits or on task options (e.g. --digits 17-22)."""
    from .experiments.registry import get_task
    from .experiments.report import format_value, markdown_table
    from .training import atomic_write_json, evaluate, read_config

    try:
        options = _parse_extra_options(list(ctx.args))
        spec = get_task(str(read_config(run_dir).get("task")))
        metrics = evaluate(
            run_dir,
            spec=spec,
            splits=split or None,
            options=options or None,
            checkpoint=checkpoint,
            progress_bar=False,
            batch_size=batch_size,
        )
    except (ValueError, FileNotFoundError) as err:
        # ConfigError, an unknown task in the run's config, or options the task rejects.
        _fail(err)
    names: list[str] = []
    for vals in metrics.values():
        names += [m for m in vals if m not in names and m != "loss"]
    names.append("loss")
    rows = [
        [
            name,
            *(
                format_value(
                    vals.get(m), ".4f" if m == "loss" else ".1f", 1.0 if m == "loss" else 100.0
                )
                for m in names
            ),
        ]
        for name, vals in metrics.items()
    ]
    typer.echo(markdown_table(["Split", *names], rows))
    if out is not None:
        atomic_write_json(
            out, {"run_dir": str(run_dir), "checkpoint": checkpoint, "metrics": metrics}
        )


@app.command()
def plot(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders of length-generalisation tasks."),
    out: Path = typer.Option(Path("accuracy_vs_length.png"), "--out", help="PNG file to write."),
    metric: str = typer.Option("seq_acc", "--metric", help="seq_acc or tok_acc."),
    count: int = typer.Option(128, "--count", min=1, help="Samples per length."),
) -> None:
    """Plot accuracy vs length (digits; SCAN: actions) for one or several runs into one PNG."""
    from .experiments.generalization import plot_length_curves
    from .training import ConfigError

    try:
        path = plot_length_curves(run_dirs, out, metric=metric, count=count)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        _fail(err)
    typer.echo(f"plot: {path}")


@app.command()
def probe(
    run_dir: Path = typer.Argument(..., help="Run folder of a NAM-TM on fib or palin."),
    digits: int = typer.Option(6, "--digits", min=1, help="Digits of the probe problems."),
    count: int = typer.Option(128, "--count", min=1, help="Probe problems (unseen in training)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best or last."),
    out: Path = typer.Option(None, "--out", help="Also write the result as JSON here."),
) -> None:
    """Where a NAM-TM's heads point: are the digits laid out on the tape and read back aligned?"""
    from .experiments.generalization.heads import format_alignment, head_alignment
    from .training import ConfigError, atomic_write_json

    try:
        res = head_alignment(run_dir, digits=digits, count=count, checkpoint=checkpoint)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        _fail(err)
    typer.echo(format_alignment(res))
    if out is not None:
        atomic_write_json(out, res)
        typer.echo(f"probe: {out}")


@app.command("list")
def list_(
    what: str = typer.Argument(
        "all", help="tasks, models, presets, datasets, families or all (default)."
    ),
) -> None:
    """List the tasks, models, presets, data sets and experiment families, one line each."""
    from .experiments.registry import get_family, get_task, list_reproducers, list_tasks

    kinds = ("tasks", "models", "presets", "datasets", "families")
    if what not in (*kinds, "all"):
        _fail(f"what: expected one of {', '.join(kinds)}, all; got {what!r}")
    families = [get_family(f) for f in list_reproducers()]
    blocks: list[tuple[str, list[tuple[str, str]]]] = []
    if what in ("families", "all"):
        blocks.append(
            ("families (nam reproduce FAMILY)", [(f.name, f.description) for f in families])
        )
    if what in ("tasks", "all"):
        rows = [(t, get_task(t).description) for t in list_tasks()]
        blocks.append(("tasks (nam train TASK)", rows))
    for kind in ("models", "presets", "datasets"):
        if what not in (kind, "all"):
            continue
        rows = []
        for f in families:
            for name, text in getattr(f, kind).items():
                rows.append((name, f"[{f.name}] {text}".rstrip()))
        blocks.append((kind, rows))
    for i, (title, rows) in enumerate(blocks):
        if i:
            typer.echo("")
        typer.echo(f"{title}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, text in rows:
            typer.echo(f"  {name.ljust(width)}  {text}".rstrip())


# --------------------------------------------------------------------------- nam reproduce
@app.command(context_settings={"help_option_names": []})
def reproduce(
    ctx: typer.Context,
    family: str = typer.Argument(None, help="Experiment family (nam list families)."),
    preset: str = typer.Option("quick", "--preset", "-p", help="Preset of the family."),
    tasks: list[str] = typer.Option([], "--tasks", "-t", help="Tasks, comma-separated."),
    models: list[str] = typer.Option([], "--models", "-m", help="Models, comma-separated."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Config override KEY=VALUE for every run (repeatable)."
    ),
    seed: str = typer.Option(None, "--seed", help="Seed of every run."),
    data_root: Path = typer.Option(None, "--data-root", help="Folder of user-provided data."),
    shots: list[str] = typer.Option([], "--shots", help="Few-shot: K of the K-shot settings."),
    datasets: list[str] = typer.Option([], "--datasets", help="Few-shot: data sets."),
    out: Path = typer.Option(None, "--out", help="Output folder (default nam_runs/FAMILY-PRESET)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check everything and list the runs; train nothing."
    ),
    report_only: bool = typer.Option(
        False,
        "--report-only",
        help="Write the report over the runs already finished in --out; train nothing.",
    ),
    show_help: bool = typer.Option(
        False, "--help", "-h", help="Show this help, or the family's with a FAMILY."
    ),
) -> None:
    """Train every run of a paper experiment and write its report (re-run to resume).

    `nam reproduce FAMILY --help` lists the family's tasks, models, presets and options.
    """
    from ._cli_reproduce import dry_run as _dry_run
    from ._cli_reproduce import family_help, names, reproducer_kwargs
    from .experiments.registry import get_family, list_reproducers
    from .training import ConfigError, check_names

    if family is None:
        typer.echo(ctx.get_help())
        typer.echo("\nFamilies: " + ", ".join(list_reproducers()))
        raise typer.Exit(code=0 if show_help else 2)
    try:
        info = get_family(family)
    except ValueError as err:
        _fail(err)
    if show_help:
        typer.echo(family_help(info))
        return
    try:
        check_names("--preset", [preset], list(info.presets) or [preset])
        if seed is not None and not seed.isdigit():
            raise ConfigError(f"--seed: expected an integer >= 0, got {seed!r}")
        shot_list = names(shots)
        if shot_list and not all(k.isdigit() and int(k) >= 1 for k in shot_list):
            raise ConfigError(f"--shots: expected integers >= 1, got {','.join(shot_list)!r}")
        options = {
            "preset": preset,
            "out_dir": out or Path("nam_runs") / f"{family}-{preset}",
            "tasks": names(tasks),
            "models": names(models),
            "overrides": overrides,
            "seed": None if seed is None else int(seed),
            "data_root": data_root,
            "shots": tuple(int(k) for k in shot_list) if shot_list else None,
            "datasets": tuple(names(datasets) or ()) or None,
            "report_only": report_only,
        }
        kwargs = reproducer_kwargs(info, options)
        if dry_run:
            _dry_run(info, kwargs)
            return
        report = info.reproduce(**kwargs)
    except Exception as err:
        if not _user_error(err):
            raise
        _fail(err)
    typer.echo(f"report: {report}")


def main(args: Sequence[str] | None = None) -> None:
    """``nam``: usage errors (unknown option, bad option value) are one line on stderr, exit 2."""
    import sys

    cmd = typer.main.get_command(app)
    try:
        code = cmd.main(args=args, prog_name="nam", standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except Exception as err:
        if not hasattr(err, "format_message"):  # not a usage error: a bug, show the traceback
            raise
        typer.secho(f"error: {err.format_message()}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
