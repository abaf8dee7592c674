"""``nam bench lra``: training-step time and peak memory of the LRA encoders vs sequence length.

One :class:`~..models.transformer.SequenceClassifier` per attention (same width, depth, heads and
parameters; only the attention kernel differs), timed on a forward + cross-entropy + backward step
at ``T`` = 1K, 2K, 4K, 8K tokens (``--quick``: 512, 1K, 2K):

* ``nam``: non-causal NAM attention (``functional.nam_attention``);
* ``linear``: Katharopoulos et al. elu+1 linear attention;
* ``softmax``: ``scaled_dot_product_attention`` with PyTorch's default CPU kernel (a fused,
  memory-efficient kernel when there is no mask);
* ``softmax-math``: the same through SDPA's math backend, which stores the `T x T` score matrix
  like the LRA-era implementations the paper compared with.

Before timing, the NAM and linear kernels are checked against explicit quadratic-form references
in float64; a kernel that disagrees is refused, not timed. Ratios (higher = NAM better) are taken
within this one run. Writes ``lra.json`` and ``lra.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..functional import unit_norm
from ..models.transformer import (
    SequenceClassifier,
    TransformerConfig,
    _nam_attention,
    linear_attention,
)
from .common import (
    check_targets,
    default_clock,
    peak_memory_mb,
    set_threads,
    time_fn,
    write_outputs,
)
from .registry import register_benchmark

__all__ = ["ENCODER", "check_kernels", "run"]

#: The benchmarked encoder (LRA-like width, CPU-sized depth); batch of one sequence.
ENCODER = {"d_model": 128, "num_layers": 2, "num_heads": 4, "d_ff": 256}
BATCH = 1
FULL_T = (1024, 2048, 4096, 8192)
QUICK_T = (512, 1024, 2048)
MODELS = ("nam", "linear", "softmax", "softmax-math")


def check_kernels(T: int = 37) -> dict[str, float]:
    """Max abs error (float64) of the NAM and linear kernels against quadratic-form references,
    with padding: ``sum_s cos(q_t, k_s) v_s`` and ``sum_s phi(q_t).phi(k_s) v_s / sum_s ...``."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, T, 3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[1, T // 2 :] = True
    keep = (~mask)[:, None, None, :].to(q.dtype)  # [B, 1, 1, S]
    cos = torch.einsum("bthd,bshd->bhts", unit_norm(q), unit_norm(k)) * keep
    ref_nam = torch.einsum("bhts,bshv->bthv", cos, v) * (~mask)[:, :, None, None]
    s = torch.einsum("bthd,bshd->bhts", F.elu(q) + 1, F.elu(k) + 1) * keep
    ref_lin = (
        torch.einsum("bhts,bshv->bthv", s / s.sum(-1, keepdim=True), v) * (~mask)[:, :, None, None]
    )
    return {
        "nam": float((_nam_attention(q, k, v, mask) - ref_nam).abs().max()),
        "linear": float((linear_attention(q, k, v, mask, eps=0.0) - ref_lin).abs().max()),
    }


