"""Accuracy vs length of trained runs: one cached curve per run, several runs in one PNG."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ...tasks import algorithmic as alg
from ...tasks import scan as scan_tasks
from ...training import evaluate, read_config, read_results
from ...training.rundir import atomic_write_json
from ..registry import get_task
from ..report import save_line_plot
from .data import build_datasets

__all__ = ["CURVE_FILE", "length_curve", "plot_length_curves"]

CURVE_FILE = "length_curve.json"


def _curve_sizes(config: Mapping[str, Any]) -> list[int]:
    if config["task"] == "scan":
        sizes = {len(scan_tasks.interpret(c)) for c in scan_tasks.enumerate_commands()}
        return sorted(sizes)
    splits = config.get("data", {}).get("splits") or alg.default_splits()
    hi = max(alg.parse_range(s["digits"])[1] for s in splits.values())
    return list(range(1, hi + 1))


def _size_datasets(
    config: Mapping[str, Any], seed: int, sizes: Sequence[int], count: int
) -> tuple[dict[str, Dataset], int, int]:
    """``({str(size): dataset}, train_min, train_max)``; sizes with no unseen problem are left out."""
    datasets: dict[str, Dataset] = {}
    data = config.get("data", {})
    if config["task"] == "scan":
        train = build_datasets(config, seed)["train"].examples
        slots = data.get("slots", 48)
        train_max = int(data.get("max_train_actions", 22))
        for n in sizes:
            ds = scan_tasks.build_eval_dataset(f"{n}-{n}", seed, count, exclude=train, slots=slots)
            if len(ds):
                datasets[str(n)] = ds
        return datasets, 1, train_max
    splits = data.get("splits") or alg.default_splits()
    params = dict(data.get("params") or {})
    train_set = alg.build_splits(config["task"], seed, {"train": splits["train"]}, **params)
    train = train_set["train"].examples
    train_min, train_max = alg.parse_range(splits["train"]["digits"])
    for n in sizes:
        try:
            ds = alg.build_eval_dataset(config["task"], f"{n}-{n}", count, seed, train, **params)
        except ValueError:  # too few problems of this size outside the training set
            continue
        datasets[str(n)] = ds
    return datasets, int(train_min), int(train_max)


def length_curve(run_dir: str | Path, count: int = 128, refresh: bool = False) -> dict[str, Any]:
    """Sequence and token accuracy of a run's selected checkpoint at every size (length).

    Sizes are 1 to the longest evaluated size (digits; SCAN: every action count). ``count``
    samples per size, excluding the training set (sizes whose problems are all in the training
    set, e.g. 1 digit, get ``None``). Cached in ``run_dir/length_curve.json``.

    Returns:
        ``{"sizes": [...], "seq_acc": [...], "tok_acc": [...], "train_min": int,
        "train_max": int}``.
    """
    run_dir = Path(run_dir)
    cache = run_dir / CURVE_FILE
    results = read_results(run_dir) or {}
    # The cache is valid for one checkpoint: a resumed / longer run recomputes it.
    key = [results.get("selected_epoch"), results.get("epochs_completed")]
    if cache.is_file() and not refresh:
        cached = json.loads(cache.read_text())
        if (
            cached.get("count") == count
            and cached.get("checkpoint") == key
            and "train_min" in cached
        ):
            return cached
    config = read_config(run_dir)
    spec = get_task(config["task"])
    seed = int(config.get("seed", 0))
    sizes = _curve_sizes(config)
    datasets, train_min, train_max = _size_datasets(config, seed, sizes, count)
    scores = evaluate(run_dir, datasets=datasets, spec=spec) if datasets else {}
    curve = {
        "sizes": sizes,
        "seq_acc": [scores.get(str(n), {}).get("seq_acc") for n in sizes],
        "tok_acc": [scores.get(str(n), {}).get("tok_acc") for n in sizes],
        "train_min": train_min,
        "train_max": train_max,
        "count": count,
        "checkpoint": key,
    }
    atomic_write_json(cache, curve)
    return curve


def plot_length_curves(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    metric: str = "seq_acc",
    count: int = 128,
    title: str | None = None,
) -> Path:
    """Accuracy vs length of several runs in one PNG (one line per run, labelled by model).

    Linear axes, integer length ticks, and the training range shaded and labelled.
    """
    if metric not in ("seq_acc", "tok_acc"):
        raise ValueError(f"metric: expected 'seq_acc' or 'tok_acc', got {metric!r}")
    if not run_dirs:
        raise ValueError("run_dirs: expected at least one run directory, got none")
    series: dict[str, tuple[list[float], list[float | None]]] = {}
    spans: set[tuple[float, float]] = set()
    tasks = set()
    for rd in run_dirs:
        rd = Path(rd)
        if not (rd / "config.yaml").is_file():
            raise ValueError(f"run_dirs: {rd} is not a run directory (no config.yaml)")
        cfg = read_config(rd)
        curve = length_curve(rd, count=count)
        label = cfg["model"]["name"]
        if label in series:
            label = f"{label} ({rd.name})"
        ys = [None if v is None else 100.0 * v for v in curve[metric]]
        series[label] = ([float(s) for s in curve["sizes"]], ys)
        spans.add((float(curve["train_min"]), float(curve["train_max"])))
        tasks.add(cfg["task"])
    xlabel = "actions" if tasks == {"scan"} else "size (digits)"
    name = "sequence" if metric == "seq_acc" else "token"
    return save_line_plot(
        out,
        series,
        xlabel=xlabel,
        ylabel=f"{name} accuracy (%)",
        title=title or f"{', '.join(sorted(tasks))}: {name} accuracy vs length",
        ylim=(-2, 102),
        spans=[(lo - 0.5, hi + 0.5, "training lengths") for lo, hi in sorted(spans)],
        integer_x=True,
    )
