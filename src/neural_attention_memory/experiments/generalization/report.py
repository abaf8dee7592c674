"""The length-generalisation report: Table 2 beside the paper's, quality bars, costs, curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...models.baselines import PAPER_PARAMS
from ...training.rundir import read_config
from ..report import comparison_table, format_params, format_seconds, markdown_table
from ..reproducer import ReportContext
from .curves import plot_length_curves
from .data import curriculum_label
from .paper import MODEL_LABELS, NSP_TASKS, PAPER_TABLE2, SPLIT_LABELS, TASK_LABELS

__all__ = ["medium_bars", "quality_bars", "table2", "write_report"]


def table2(results: Sequence[Mapping[str, Any]], models: Sequence[str]) -> str:
    """Our sequence accuracies in Table 2's layout, each cell ``ours (paper)``."""
    ours: dict[tuple[str, ...], float | None] = {}
    row_keys: list[tuple[str, str]] = []
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for res in results:
        by_task.setdefault(str(res.get("task")), []).append(res)
    for task in by_task:
        tl = TASK_LABELS.get(task, task)
        split_pairs = (
            [("id", "Train"), ("test", "Test")]
            if task == "scan"
            else [(s, SPLIT_LABELS[s]) for s in ("id", "od_easy", "od_hard", "test")]
        )
        for split, label in split_pairs:
            row_keys.append((tl, label))
            for res in by_task[task]:
                col = MODEL_LABELS.get(str(res.get("model")), str(res.get("model")))
                val = res.get("splits", {}).get(split, {}).get("seq_acc")
                ours[(tl, label, col)] = val
    cols = [MODEL_LABELS.get(m, m) for m in models]
    return comparison_table(row_keys, cols, ours, PAPER_TABLE2)


def _curriculum(res: Mapping[str, Any]) -> str | None:
    """The run's length curriculum (from its ``config.yaml``), ``None`` without one."""
    try:
        return curriculum_label(read_config(res["run_dir"]))
    except (KeyError, OSError, ValueError):  # a run that never started has no config
        return None


def _params_and_time(results: Sequence[Mapping[str, Any]]) -> str:
    # A "Curriculum" column only when a run used one, so other reports keep their layout.
    curricula = [_curriculum(res) for res in results]
    rows = []
    for res in results:
        m = str(res.get("model"))
        paper = PAPER_PARAMS.get(m)
        ran = res.get("epochs_completed")
        rows.append(
            [
                res.get("task"),
                MODEL_LABELS.get(m, m),
                format_params(res.get("num_params")),
                f"{paper}M" if paper is not None else "—",
                res.get("selected_epoch"),
                "—" if ran is None else f"{ran}/{res.get('max_epochs')}",
                "—" if res.get("status") == "not run" else format_seconds(res.get("wall_clock_s")),
                format_seconds(res.get("cpu_time_s")),
                res.get("status"),
            ]
        )
    headers = [
        "Task", "Model", "Params", "Paper params", "Selected epoch", "Epochs", "Wall-clock",
        "CPU time", "Status",
    ]  # fmt: skip
    align = ["l", "l"] + ["r"] * 7
    if any(curricula):
        headers.append("Curriculum")
        align.append("l")
        for row, label in zip(rows, curricula, strict=True):
            row.append(label or "none")
    return markdown_table(headers, rows, align=align)


def _run(results: Sequence[Mapping[str, Any]], task: str, model: str) -> Mapping[str, Any] | None:
    """The results of ``model`` on ``task``, or None."""
    return next((r for r in results if r.get("task") == task and r.get("model") == model), None)


def _acc(
    results: Sequence[Mapping[str, Any]], task: str, model: str, split: str = "od_hard"
) -> float | None:
    r = _run(results, task, model)
    return None if r is None else r.get("splits", {}).get(split, {}).get("seq_acc")


def _best_epoch(
    results: Sequence[Mapping[str, Any]], task: str, model: str, split: str
) -> tuple[int, float] | None:
    """``(epoch, seq_acc)`` of the epoch with the highest ``split`` sequence accuracy (the first
    such epoch), from the run's history; None without a history."""
    r = _run(results, task, model)
    hist = [
        (int(h["epoch"]), float(h[f"{split}/seq_acc"]))
        for h in (r or {}).get("history") or []
        if h.get(f"{split}/seq_acc") is not None
    ]
    return max(hist, key=lambda eh: (eh[1], -eh[0])) if hist else None


# The paper's baselines (Table 2's columns that are not NAM-TM).
_BASELINES = ("transformer", "lstm", "ut", "dnc", "lsam")


def _is_nam_tm(model: str) -> bool:
    """NAM-TM's own variants and ablations are not baselines in the medium bars."""
    return model.startswith("nam-tm")


