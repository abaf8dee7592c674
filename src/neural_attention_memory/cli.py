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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
