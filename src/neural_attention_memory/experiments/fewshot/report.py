"""The few-shot report: per data set the metric tables, the confusion summary, the paired
differences from the cosine head with the verdict, the learned gates, the calibration-free
trade-off and two plots; then the paper's reference numbers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..report import save_figure
from .evaluate import verdict
from .paper import PAPER_REFERENCE
from .step import MAIN_METRICS

__all__ = ["head_label", "plot_setting", "plot_tradeoff", "report_lines", "trained_from"]


def trained_from(head: str) -> str:
    """The trained head an evaluated head comes from (``nam_tied_pe0.5`` -> ``nam_tied``)."""
    return head.split("_pe", 1)[0]


def head_label(h: str) -> str:
    base = trained_from(h)
    if base != h:
        return f"{base}, p_e fixed {h[len(base) + 3 :]}, sequential (ablation)"
    return h


def _fmt(s: Mapping[str, float]) -> str:
    return f"{s['mean']:.2f} ± {s['ci95']:.2f}"


def _dataset_lines(ds_name: str, ds: Mapping[str, Any], out_dir: Path) -> list[str]:
    s1 = ds["stage1"]
    stopped = s1.get("status") not in (None, "finished")
    lines = [
        f"## {ds_name}",
        "",
        f"Classes: {ds['classes']}. Stage 1 ({s1.get('backbone', 'convnet')} + cosine "
        "classifier): base val accuracy "
        f"{100 * (s1['val_acc'] or float('nan')):.2f}% at epoch {s1['selected_epoch']} "
        f"(0-based) of {s1['epochs']} ({(s1['wall_clock_s'] or 0):.0f} s of training)"
        + (
            f"; **stopped** after {s1['epochs']} of {s1.get('max_epochs')} planned epochs."
            if stopped
            else "."
        ),
        "",
        "| Shots | Head | Novel | Base | Joint | FP b→n | FP n→b |",
        "|---|---|---|---|---|---|---|",
    ]
    settings = ds["settings"]
    for setting, res in settings.items():
        for h, r in res["heads"].items():
            cells = " | ".join(_fmt(r["summary"][m]) for m in MAIN_METRICS)
            lines.append(f"| {setting} | {head_label(h)} | {cells} |")
    lines += ["", "Confusion summary (% of base / novel queries, joint prediction):", ""]
    lines += [
        "| Shots | Head | base→right | base→other base | base→novel | novel→right | "
        "novel→other novel | novel→base |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setting, res in settings.items():
        for h, r in res["heads"].items():
            s = r["summary"]
            cells = " | ".join(
                f"{s[f'conf_{g}_{c}']['mean']:.1f}"
                for g in ("base", "novel")
                for c in ("right", "wrong", "cross")
            )
            lines.append(f"| {setting} | {head_label(h)} | {cells} |")
    lines += ["", "Paired difference head − cosine (same episodes), mean ± 95% CI:", ""]
    lines += [
        "| Shots | Head | Novel | Base | Joint | FP b→n | FP n→b | "
        "Lowers both FPs at equal or better joint? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setting, res in settings.items():
        # Results written before every head was compared hold only `nam_minus_cosine`.
        diffs = res.get("minus_cosine") or (
            {"nam": res["nam_minus_cosine"]} if "nam_minus_cosine" in res else {}
        )
        for h, d in diffs.items():
            cells = " | ".join(_fmt(d[m]) for m in MAIN_METRICS)
            lines.append(f"| {setting} | {head_label(h)} | {cells} | {verdict(d)} |")
    lines.append("")
    for setting, res in settings.items():
        gates = res.get("gates_on_novel") or (
            {"nam": res["nam_gates_on_novel"]} if "nam_gates_on_novel" in res else {}
        )
        for h, g in gates.items():
            lines.append(
                f"- {setting}: learned gates of `{h}` on the novel-split features: "
                f"p_w = {g['p_w'][0]:.3f} (sd {g['p_w'][1]:.3f}), "
                f"p_e = {g['p_e'][0]:.3f} (sd {g['p_e'][1]:.3f})."
            )
    lines += [
        "",
        "Calibration-free view: adding an offset to every novel score (in cosine units) moves a "
        "head along a trade-off between the two FP rates. The equal-error point is where "
        "FP b→n = FP n→b; a head that separates base from novel better has a lower equal-error "
        "FP (means over the test episodes; no CI).",
        "",
        "| Shots | Head | Equal-error FP | at offset | Joint there | Best joint (offset) |",
        "|---|---|---|---|---|---|",
    ]
    for setting, res in settings.items():
        for h, r in res["heads"].items():
            t = r["tradeoff"]
            lines.append(
                f"| {setting} | {head_label(h)} | {t['fp']:.2f} | {t['offset']:+.3f} | "
                f"{t['joint_acc']:.2f} | {t['best_joint_acc']:.2f} ({t['best_offset']:+.3f}) |"
            )
    bars = plot_setting(ds, out_dir / f"{ds_name}.png", ds_name)
    curve = plot_tradeoff(ds, out_dir / f"{ds_name}_tradeoff.png", ds_name)
    return [
        *lines,
        "",
        f"![{ds_name}]({bars.name})",
        "",
        f"![{ds_name} trade-off]({curve.name})",
        "",
    ]


def report_lines(results: Mapping[str, Any], out_dir: Path) -> list[str]:
    """The Markdown lines of ``report.md`` from ``results.json``'s content (writes the plots)."""
    lines = [
        "# Few-shot learning: generalised 5-way K-shot, cosine vs NAM head",
        "",
        f"Preset `{results['preset']}`; {results['test_episodes']} test episodes per setting "
        "(the same episodes for every head); ± is the 95% confidence interval over episodes. "
        "Novel = N-way accuracy on novel queries; Base = accuracy among base classes on base "
        "queries; Joint = accuracy over all classes on all queries; FP b→n = base queries "
        "predicted as a novel class; FP n→b = novel queries predicted as a base class. All in %.",
        "",
    ]
    for ds_name, ds in results["datasets"].items():
        lines += _dataset_lines(ds_name, ds, out_dir)
    lines += [
        "## Reference (paper §6)",
        "",
        "Gidaris & Komodakis (2018) cosine classifier + attention weight generator, ResNet "
        "backbone, mini-ImageNet (a different data set and backbone; listed for scale only):",
        "",
        "| Shots | Novel | Base | Joint |",
        "|---|---|---|---|",
    ]
    for k, ref in PAPER_REFERENCE.items():
        lines.append(f"| {k}shot | {ref['novel_acc']} | {ref['base_acc']} | {ref['joint_acc']} |")
    lines += ["", f"Total wall-clock: {results['wall_clock_s']:.0f} s.", ""]
    return lines