def medium_bars(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The medium preset's bars (issue 9), each ``met``, ``MISSED`` or ``not run``.

    TF >= 90% ID on fib; every model >= 90% on SCAN's held-out short commands; NAM-TM >= 50%
    OD-hard on fib and above every baseline (every model that is not a NAM-TM variant) at OD-hard
    on fib, reduce and palin.
    """

    def pct(a: float | None) -> str:
        return "—" if a is None else f"{100 * a:.1f}%"

    def verdict(ok: bool | None) -> str:
        return "not run" if ok is None else ("met" if ok else "MISSED")

    lines = []
    tf = _acc(results, "fib", "transformer", "id")
    best = _best_epoch(results, "fib", "transformer", "id")
    if best is None or tf is None:
        lines.append(
            f"- TF >= 90% ID on fib: {pct(tf)} — {verdict(None if tf is None else tf >= 0.9)}"
        )
    else:
        # The bar asks whether the Transformer can fit fib ("reaches"), so it is judged on its best
        # epoch; the paper's selection (best OD-easy) can pick an untrained epoch when OD-easy is 0
        # throughout, so that epoch's figure is shown beside it.
        epoch, acc = best
        lines.append(
            f"- TF >= 90% ID on fib (best epoch, {epoch}): {pct(acc)}; at the selected epoch "
            f"(best OD-easy): {pct(tf)} — {verdict(acc >= 0.9)}"
        )
    scan = {
        str(r.get("model")): r.get("splits", {}).get("id", {}).get("seq_acc")
        for r in results
        if r.get("task") == "scan"
    }
    for model, a in scan.items():
        ok = None if a is None else a >= 0.9
        label = MODEL_LABELS.get(model, model)
        lines.append(f"- {label} >= 90% on SCAN held-out short commands: {pct(a)} — {verdict(ok)}")
    nam = _acc(results, "fib", "nam-tm")
    ok = None if nam is None else nam >= 0.5
    lines.append(f"- NAM-TM >= 50% OD-hard on fib: {pct(nam)} — {verdict(ok)}")
    for task in ("fib", "reduce", "palin"):
        a = _acc(results, task, "nam-tm")
        base = {
            str(r.get("model")): _acc(results, task, str(r.get("model")))
            for r in results
            if r.get("task") == task and not _is_nam_tm(str(r.get("model")))
        }
        base = {m: v for m, v in base.items() if v is not None}
        if a is None or not base:
            lines.append(f"- NAM-TM above every baseline at OD-hard on {task}: not run")
            continue
        best = max(base, key=lambda m: base[m])
        ran = ", ".join(MODEL_LABELS.get(m, m) for m in base)
        missing = [MODEL_LABELS[m] for m in _BASELINES if m not in base]
        lines.append(
            f"- NAM-TM above every baseline at OD-hard on {task}: {pct(a)} vs best baseline "
            f"{MODEL_LABELS.get(best, best)} {pct(base[best])} (baselines run: {ran}"
            + (f"; not run: {', '.join(missing)}" if missing else "")
            + f") — {verdict(a > base[best])}"
        )
    return lines


def quality_bars(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The quick preset's claims, each ``met`` or ``MISSED``."""

    def acc(task: str, model: str, split: str = "od_hard") -> float | None:
        return _acc(results, task, model, split)

    lines = []
    for task in ("reduce", "palin"):
        a = acc(task, "nam-tm")
        if a is not None:
            ok = "met" if a >= 0.95 else "MISSED"
            lines.append(f"- NAM-TM >= 95% on {task} OD-hard: {100 * a:.1f}% — {ok}")
    for task in NSP_TASKS:
        a, b = acc(task, "nam-tm"), acc(task, "transformer")
        if a is not None and b is not None:
            ok = "met" if a > b else "MISSED"
            lines.append(
                f"- NAM-TM above TF on {task} OD-hard: {100 * a:.1f}% vs {100 * b:.1f}% — {ok}"
            )
    return lines


def write_report(ctx: ReportContext, curve_count: int = 64) -> list[str]:
    """The lines of ``report.md``; writes one accuracy-vs-length PNG per task."""
    plots = []
    for task in ctx.tasks:
        dirs = [r["run_dir"] for r in ctx.finished if r.get("task") == task]
        if dirs:
            png = ctx.out_dir / f"length_{task}.png"
            plot_length_curves(dirs, png, count=curve_count)
            plots.append(png)
    return [
        f"# Zero-shot length generalisation (`--preset {ctx.preset}`)",
        "",
        "Sequence accuracy (%) at the epoch with the best OD-easy accuracy (SCAN: best held-out",
        "short-command accuracy). Each cell reads **ours (paper)**; the paper's numbers are",
        "Table 2 of Nam & Seo (docs/paper.md §5), trained with 22–40M-parameter models for up to",
        "200 epochs. `Test 17-22` is our extra split (the authors' later code); SCAN `Train` is",
        "our held-out short-command set.",
        "",
        table2(ctx.finished, ctx.models),
        "## Quality bars (quick preset)" if ctx.preset == "quick" else "## Quality bars",
        "",
        *(
            medium_bars(ctx.finished)
            if ctx.preset == "medium"
            else (quality_bars(ctx.finished) or ["- (no NAM-TM runs)"])
        ),
        "",
        "## Parameters, wall-clock and CPU time",
        "",
        _params_and_time(ctx.results),
        f"Total wall-clock of this invocation: {ctx.elapsed_s:.0f} s. CPU time is the process",
        "CPU time of the training and evaluation epochs (one thread): on a shared machine the",
        "wall-clock mostly measures the other processes.",
        "",
        "## Accuracy vs length",
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
    ]
