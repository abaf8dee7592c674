"""``nam bench attention``: NAM attention against ``scaled_dot_product_attention`` and its own twins.

Sweeps the sequence length ``T`` at ``B=2, H=4, d=64`` (one thread by default), forward and
forward+backward, median milliseconds and peak added resident memory, for

* non-causal: ``nam`` (:func:`nam_attention`) vs ``sdpa`` (PyTorch SDPA, default CPU kernel);
* causal: ``chunk`` (no gates), ``chunk-gated`` (write, erase and read gates), ``recurrent`` vs
  ``sdpa-causal`` (``is_causal=True``) and ``sdpa-math-causal`` (the math backend, which stores the
  `T x T` score matrix; only up to 4,096 tokens).

Each NAM form is first checked against its naive twin in float64 (outputs, final state, all
gradients); a form that fails is refused, not timed. Writes ``attention.json`` and ``attention.png``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as TF
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import functional as F
from .common import (
    check_targets,
    default_clock,
    peak_memory_mb,
    set_threads,
    time_fn,
    write_outputs,
)
from .registry import register_benchmark

__all__ = ["FORMS", "check_equivalence", "run"]

B, H, D = 2, 4, 64
FULL_T = (256, 512, 1024, 2048, 4096, 8192, 16384)
QUICK_T = (256, 1024, 4096)
RATIO_T = 4096


@dataclass
class Form:
    """One benchmarked attention. ``fn(q, k, v, gates) -> out``; inputs `[B, T, H, d]` (or
    `[B, H, T, d]` for SDPA, its native layout)."""

    fn: Callable[..., torch.Tensor]
    causal: bool
    layout: str  # "bthd" (ours) or "bhtd" (SDPA)
    gated: bool = False
    max_T: int = 1 << 30
    twin: Callable[..., Any] | None = None  # slow reference for the equivalence check


def _sdpa(causal: bool, math_backend: bool = False):
    def fn(q, k, v, gates):
        if math_backend:
            with sdpa_kernel(SDPBackend.MATH):
                return TF.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return TF.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return fn


def _nam(q, k, v, gates):
    return F.nam_attention(q, k, v)


def _chunk(q, k, v, gates):
    return F.chunk_causal_nam_attention(q, k, v, *gates)[0]


def _recurrent(q, k, v, gates):
    return F.recurrent_causal_nam_attention(q, k, v, *gates)[0]


FORMS: dict[str, Form] = {
    "nam": Form(_nam, causal=False, layout="bthd", twin=F.naive_nam_attention),
    "sdpa": Form(_sdpa(False), causal=False, layout="bhtd"),
    "chunk": Form(_chunk, causal=True, layout="bthd", twin=F.naive_causal_nam_attention),
    "chunk-gated": Form(
        _chunk, causal=True, layout="bthd", gated=True, twin=F.naive_causal_nam_attention
    ),
    "recurrent": Form(
        _recurrent, causal=True, layout="bthd", max_T=8192, twin=F.naive_causal_nam_attention
    ),
    "sdpa-causal": Form(_sdpa(True), causal=True, layout="bhtd"),
    "sdpa-math-causal": Form(
        _sdpa(True, math_backend=True), causal=True, layout="bhtd", max_T=4096
    ),
}


def check_equivalence(forms: dict[str, Form] | None = None, T: int = 70) -> dict[str, float]:
    """Max abs difference (outputs and all gradients) of each NAM form against its naive twin,
    float64, small shapes, ragged final chunk and (for gated forms) all three gates."""
    forms = FORMS if forms is None else forms
    g = torch.Generator().manual_seed(0)
    errors: dict[str, float] = {}
    for name, form in forms.items():
        if form.twin is None:
            continue
        q, k, v = (torch.randn(2, T, 2, 8, generator=g, dtype=torch.float64) for _ in range(3))
        gates = (
            tuple(torch.rand(2, T, 2, generator=g, dtype=torch.float64) for _ in range(3))
            if form.gated
            else (None, None, None)
        )
        leaves = [t.requires_grad_() for t in (q, k, v, *[x for x in gates if x is not None])]
        cot = torch.randn(2, T, 2, 8, generator=g, dtype=torch.float64)
        try:
            errors[name] = _max_error(form, q, k, v, gates, leaves, cot)
        except Exception as err:  # a form that crashes is as wrong as one that differs
            print(f"equivalence check of {name!r} raised {type(err).__name__}: {err}")
            errors[name] = float("inf")
    return errors


def _max_error(form, q, k, v, gates, leaves, cot) -> float:
    out = form.fn(q, k, v, gates)
    ref = form.twin(q, k, v, *gates)[0] if form.causal else form.twin(q, k, v)
    ga = torch.autograd.grad((out * cot).sum(), leaves, allow_unused=True)
    gb = torch.autograd.grad((ref * cot).sum(), leaves, allow_unused=True)
    err = (out - ref).abs().max().item()
    for a, b in zip(ga, gb, strict=True):
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        err = max(err, (a - b).abs().max().item())
    return err if math.isfinite(err) else float("inf")


def _inputs(form: Form, T: int, grad: bool, g: torch.Generator):
    shape = (B, T, H, D) if form.layout == "bthd" else (B, H, T, D)
    q, k, v = (torch.randn(shape, generator=g).requires_grad_(grad) for _ in range(3))
    gates = (None, None, None)
    if form.gated:
        # Typical learned-gate values; strictly inside (0, 1).
        gates = tuple(
            (0.05 + 0.9 * torch.rand(B, T, H, generator=g)).requires_grad_(grad) for _ in range(3)
        )
    return q, k, v, gates


def _callables(form: Form, T: int):
    """``(fwd, fwd_bwd)`` closures over fresh inputs of length ``T``."""
    g = torch.Generator().manual_seed(T)
    q, k, v, gates = _inputs(form, T, False, g)

    def fwd():
        with torch.no_grad():
            form.fn(q, k, v, gates)

    qg, kg, vg, gg = _inputs(form, T, True, g)
    cot = torch.randn((B, T, H, D) if form.layout == "bthd" else (B, H, T, D), generator=g)
    leaves = [qg, kg, vg, *[x for x in gg if x is not None]]

    def fwd_bwd():
        out = form.fn(qg, kg, vg, gg)
        torch.autograd.grad(out, leaves, cot)

    return fwd, fwd_bwd


def _time(form: Form, T: int, reps: int, budget_s: float) -> dict[str, float]:
    fwd, fwd_bwd = _callables(form, T)
    return {
        "fwd_ms": time_fn(fwd, reps=reps, warmup=1, budget_s=budget_s),
        "fwd_bwd_ms": time_fn(fwd_bwd, reps=reps, warmup=1, budget_s=budget_s),
    }


def _memory(form: Form, T: int) -> dict[str, float | None]:
    fwd, fwd_bwd = _callables(form, T)
    return {"fwd_peak_mb": peak_memory_mb(fwd), "fwd_bwd_peak_mb": peak_memory_mb(fwd_bwd)}


def _ratio(rows: list[dict], T: int, num: str, den: str, key: str) -> float | None:
    def get(form):
        for r in rows:
            if r["form"] == form and r["T"] == T and r.get(key) is not None:
                return r[key]
        return None

    a, b = get(num), get(den)
    return None if a is None or b is None or a == 0 else b / a


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, key, title in zip(
        axes,
        ("fwd_ms", "fwd_bwd_ms", "fwd_bwd_peak_mb"),
        ("forward (ms)", "forward + backward (ms)", "forward + backward peak memory (MiB)"),
        strict=True,
    ):
        for form in FORMS:
            pts = [(r["T"], r[key]) for r in rows if r["form"] == form and r.get(key)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", label=form, linestyle="--" if "sdpa" in form else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"NAM attention vs SDPA (B={B}, H={H}, d={D}, {torch.get_num_threads()} thread(s))"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    quick: bool = False,
    out_dir: str | Path = "bench_results",
    threads: int = 1,
    lengths: tuple[int, ...] | None = None,
    forms: dict[str, Form] | None = None,
    reps: int | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the sweep; returns (and writes to ``out_dir/attention.json``) rows, ratios and checks."""
    set_threads(threads)
    forms = FORMS if forms is None else forms
    lengths = (QUICK_T if quick else FULL_T) if lengths is None else tuple(lengths)
    reps = (3 if quick else 5) if reps is None else reps
    errors = check_equivalence(forms)
    refused = {n for n, e in errors.items() if not e < 1e-8}
    for n in sorted(refused):
        print(f"refusing to time {n!r}: it differs from its naive twin by {errors[n]:.3g}")
    todo = [
        (T, name, form)
        for T in lengths
        for name, form in forms.items()
        if name not in refused and T <= form.max_T
    ]
    # All timings first, then all memory readings, so nothing the memory probe does to the
    # allocator can touch a timing.
    rows: list[dict[str, Any]] = []
    for T, name, form in todo:
        res = _time(form, T, reps, budget_s=6.0 if quick else 20.0)
        rows.append({"form": name, "T": T, **res})
        if verbose:
            print(
                f"T={T:>6} {name:>17}: fwd {res['fwd_ms']:9.2f} ms  fwd+bwd {res['fwd_bwd_ms']:9.2f} ms",
                flush=True,
            )
    for row, (T, _, form) in zip(rows, todo, strict=True):
        row.update(_memory(form, T))
    T_r = RATIO_T if RATIO_T in lengths else max(lengths)
    T_m = max(lengths)
    ratios = {
        f"T={T_r} non-causal fwd: sdpa / nam": _ratio(rows, T_r, "nam", "sdpa", "fwd_ms"),
        f"T={T_r} causal fwd: sdpa-causal / chunk": _ratio(
            rows, T_r, "chunk", "sdpa-causal", "fwd_ms"
        ),
        f"T={T_r} causal fwd: recurrent / chunk": _ratio(rows, T_r, "chunk", "recurrent", "fwd_ms"),
        f"T={T_r} causal fwd+bwd: sdpa-causal / chunk": _ratio(
            rows, T_r, "chunk", "sdpa-causal", "fwd_bwd_ms"
        ),
        f"T={T_r} causal fwd: sdpa-causal / chunk-gated": _ratio(
            rows, T_r, "chunk-gated", "sdpa-causal", "fwd_ms"
        ),
        f"T={T_r} causal fwd+bwd: sdpa-causal / chunk-gated": _ratio(
            rows, T_r, "chunk-gated", "sdpa-causal", "fwd_bwd_ms"
        ),
        f"T={T_r} causal fwd+bwd peak: recurrent / chunk": _ratio(
            rows, T_r, "chunk", "recurrent", "fwd_bwd_peak_mb"
        ),
        f"T={T_r} causal fwd+bwd peak: sdpa-math-causal / chunk": _ratio(
            rows, T_r, "chunk", "sdpa-math-causal", "fwd_bwd_peak_mb"
        ),
        f"T={T_m} causal fwd+bwd peak: sdpa-causal / chunk": _ratio(
            rows, T_m, "chunk", "sdpa-causal", "fwd_bwd_peak_mb"
        ),
    }
    targets = {
        f"T={T_r} non-causal fwd: sdpa / nam": 30.0,
        f"T={T_r} causal fwd: sdpa-causal / chunk": 2.0,
        f"T={T_r} causal fwd: recurrent / chunk": 15.0,
        f"T={T_r} causal fwd+bwd: sdpa-causal / chunk": 1.5,
        f"T={T_m} causal fwd+bwd peak: sdpa-causal / chunk": 4.0,
    }
    result = {
        "config": {
            "B": B,
            "H": H,
            "d": D,
            "threads": threads,
            "clock": default_clock(),
            "lengths": list(lengths),
            "reps": reps,
            "torch": torch.__version__,
            "quick": quick,
        },
        "equivalence_max_abs_error": errors,
        "refused": sorted(refused),
        "rows": rows,
        "ratios": ratios,
        "targets": check_targets(ratios, targets),
    }
    cols = ("T", "form", "fwd_ms", "fwd_bwd_ms", "fwd_peak_mb", "fwd_bwd_peak_mb")
    write_outputs(
        out_dir,
        "attention",
        result,
        lambda path: _plot(rows, path),
        tables=[
            (
                ["T", "form", "fwd ms", "fwd+bwd ms", "fwd peak MiB", "fwd+bwd peak MiB"],
                [[r[c] for c in cols] for r in rows],
            ),
            (
                ["ratio (higher = NAM better)", "measured", "target"],
                [[k, v, targets.get(k)] for k, v in ratios.items()],
            ),
        ],
        verbose=verbose,
    )
    return result


register_benchmark("attention", run)
