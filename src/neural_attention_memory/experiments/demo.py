"""``nam demo``: NAM-TM vs LSTM vs Transformer on ``reduce``, trained and tested in minutes on a CPU.

All three models learn to drop the zeros from digit strings of 1–10 digits and are then tested,
zero-shot, on 11–13 (OD-easy), 14–16 (OD-hard) and 17–22 digits. The Transformer fits the
training lengths but fails beyond them; NAM-TM, whose tape and heads do not depend on the
length, keeps its accuracy (docs/paper.md §5, Table 2). The demo prints the table, writes
``demo.md`` and saves ``demo_reduce.png`` (sequence accuracy vs number of digits).

Runs go through the same engine, run folders and resume logic as ``nam train``: re-running the
demo with the same ``--out`` reuses finished runs.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["DEMO_MODELS", "DEMO_OVERRIDES", "run_demo"]

DEMO_MODELS: tuple[str, ...] = ("nam-tm", "lstm", "transformer")

# A reduced quick preset: fewer training samples and evaluation samples, no progress bars.
DEMO_OVERRIDES: tuple[str, ...] = (
    "data.splits.train.count=6144",
    "data.splits.id.count=256",
    "data.splits.od_easy.count=256",
    "data.splits.od_hard.count=256",
    "data.splits.test.count=256",
    "trainer.max_epochs=3",
    "trainer.progress_bar=false",
)


def run_demo(out_dir: str | Path = Path("nam_runs/demo"), curve_count: int = 48) -> Path:
    """Train the three models on ``reduce``, print the table, write ``demo.md`` and the plot."""
    import torch

    from .generalization import MODEL_LABELS, plot_length_curves
    from .report import format_params, format_seconds, markdown_table, write_markdown
    from .runner import Job, run_grid

    torch.set_num_threads(1)  # small recurrent ops stall when two threads compete for 2 cores
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    print("Training NAM-TM, LSTM+attention and a Transformer on `reduce` (drop the zeros):")
    print("train on 1-10 digits, test on 11-13, 14-16 and 17-22 digits.\n")
    jobs = [Job("reduce", m, "quick", DEMO_OVERRIDES) for m in DEMO_MODELS]
    results = run_grid(jobs, out_dir, keep_going=True)
    rows = []
    for res in results:
        sp = res.get("splits", {})
        rows.append(
            [
                MODEL_LABELS.get(res.get("model"), res.get("model")),
                *[
                    None if s not in sp else 100.0 * sp[s]["seq_acc"]
                    for s in ("id", "od_easy", "od_hard", "test")
                ],
                format_params(res.get("num_params")),
                format_seconds(res.get("wall_clock_s")),
            ]
        )
    table = markdown_table(
        ["Model", "ID 5-10", "OD-easy 11-13", "OD-hard 14-16", "17-22", "Params", "Time"], rows
    )
    done = [r["run_dir"] for r in results if r.get("status") == "finished"]
    png = out_dir / "demo_reduce.png"
    if done:
        plot_length_curves(done, png, count=curve_count, title="reduce: accuracy vs length")
    text = "\n".join(
        [
            "# Demo: zero-shot length generalisation on `reduce`",
            "",
            "Sequence accuracy (%) at the epoch with the best OD-easy accuracy; trained on 1-10 "
            "digits only.",
            "",
            table,
            f"![accuracy vs length]({png.name})",
            "",
            f"Total wall-clock: {time.perf_counter() - t0:.0f} s.",
            "",
        ]
    )
    report = write_markdown(out_dir / "demo.md", text)
    print("\n" + table)
    print(f"plot: {png}\nreport: {report}")
    return report