def _figure(n_panels: int, width: float, height: float) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height))
    return fig, [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]


def plot_setting(ds: Mapping[str, Any], path: Path, title: str) -> Path:
    """Bar chart of every metric with 95% CI error bars, one panel per shot setting."""
    labels = ("Novel", "Base", "Joint", "FP b→n", "FP n→b")
    settings = list(ds["settings"])
    fig, axes = _figure(len(settings), 6.0, 4.0)
    for ax, setting in zip(axes, settings, strict=True):
        res = ds["settings"][setting]["heads"]
        width = 0.8 / max(len(res), 1)
        for j, (h, r) in enumerate(res.items()):
            s = r["summary"]
            x = np.arange(len(MAIN_METRICS)) + j * width
            ax.bar(
                x,
                [s[m]["mean"] for m in MAIN_METRICS],
                width,
                yerr=[s[m]["ci95"] for m in MAIN_METRICS],
                capsize=3,
                label=head_label(h),
            )
        ax.set_xticks(np.arange(len(MAIN_METRICS)) + width * (len(res) - 1) / 2, labels)
        ax.set_ylabel("%")
        ax.set_title(f"{title}: 5-way {setting}")
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_tradeoff(ds: Mapping[str, Any], path: Path, title: str) -> Path:
    """FP n->b against FP b->n as the novel-score offset varies; dots mark offset 0.

    Both axes are symmetric-log (linear below 1%): the interesting end is near zero, where the
    heads differ by tenths of a point, while the sweep reaches tens of percent.
    """
    settings = list(ds["settings"])
    fig, axes = _figure(len(settings), 5.5, 4.5)
    for ax, setting in zip(axes, settings, strict=True):
        res = ds["settings"][setting]
        zero = int(np.argmin(np.abs(np.asarray(res["offsets"]))))
        for h, r in res["heads"].items():
            c = np.asarray(r["curve"])
            (line,) = ax.plot(c[:, 1], c[:, 2], label=head_label(h))
            ax.plot(c[zero, 1], c[zero, 2], "o", color=line.get_color())
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("FP base→novel (%)")
        ax.set_ylabel("FP novel→base (%)")
        ax.set_title(f"{title}: 5-way {setting} (lower-left is better)")
        ax.legend(fontsize=8)
    return save_figure(fig, path)
