"""The LRA report: Table 1 beside the paper's, per-run details, accuracy vs training time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..report import format_params, format_seconds, format_value, markdown_table, save_line_plot
from ..reproducer import ReportContext
from .paper import LRA_ORIGINAL, MODEL_LABELS, PAPER_TABLE1, TASK_LABELS, TASKS
from .timing import step_time_ms

__all__ = ["add_step_times", "write_report"]


def _epoch_seconds(res: Mapping[str, Any]) -> float | None:
    """Median wall-clock of the run's epochs; with a warm-up, of its full-length epochs only."""
    hist = res.get("history") or []
    if hist and "train_lengths" in hist[-1]:
        hist = [h for h in hist if h.get("train_lengths") == hist[-1]["train_lengths"]]
    secs = [h["epoch_s"] for h in hist if h.get("epoch_s") is not None]
    return float(np.median(secs)) if secs else None


def _step_ms(res: Mapping[str, Any] | None) -> float | None:
    return None if not res else res.get("step_ms")


def _table1(results: Sequence[Mapping[str, Any]], tasks: Sequence[str]) -> str:
    by = {(r.get("model"), r.get("task")): r for r in results if r.get("status") == "finished"}
    headers = ["Model"]
    for t in tasks:
        headers += [TASK_LABELS[t], "speedup"]
    rows = []
    for m in ("softmax-transformer", "linear-transformer", "nam-transformer"):
        cells: list[Any] = [MODEL_LABELS[m]]
        for t in tasks:
            res = by.get((m, t))
            paper = PAPER_TABLE1.get((m, t))
            acc = (res or {}).get("splits", {}).get("test", {}).get("acc")
            ms, ms0 = _step_ms(res), _step_ms(by.get(("softmax-transformer", t)))
            speed = ms0 / ms if ms and ms0 else None
            cells.append(
                f"{format_value(acc, '.2f', 100.0)} ({format_value(paper[0] if paper else None, '.2f')})"
            )
            cells.append(
                f"{format_value(speed, '.2f')} ({format_value(paper[1] if paper else None, '.2f')})"
            )
        rows.append(cells)
    return markdown_table(headers, rows)


def _details(results: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for r in results:
        splits = r.get("splits", {})
        rows.append(
            [
                TASK_LABELS.get(r.get("task"), r.get("task")),
                MODEL_LABELS.get(r.get("model"), r.get("model")),
                r.get("status"),
                format_value(splits.get("val", {}).get("acc"), ".2f", 100.0),
                format_value(splits.get("test", {}).get("acc"), ".2f", 100.0),
                r.get("selected_epoch"),
                format_params(r.get("num_params")),
                format_value(_step_ms(r), ".1f"),
                format_value(_epoch_seconds(r), ".1f"),
                format_seconds(r.get("wall_clock_s")),
                format_value(LRA_ORIGINAL.get((r.get("model"), r.get("task"))), ".2f"),
            ]
        )
    headers = [
        "Task", "Model", "Status", "Val acc", "Test acc", "Epoch", "Params", "ms / step (CPU)",
        "s / epoch (wall)", "Train time", "LRA paper acc",
    ]  # fmt: skip
    return markdown_table(headers, rows)


def _plot(results: Sequence[Mapping[str, Any]], tasks: Sequence[str], out_dir: Path) -> list[Path]:
    paths = []
    for t in tasks:
        series = {}
        for r in results:
            if r.get("task") != t or not r.get("history"):
                continue
            xs, ys, clock = [], [], 0.0
            for h in r["history"]:
                clock += float(h.get("epoch_s") or 0.0)
                xs.append(clock)
                ys.append(None if h.get("test/acc") is None else 100.0 * float(h["test/acc"]))
            series[MODEL_LABELS.get(r.get("model"), r.get("model"))] = (xs, ys)
        if series:
            path = out_dir / f"acc_vs_time_{t}.png"
            save_line_plot(
                path,
                series,
                xlabel="training wall-clock (s, train + eval epochs)",
                ylabel="test accuracy (%)",
                title=f"{TASK_LABELS[t]}: accuracy vs training time",
            )
            paths.append(path)
    return paths


def add_step_times(ctx: ReportContext) -> None:
    """Time one training step of every finished run (cached per run) into ``result["step_ms"]``."""
    for r in ctx.results:
        if r.get("status") == "finished":
            r["step_ms"] = step_time_ms(r["run_dir"])["step_ms"]


def write_report(ctx: ReportContext) -> list[str]:
    """The lines of ``report.md``; writes one accuracy-vs-training-time PNG per task."""
    results, tasks = ctx.results, ctx.tasks
    plots = _plot(results, tasks, ctx.out_dir)
    skipped = [t for t in TASKS if t not in tasks]
    lines = [
        f"# Long Range Arena (`--preset {ctx.preset}`)",
        "",
        "Test accuracy (%) at the epoch with the best validation accuracy, and training speedup",
        "relative to the softmax Transformer: time of one training step (forward, loss, backward)",
        "on the same first training batches, in process CPU time with one thread, measured after",
        "training in this invocation (wall-clock per epoch is in the second table; on a shared",
        "machine it mostly measures the other processes). Each cell reads **ours (paper)**; the",
        "paper's numbers are Table 1 of Nam & Seo (docs/paper.md §7), trained at LRA sizes on a",
        "GPU, and the paper has no Pathfinder or Retrieval column.",
        "",
        _table1(results, tasks),
        "## Runs",
        "",
        "`LRA paper acc` is the original LRA benchmark's number for the same model (for reference).",
        "",
        _details(results),
        f"Training wall-clock summed over the runs: "
        f"{sum(float(r.get('wall_clock_s') or 0.0) for r in results):.0f} s; this invocation: "
        f"{ctx.elapsed_s:.0f} s (torch threads: {torch.get_num_threads()}).",
        "",
    ]
    if ctx.preset == "quick":
        lines += [
            "The quick preset trains tiny encoders on small generated sets for a few epochs on a CPU;",
            "its accuracies are far from converged and only the relative speed and the trend are",
            "meaningful. ListOps uses expressions of 50–300 tokens (LRA: 500–2,000), Pathfinder",
            "the easy level (6 dashes per contour).",
            "",
        ]
    if skipped:
        lines += [
            "Not run (not asked for, or their files are not present; see docs/lra.md for where to "
            "put them): " + ", ".join(TASK_LABELS[t] for t in skipped) + ".",
            "",
        ]
    lines += ["## Accuracy vs training time", "", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return lines