def _model(kind: str) -> tuple[torch.nn.Module, Callable[[], Any]]:
    attention = "softmax" if kind.startswith("softmax") else kind
    cfg = TransformerConfig(
        **ENCODER,
        attention=attention,
        vocab_size=256,
        padding_idx=None,
        max_len=max(FULL_T) + 1,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = SequenceClassifier(cfg, num_classes=10)
    ctx = (lambda: sdpa_kernel([SDPBackend.MATH])) if kind == "softmax-math" else nullcontext
    return model, ctx


def _measure(kind: str, T: int, reps: int, budget_s: float) -> dict[str, float | None]:
    model, ctx = _model(kind)
    g = torch.Generator().manual_seed(T)
    tokens = torch.randint(0, 256, (BATCH, T), generator=g)
    labels = torch.randint(0, 10, (BATCH,), generator=g)

    def step() -> None:
        with ctx():
            loss = F.cross_entropy(model(tokens), labels)
            loss.backward()
        model.zero_grad(set_to_none=True)

    ms = time_fn(step, reps=reps, warmup=1, budget_s=budget_s)
    peak = peak_memory_mb(step)
    return {"step_ms": ms, "peak_mb": peak}


def _ratio(rows: list[dict], T: int, peer: str, key: str) -> float | None:
    def get(kind: str) -> float | None:
        return next(
            (r[key] for r in rows if r["model"] == kind and r["T"] == T and r.get(key)), None
        )

    a, b = get("nam"), get(peer)
    return None if a is None or b is None else b / a


def _plot(rows: list[dict], path: Path, threads: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 2, i) for i in (1, 2)]
    for ax, key, title in zip(
        axes,
        ("step_ms", "peak_mb"),
        ("training step: forward + backward (ms)", "training step peak memory (MiB)"),
        strict=True,
    ):
        for kind in MODELS:
            pts = [(r["T"], r[key]) for r in rows if r["model"] == kind and r.get(key)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs, ys, marker="o", label=kind, linestyle="--" if "softmax" in kind else "-"
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    e = ENCODER
    fig.suptitle(
        f"LRA encoder ({e['num_layers']} layers, width {e['d_model']}, {e['num_heads']} heads, "
        f"batch {BATCH}, {threads} thread(s))"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(
    quick: bool = False,
    out_dir: str | Path = "bench_results",
    threads: int = 1,
    lengths: tuple[int, ...] | None = None,
    models: tuple[str, ...] = MODELS,
    reps: int | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the sweep; returns (and writes to ``out_dir/lra.json``) rows, ratios and targets."""
    set_threads(threads)
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise ValueError(f"models: expected a subset of {MODELS}, got {bad}")
    lengths = (QUICK_T if quick else FULL_T) if lengths is None else tuple(lengths)
    if any(t < 1 or t > max(FULL_T) for t in lengths):
        raise ValueError(f"lengths: expected values in 1..{max(FULL_T)}, got {lengths}")
    reps = (2 if quick else 3) if reps is None else reps
    errors = check_kernels()
    refused = {n for n, e in errors.items() if not e < 1e-9}
    for n in sorted(refused):
        print(f"refusing to time {n!r}: its kernel differs from the reference by {errors[n]:.3g}")
    rows: list[dict[str, Any]] = []
    for T in lengths:
        for kind in models:
            if kind in refused:
                continue
            res = _measure(kind, T, reps, budget_s=10.0 if quick else 30.0)
            rows.append({"model": kind, "T": T, **res})
            if verbose:
                print(
                    f"T={T:>5} {kind:>12}: step {res['step_ms']:10.1f} ms  peak {res['peak_mb'] or 0:8.1f} MiB",
                    flush=True,
                )
    T_s = 4096 if 4096 in lengths else max(lengths)
    T_m = max(lengths)
    ratios = {
        f"T={T_s} step: softmax / nam": _ratio(rows, T_s, "softmax", "step_ms"),
        f"T={T_s} step: softmax-math / nam": _ratio(rows, T_s, "softmax-math", "step_ms"),
        f"T={T_s} step: linear / nam": _ratio(rows, T_s, "linear", "step_ms"),
        f"T={T_m} peak: softmax / nam": _ratio(rows, T_m, "softmax", "peak_mb"),
        f"T={T_m} peak: softmax-math / nam": _ratio(rows, T_m, "softmax-math", "peak_mb"),
        f"T={T_m} peak: linear / nam": _ratio(rows, T_m, "linear", "peak_mb"),
    }
    targets = {
        f"T={T_s} step: softmax / nam": 2.0,
        f"T={T_m} peak: softmax / nam": 3.0,
        f"T={T_m} peak: softmax-math / nam": 3.0,
    }
    result = {
        "config": {
            **ENCODER,
            "batch": BATCH,
            "threads": threads,
            "clock": default_clock(),
            "lengths": list(lengths),
            "reps": reps,
            "torch": torch.__version__,
            "quick": quick,
        },
        "kernel_check_max_abs_error": errors,
        "refused": sorted(refused),
        "rows": rows,
        "ratios": ratios,
        "targets": check_targets(ratios, targets),
    }
    write_outputs(
        out_dir,
        "lra",
        result,
        lambda path: _plot(rows, path, threads),
        tables=[
            (
                ["T", "model", "step ms", "peak MiB"],
                [[r["T"], r["model"], r["step_ms"], r["peak_mb"]] for r in rows],
            ),
            (
                ["ratio (higher = NAM better)", "measured", "target"],
                [[k, v, targets.get(k)] for k, v in ratios.items()],
            ),
        ],
        verbose=verbose,
    )
    return result


register_benchmark("lra", run)
