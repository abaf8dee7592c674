"""``nam bench mann``: training-step time and peak memory of LSAM and NAM-TM.

For each size (``quick``; the full run adds ``paper``) one training step (forward, cross-entropy on
every position, backward) of the sequence models of :mod:`neural_attention_memory.models.sequence`
is timed for

* the fast path (``LSAM.forward`` / ``NAMTuringMachine.forward``),
* its line-by-line twin (``forward_reference``: the ``LSAMCell`` loop / the NAM-TM loop over steps
  and tapes with ``nam_write`` / ``nam_read`` / ``torch.roll``),
* ``nn.LSTM`` of the same width and depth with the same embedding and classifier.

Ratios are taken within one run. Before anything is timed, each fast path is compared with its twin
on a small float64 model (outputs and every parameter gradient); a fast path that disagrees is
refused, not timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models.sequence import build_memory_model, count_parameters
from .common import peak_memory_mb, set_threads, time_fn, write_outputs
from .registry import register_benchmark

__all__ = ["LSTMSequenceModel", "check_equivalence", "peak_row", "run"]

VOCAB, CLASSES = 16, 12
# (size, batch, length): the quick run times the CPU-sized models only.
QUICK_SHAPES = (("quick", 16, 32),)
FULL_SHAPES = (("quick", 32, 40), ("paper", 8, 40))
TOL = 1e-8


class LSTMSequenceModel(nn.Module):
    """The peer: Embedding -> ``nn.LSTM`` (same width and depth) -> per-position classifier."""

    def __init__(self, vocab_size: int, num_classes: int, width: int, num_layers: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, width)
        self.lstm = nn.LSTM(width, width, num_layers=num_layers, batch_first=True)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.classifier(self.lstm(self.embedding(tokens))[0])


def _width(model: nn.Module) -> tuple[int, int]:
    cfg = model.config
    if hasattr(cfg, "hidden_size"):
        return cfg.hidden_size, cfg.num_layers
    return cfg.dim, cfg.num_layers


def check_equivalence(names: tuple[str, ...] = ("lsam", "nam-tm")) -> dict[str, float]:
    """Max abs difference (outputs and all gradients) between fast path and twin, float64."""
    small = {
        "lsam": {"hidden_size": 16, "num_heads": 4, "separate_erase": True},
        "nam-tm": {"dim": 16, "num_tapes": 2, "head_dim": 4},
    }
    errors: dict[str, float] = {}
    for name in names:
        torch.manual_seed(0)
        model = build_memory_model(name, VOCAB, CLASSES, "quick", **small[name]).double()
        tokens = torch.randint(0, VOCAB, (3, 7))
        pad = torch.zeros(3, 7, dtype=torch.bool)
        pad[1, 4:] = True
        cot = torch.randn(3, 7, CLASSES, dtype=torch.double)
        params = list(model.parameters())
        results = []
        for reference in (False, True):
            out = model(tokens, pad, reference=reference)
            grads = torch.autograd.grad((out * cot).sum(), params)
            results.append([out, *grads])
        errors[name] = max(float((a - b).abs().max().detach()) for a, b in zip(*results))
    return errors


def _step_fn(model: nn.Module, B: int, T: int, **kw: Any) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (B, T), generator=gen)
    target = torch.randint(0, CLASSES, (B, T), generator=gen)

    def step() -> None:
        logits = model(tokens, **kw)
        loss = nn.functional.cross_entropy(logits.reshape(-1, CLASSES), target.reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def _build(size: str, family: str, impl: str) -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    model = build_memory_model(family, VOCAB, CLASSES, size)
    if impl == "nn.LSTM":
        width, layers = _width(model)
        return LSTMSequenceModel(VOCAB, CLASSES, width, layers), {}
    return model, ({"reference": True} if impl == "reference" else {})


def peak_row(size: str, family: str, impl: str, B: int, T: int) -> float | None:
    """Peak resident MiB of one training step (call in a fresh process)."""
    model, kw = _build(size, family, impl)
    return peak_memory_mb(_step_fn(model, B, T, **kw))


def _peak_in_subprocess(row: dict[str, Any], threads: int) -> float | None:
    code = (
        "import json, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from neural_attention_memory.bench.mann import peak_row\n"
        f"print(json.dumps(peak_row({row['size']!r}, {row['family']!r}, {row['impl']!r}, "
        f"{row['B']}, {row['T']})))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = None
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
        )
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as err:
        detail = proc.stderr.strip().splitlines()[-1:] if proc is not None else []
        print(f"peak memory of {row['family']} {row['impl']} not measured: {err} {detail}")
        return None


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["size"], r["family"]) for r in rows}, key=lambda g: (g[0] != "quick", g))
    impls = ["fast", "reference", "nn.LSTM"]
    colors = {"fast": "tab:blue", "reference": "tab:gray", "nn.LSTM": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "step_ms", "train step (ms)"),
        (axes[1], "peak_mb", "peak MiB"),
    ):
        ax.set_ylabel(label)
        if not any(r.get(key) for r in rows):
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            continue
        for i, impl in enumerate(impls):
            xs, ys = [], []
            for g, (size, family) in enumerate(groups):
                for r in rows:
                    if (r["size"], r["family"], r["impl"]) == (size, family, impl) and r.get(key):
                        xs.append(g + (i - 1) * 0.27)
                        ys.append(r[key])
            ax.bar(xs, ys, width=0.27, label=impl, color=colors[impl])
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{f}\n{s}" for s, f in groups])
        ax.set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"LSAM and NAM-TM training step, {torch.get_num_threads()} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    quick: bool = False,
    out_dir: str | Path = "bench_results",
    threads: int = 1,
    shapes: tuple[tuple[str, int, int], ...] | None = None,
    reps: int | None = None,
    verbose: bool = True,
    memory: bool = True,
) -> dict[str, Any]:
    """Time every (size, model, implementation); write ``mann.json`` and ``mann.png``.

    ``memory=False`` skips the peak-memory probes (one fresh process per row).
    """
    set_threads(threads)
    shapes = (QUICK_SHAPES if quick else FULL_SHAPES) if shapes is None else shapes
    reps = (3 if quick else 5) if reps is None else reps
    budget = 8.0 if quick else 40.0
    errors = check_equivalence()
    refused = sorted(n for n, e in errors.items() if not e < TOL)
    for n in refused:
        print(f"refusing to time {n!r}: it differs from its line-by-line twin by {errors[n]:.3g}")
    rows: list[dict[str, Any]] = []
    steps: list[Callable[[], None]] = []
    for size, B, T in shapes:
        for family in ("lsam", "nam-tm"):
            if family in refused:
                continue
            width = layers = 0
            for impl in ("fast", "reference", "nn.LSTM"):
                m, kw = _build(size, family, impl)
                if impl == "fast":
                    width, layers = _width(m)
                n = max(1, reps // 2) if impl == "reference" else reps
                step = _step_fn(m, B, T, **kw)
                ms = time_fn(step, reps=n, warmup=1, budget_s=budget)
                steps.append(step)
                rows.append(
                    {
                        "size": size,
                        "family": family,
                        "impl": impl,
                        "B": B,
                        "T": T,
                        "width": width,
                        "layers": layers,
                        "params": count_parameters(m),
                        "step_ms": ms,
                    }
                )
                if verbose:
                    print(f"{size:>6} {family:>7} {impl:>10} B={B} T={T}: {ms:9.1f} ms", flush=True)
    del steps
    # Peak memory in a fresh process per row: the probe retunes malloc (every large buffer mmapped),
    # which would slow the allocation-heavy recurrences timed here, and a warm heap hides peaks.
    for row in rows:
        row["peak_mb"] = _peak_in_subprocess(row, threads) if memory else None

    def get(size: str, family: str, impl: str, key: str) -> float | None:
        for r in rows:
            if (r["size"], r["family"], r["impl"]) == (size, family, impl):
                return r[key]
        return None

    ratios: dict[str, float | None] = {}
    targets: dict[str, dict[str, Any]] = {}
    for size, _, _ in shapes:
        fast_tm, ref_tm = (
            get(size, "nam-tm", "fast", "step_ms"),
            get(size, "nam-tm", "reference", "step_ms"),
        )
        fast_ls, lstm = (
            get(size, "lsam", "fast", "step_ms"),
            get(size, "lsam", "nn.LSTM", "step_ms"),
        )
        ref_ls = get(size, "lsam", "reference", "step_ms")
        tm_lstm = get(size, "nam-tm", "nn.LSTM", "step_ms")
        pairs = {
            f"{size}: NAM-TM reference / fast (step)": (ref_tm, fast_tm, 3.0, ">="),
            f"{size}: LSAM fast / nn.LSTM (step)": (fast_ls, lstm, 3.0, "<="),
            f"{size}: LSAM reference / fast (step)": (ref_ls, fast_ls, None, None),
            f"{size}: NAM-TM fast / nn.LSTM (step)": (fast_tm, tm_lstm, None, None),
            f"{size}: NAM-TM reference / fast (peak)": (
                get(size, "nam-tm", "reference", "peak_mb"),
                get(size, "nam-tm", "fast", "peak_mb"),
                None,
                None,
            ),
        }
        for key, (num, den, target, op) in pairs.items():
            ratios[key] = num / den if num and den else None
            if target is not None:
                value = ratios[key]
                met = value is not None and (value >= target if op == ">=" else value <= target)
                targets[key] = {"target": f"{op} {target}", "measured": value, "met": met}
    result = {
        "config": {
            "threads": threads,
            "shapes": [list(s) for s in shapes],
            "reps": reps,
            "quick": quick,
            "torch": torch.__version__,
            "vocab": VOCAB,
            "classes": CLASSES,
        },
        "equivalence_max_abs_error": errors,
        "refused": refused,
        "rows": rows,
        "ratios": ratios,
        "targets": targets,
    }
    write_outputs(
        out_dir,
        "mann",
        result,
        lambda path: _plot(rows, path),
        tables=[
            (
                ["size", "model", "impl", "B x T", "params", "train step ms", "peak MiB"],
                [
                    [
                        r["size"],
                        r["family"],
                        r["impl"],
                        f"{r['B']} x {r['T']}",
                        f"{r['params'] / 1e6:.2f}M",
                        r["step_ms"],
                        r["peak_mb"],
                    ]
                    for r in rows
                ],
            ),
            (
                ["ratio", "measured", "target", "met"],
                [
                    [k, v, targets.get(k, {}).get("target"), targets.get(k, {}).get("met")]
                    for k, v in ratios.items()
                ],
            ),
        ],
        verbose=verbose,
    )
    return result


register_benchmark("mann", run)
