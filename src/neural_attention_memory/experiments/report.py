"""Report writers: Markdown tables (ours beside the paper's) and matplotlib PNG plots.

Everything is written atomically (temporary file + :func:`os.replace`), so an interrupted report
never leaves a half-written file behind. Plots use matplotlib's Agg canvas directly (no pyplot
global state), so they work on headless machines and inside threads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..training.rundir import atomic_write_bytes, atomic_write_text

__all__ = [
    "comparison_table",
    "format_params",
    "format_seconds",
    "format_value",
    "markdown_table",
    "results_table",
    "save_bar_plot",
    "save_figure",
    "save_line_plot",
    "write_markdown",
]


def format_value(value: Any, fmt: str = ".1f", scale: float = 1.0) -> str:
    """``None``/NaN -> ``"—"``; numbers (times ``scale``) with ``fmt``; anything else ``str``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "—"
        if isinstance(value, int) and scale == 1.0:
            return str(value)
        return format(value * scale, fmt)
    return str(value)


def format_params(n: int | None) -> str:
    """``23_300_000`` -> ``"23.3M"``; ``12_345`` -> ``"12.3k"``."""
    if n is None:
        return "—"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return str(n)


def format_seconds(s: float | None) -> str:
    """``75.2`` -> ``"1m15s"``; ``4000`` -> ``"1h06m"``."""
    if s is None or not math.isfinite(s):
        return "—"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    align: Sequence[str] | None = None,
    fmt: str = ".1f",
) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        headers: column titles.
        rows: one sequence per row, each as long as ``headers``; cells go through
            :func:`format_value` (so floats use ``fmt`` and ``None`` shows as ``—``).
        align: per column ``"l"``, ``"r"`` or ``"c"`` (default: left for the first column, right
            for the others).
    """
    ncol = len(headers)
    if ncol == 0:
        raise ValueError("headers: expected at least one column, got none")
    for i, row in enumerate(rows):
        if len(row) != ncol:
            raise ValueError(f"rows[{i}]: expected {ncol} cells, got {len(row)}")
    if align is None:
        align = ["l"] + ["r"] * (ncol - 1)
    if len(align) != ncol or any(a not in ("l", "r", "c") for a in align):
        raise ValueError(f"align: expected {ncol} of 'l'/'r'/'c', got {list(align)}")
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(_cell(h) for h in headers) + " |",
        "|" + "|".join(rule[a] for a in align) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(format_value(c, fmt)) for c in row) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(
    row_keys: Sequence[tuple[str, ...]],
    columns: Sequence[str],
    ours: Mapping[tuple[str, ...], float | None],
    paper: Mapping[tuple[str, ...], float | None] | None = None,
    row_headers: Sequence[str] = ("Task", "Split"),
    scale: float = 100.0,
    fmt: str = ".1f",
) -> str:
    """A table whose cells read ``ours (paper)``, e.g. the paper's Table 2 beside our runs.

    Args:
        row_keys: one tuple per row (e.g. ``("Palin", "OD-hard")``), as long as ``row_headers``.
        columns: column names (e.g. model names).
        ours: ``(*row_key, column) -> value`` of our runs (fractions; multiplied by ``scale``).
        paper: same keys, the published values, already in display units (e.g. percent);
            ``None`` leaves them out.
    """
    rows = []
    for key in row_keys:
        if len(key) != len(row_headers):
            raise ValueError(f"row_keys: expected tuples of {len(row_headers)} items, got {key!r}")
        cells: list[Any] = list(key)
        for col in columns:
            text = format_value(ours.get((*key, col)), fmt, scale)
            if paper is not None:
                text += f" ({format_value(paper.get((*key, col)), fmt)})"
            cells.append(text)
        rows.append(cells)
    return markdown_table([*row_headers, *columns], rows)


def results_table(
    results: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    scale: float = 100.0,
    fmt: str = ".1f",
    status: bool = False,
) -> str:
    """One row per (run, split) of ``results.json`` dicts: metrics at the selected epoch.

    Metrics named ``loss`` or ``bpb...`` (bits per byte) are shown unscaled; the others
    (accuracies) are multiplied by ``scale``.
    ``status=True`` adds a column such as ``finished`` or ``running 3/10`` (epochs done / asked).
    """
    if metrics is None:
        names: list[str] = []
        for res in results:
            for split_metrics in res.get("splits", {}).values():
                names += [m for m in split_metrics if m not in names and m != "loss"]
        metrics = [*names, "loss"]
    headers = ["Task", "Model", "Split", *metrics, "Epoch", "Params", "Time"]
    if status:
        headers.append("Status")
    rows = []
    for res in results:
        res_splits = res.get("splits", {})
        wanted = list(splits) if splits is not None else list(res_splits)
        if not wanted:
            wanted = ["—"]
        for split in wanted:
            vals = res_splits.get(split, {})
            cells: list[Any] = [res.get("task"), res.get("model"), split]
            for m in metrics:
                v = vals.get(m)
                raw = m == "loss" or m.startswith("bpb")  # losses and bits per byte: not percents
                cells.append(format_value(v, ".4f" if raw else fmt, 1.0 if raw else scale))
            cells += [
                res.get("selected_epoch"),
                format_params(res.get("num_params")),
                format_seconds(res.get("wall_clock_s")),
            ]
            if status:
                state = str(res.get("status", "—"))
                if state != "finished" and res.get("max_epochs"):
                    state += f" {res.get('epochs_completed', 0)}/{res['max_epochs']}"
                cells.append(state)
            rows.append(cells)
    align = ["l", "l", "l"] + ["r"] * (len(headers) - 3 - status) + ["l"] * status
    return markdown_table(headers, rows, align=align)


def write_markdown(path: str | Path, text: str) -> Path:
    """Write a Markdown file atomically."""
    return atomic_write_text(path, text)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a :class:`matplotlib.figure.Figure` as a PNG, atomically (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def save_line_plot(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
    vlines: Sequence[float] = (),
    spans: Sequence[tuple[float, float, str]] = (),
    integer_x: bool = False,
) -> Path:
    """Line plot of ``{label: (xs, ys)}`` saved as a PNG (e.g. accuracy vs sequence length).

    Axes are linear. ``None`` values in ``ys`` leave a gap; ``vlines`` draws dashed markers;
    ``spans`` shades ``(x0, x1, label)`` ranges and names them in the legend (e.g. the training
    lengths); ``integer_x`` puts ticks on integers only (lengths, epochs).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not series:
        raise ValueError("series: expected at least one (xs, ys) line, got none")
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for i, (x0, x1, label) in enumerate(spans):
        ax.axvspan(x0, x1, color="grey", alpha=0.15, label=label if i == 0 else None)
    for label, (xs, ys) in series.items():
        if len(xs) != len(ys):
            raise ValueError(f"series[{label!r}]: {len(xs)} x values but {len(ys)} y values")
        yv = [math.nan if y is None else float(y) for y in ys]
        ax.plot(list(xs), yv, marker="o", markersize=3, label=str(label))
    for x in vlines:
        ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def save_bar_plot(
    path: str | Path,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    ylabel: str,
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Grouped bar chart: one group per category, one bar per series; saved as a PNG."""
    from matplotlib.figure import Figure

    if not categories or not series:
        raise ValueError("categories/series: expected at least one category and one series")
    for label, vals in series.items():
        if len(vals) != len(categories):
            raise ValueError(
                f"series[{label!r}]: expected {len(categories)} values, got {len(vals)}"
            )
    fig = Figure(figsize=(max(6.4, 0.9 * len(categories) * max(1, len(series)) / 2), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for i, (label, vals) in enumerate(series.items()):
        xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
        ax.bar(xs, [0.0 if v is None else float(v) for v in vals], width=width, label=str(label))
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([str(c) for c in categories], rotation=30 if len(categories) > 6 else 0)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)
