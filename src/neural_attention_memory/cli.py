"""The ``nam`` command line: parses arguments, then calls training / experiments / bench."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="nam",
    help="Neural Attention Memory: benchmarks, training runs and the paper's experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: Exception) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


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
    preset: str = typer.Option(None, "--preset", "-p", help="Preset: quick (default) or paper."),
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
) -> None:
    """Train a model on a task; writes a run folder and prints the results table."""
    from .experiments.registry import get_task, list_tasks
    from .experiments.report import results_table
    from .training import ConfigError, apply_overrides, fit, read_config, resolve_config

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
            cfg = apply_overrides(cfg, extra)
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
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    typer.echo(f"run directory: {target}")
    try:
        res = fit(spec, cfg, target, resume=resume is not None)
    except ConfigError as err:
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
def reproduce(
    family: str = typer.Argument(..., help="Experiment family, e.g. generalization, lra, fewshot."),
    preset: str = typer.Option("quick", "--preset", "-p", help="quick or paper."),
    out: Path = typer.Option(
        None, "--out", help="Output folder (default nam_runs/<family>-<preset>)."
    ),
) -> None:
    """Train every run of a paper experiment and write its report (re-run to resume)."""
    from .experiments.registry import get_reproducer, get_task, list_tasks
    from .training import ConfigError

    try:
        fn = get_reproducer(family)
        presets = sorted({p for t in list_tasks(family) for p in get_task(t).presets})
        if presets and preset not in presets:
            raise ConfigError(
                f"preset: unknown preset {preset!r} for {family}; valid choices: {', '.join(presets)}"
            )
    except ValueError as err:
        _fail(err)
    out_dir = out or Path("nam_runs") / f"{family}-{preset}"
    try:
        report = fn(preset=preset, out_dir=out_dir)
    except ConfigError as err:
        _fail(err)
    typer.echo(f"report: {report}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
