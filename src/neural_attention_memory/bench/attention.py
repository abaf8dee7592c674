"""``nam bench attention``: NAM attention against ``scaled_dot_product_attention`` and its own twins.

Sweeps the sequence length ``T`` at ``B=2, H=4, d=64`` (one thread by default), forward and
forward+backward, median time and peak added resident memory, for

* non-causal: ``nam`` (:func:`nam_attention`) vs ``sdpa`` (PyTorch SDPA, default CPU kernel);
* causal: ``chunk`` (no gates), ``chunk-gated`` (write, erase and read gates), ``recurrent`` vs
  ``sdpa-causal`` (``is_causal=True``) and ``sdpa-math-causal`` (the math backend, which stores the
  `T x T` score matrix; only up to 4,096 tokens);
* bfloat16: ``chunk-gated-bf16`` vs ``sdpa-causal-bf16`` (inputs and outputs in bfloat16).

Each NAM form is first checked against its naive twin in float64 (outputs, final state, all
gradients; the bfloat16 form against float64 on the same rounded inputs, to bfloat16 accuracy); a
form that fails is refused, not timed. Timings run in this process (ratios against the named peer,
so both sides see the same machine); peak memory is measured afterwards in a fresh process per form
(one per row for the long rows), so SDPA and NAM never share an allocator. The full sweep also measures the forward+backward peak of
``chunk-gated`` at ``T = 262,144`` and ``T = 1,048,576`` (``B = 1``). The achieved GFLOP/s of the
causal forward counts the multiply-adds of the chunk algorithm's matrix products (the triangular
inverse left out, so it is a lower bound) against a 1024 x 1024 float32 matmul timed in the same
rounds as the forms at the ratio's length. Times are the fastest of ``reps`` runs (process CPU time with one thread): on a shared
machine the least disturbed run; the forms of one length are timed round-robin, so that every
ratio compares runs under the same load. Writes ``attention.json`` and ``attention.png``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
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
    write_outputs,
)
from .registry import register_benchmark

__all__ = ["FORMS", "check_equivalence", "chunk_flops", "run"]

B, H, D = 2, 4, 64
FULL_T = (256, 1024, 4096, 8192, 16384)
QUICK_T = (256, 1024, 4096)
RATIO_T = 4096
LONG_T = (262144, 1048576)  # memory-only rows of the full sweep (B = 1)
CHUNK = 64


@dataclass
class Form:
    """One benchmarked attention. ``fn(q, k, v, gates) -> out``; inputs `[B, T, H, d]` (or
    `[B, H, T, d]` for SDPA, its native layout) in ``dtype``."""

    fn: Callable[..., torch.Tensor]
    causal: bool
    layout: str  # "bthd" (ours) or "bhtd" (SDPA)
    gated: bool = False
    max_T: int = 1 << 30
    twin: Callable[..., Any] | None = None  # slow reference for the equivalence check
    dtype: torch.dtype = torch.float32
    peer: str | None = None  # the SDPA form its memory is compared with


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
    return F.chunk_causal_nam_attention(q, k, v, *gates, chunk_size=CHUNK)[0]


def _recurrent(q, k, v, gates):
    return F.recurrent_causal_nam_attention(q, k, v, *gates)[0]


BF16 = torch.bfloat16
FORMS: dict[str, Form] = {
    "nam": Form(_nam, causal=False, layout="bthd", twin=F.naive_nam_attention, peer="sdpa"),
    "sdpa": Form(_sdpa(False), causal=False, layout="bhtd"),
    "chunk": Form(
        _chunk, causal=True, layout="bthd", twin=F.naive_causal_nam_attention, peer="sdpa-causal"
    ),
    "chunk-gated": Form(
        _chunk,
        causal=True,
        layout="bthd",
        gated=True,
        twin=F.naive_causal_nam_attention,
        peer="sdpa-causal",
    ),
    "recurrent": Form(
        _recurrent,
        causal=True,
        layout="bthd",
        max_T=4096,
        twin=F.naive_causal_nam_attention,
        peer="sdpa-causal",
    ),
    "sdpa-causal": Form(_sdpa(True), causal=True, layout="bhtd"),
    "sdpa-math-causal": Form(
        _sdpa(True, math_backend=True), causal=True, layout="bhtd", max_T=4096
    ),
    "chunk-gated-bf16": Form(
        _chunk,
        causal=True,
        layout="bthd",
        gated=True,
        twin=F.naive_causal_nam_attention,
        dtype=BF16,
        peer="sdpa-causal-bf16",
    ),
    "sdpa-causal-bf16": Form(_sdpa(True), causal=True, layout="bhtd", dtype=BF16, max_T=4096),
}


def _tolerance(form: Form) -> float:
    """Refusal threshold of the twin check: float64 exactness, or the form's own dtype's."""
    return 1e-8 if form.dtype not in (torch.bfloat16, torch.float16) else 3e-2


def check_equivalence(forms: dict[str, Form] | None = None, T: int = 70) -> dict[str, float]:
    """Max difference (outputs and all gradients) of each NAM form against its naive twin: float64,
    small shapes, ragged final chunk and (for gated forms) all three gates. Half-precision forms run
    in their dtype against the twin in float64 on the same rounded inputs; their error is relative
    to the largest reference value."""
    forms = FORMS if forms is None else forms
    g = torch.Generator().manual_seed(0)
    errors: dict[str, float] = {}
    for name, form in forms.items():
        if form.twin is None:
            continue
        half = form.dtype in (torch.bfloat16, torch.float16)
        dt = form.dtype if half else torch.float64
        q, k, v = (torch.randn(2, T, 2, 8, generator=g, dtype=torch.float64) for _ in range(3))
        gates = (
            tuple(torch.rand(2, T, 2, generator=g, dtype=torch.float64) for _ in range(3))
            if form.gated
            else (None, None, None)
        )
        q, k, v = (x.to(dt) for x in (q, k, v))
        gates = tuple(None if x is None else x.to(dt) for x in gates)
        cot = torch.randn(2, T, 2, 8, generator=g, dtype=torch.float64)
        try:
            errors[name] = _max_error(form, q, k, v, gates, cot, relative=half)
        except Exception as err:  # a form that crashes is as wrong as one that differs
            print(f"equivalence check of {name!r} raised {type(err).__name__}: {err}")
            errors[name] = float("inf")
    return errors


def _max_error(form, q, k, v, gates, cot, relative: bool) -> float:
    def run(fn, q, k, v, gates, to64: bool):
        leaves = [x.detach().clone() for x in (q, k, v, *[x for x in gates if x is not None])]
        if to64:
            leaves = [x.double() for x in leaves]
        for x in leaves:
            x.requires_grad_()
        it = iter(leaves[3:])
        gs = tuple(None if x is None else next(it) for x in gates)
        out = fn(*leaves[:3], gs)
        grads = torch.autograd.grad((out.double() * cot).sum(), leaves, allow_unused=True)
        return out.double(), [
            torch.zeros_like(x) if gr is None else gr for gr, x in zip(grads, leaves, strict=True)
        ]

    def twin(q, k, v, gs):
        return form.twin(q, k, v, *gs)[0] if form.causal else form.twin(q, k, v)

    out, ga = run(form.fn, q, k, v, gates, to64=False)
    ref, gb = run(twin, q, k, v, gates, to64=True)
    err = 0.0
    for a, b in zip([out, *ga], [ref, *gb], strict=True):
        e = (a.double() - b).abs().max().item()
        if relative:
            e /= max(b.abs().max().item(), 1e-30)
        err = max(err, e)
    return err if math.isfinite(err) else float("inf")


def _inputs(form: Form, T: int, grad: bool, g: torch.Generator, batch: int = B):
    shape = (batch, T, H, D) if form.layout == "bthd" else (batch, H, T, D)
    q, k, v = (
        torch.randn(shape, generator=g).to(form.dtype).requires_grad_(grad) for _ in range(3)
    )
    gates = (None, None, None)
    if form.gated:
        # Typical learned-gate values; strictly inside (0, 1).
        gates = tuple(
            (0.05 + 0.9 * torch.rand(batch, T, H, generator=g)).to(form.dtype).requires_grad_(grad)
            for _ in range(3)
        )
    return q, k, v, gates


def _callables(form: Form, T: int, batch: int = B, with_fwd: bool = True):
    """``(fwd, fwd_bwd, one_input_bytes)`` closures over fresh inputs of length ``T`` (``fwd`` is
    None without ``with_fwd``: its inputs are then never allocated)."""
    g = torch.Generator().manual_seed(T)
    fwd = None
    if with_fwd:
        q, k, v, gates = _inputs(form, T, False, g, batch)

        def fwd():
            with torch.no_grad():
                form.fn(q, k, v, gates)

    qg, kg, vg, gg = _inputs(form, T, True, g, batch)
    cot = torch.randn(qg.shape, generator=g).to(form.dtype)
    leaves = [qg, kg, vg, *[x for x in gg if x is not None]]

    def fwd_bwd():
        out = form.fn(qg, kg, vg, gg)
        torch.autograd.grad(out, leaves, cot)

    return fwd, fwd_bwd, qg.numel() * qg.element_size()


def _time_round_robin(
    forms: dict[str, Form], T: int, reps: int, budget_s: float
) -> dict[str, dict[str, float]]:
    """Fastest of ``reps`` runs (milliseconds on :func:`default_clock`) of every form at length
    ``T``, forward and forward+backward, timed round-robin: each round runs every form once,
    so all of them see the same machine load and their ratios do too; the 1024 x 1024 sgemm
    of the GFLOP/s ratio runs in every round as well (``"sgemm"``: ``{"ms": ...}``). Stops
    early, after at least one round, once ``budget_s`` seconds are spent."""
    import time

    now = time.process_time if default_clock() == "cpu" else time.perf_counter
    calls = {name: _callables(form, T)[:2] for name, form in forms.items()}
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    calls["sgemm"] = (lambda: a @ b, None)
    for fwd, fwd_bwd in calls.values():  # warm-up (and the kernels' first build)
        fwd()
        if fwd_bwd is not None:
            fwd_bwd()
    best = {name: {"fwd_ms": math.inf, "fwd_bwd_ms": math.inf} for name in forms}
    best["sgemm"] = {"ms": math.inf}
    start = time.perf_counter()
    for _ in range(reps):
        for name, (fwd, fwd_bwd) in calls.items():
            keys = (("fwd_ms", fwd), ("fwd_bwd_ms", fwd_bwd)) if fwd_bwd else (("ms", fwd),)
            for key, fn in keys:
                t0 = now()
                fn()
                best[name][key] = min(best[name][key], (now() - t0) * 1e3)
        if time.perf_counter() - start > budget_s:
            break
    return best


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def memory_rows(
    name: str, lengths: list[int], batch: int = B, fwd: bool = True
) -> list[dict[str, float | None]]:
    """Peak added resident memory (MiB) of one form at each length; meant to run in a fresh
    process (the probe maps every large buffer on its own, so rows do not hide each other)."""
    form = FORMS[name]
    out = []
    for T in lengths:
        f, fb, one = _callables(form, T, batch, with_fwd=fwd)
        res: dict[str, float | None] = {"fwd_peak_mb": peak_memory_mb(f) if fwd else None}
        res["fwd_bwd_peak_mb"] = peak_memory_mb(fb)
        res["process_peak_mb"] = _status_mb("VmHWM")  # whole process: inputs, cotangent, torch
        res["one_input_mb"] = one / 2**20
        out.append(res)
        del f, fb
    return out


def _memory_in_subprocess(
    name: str, lengths: list[int], threads: int, batch: int = B, fwd: bool = True
) -> list[dict[str, float | None]]:
    """:func:`memory_rows` in a fresh process: one process per form, apart from the timings."""
    code = (
        "import json, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from neural_attention_memory.bench.attention import memory_rows\n"
        f"print(json.dumps(memory_rows({name!r}, {list(lengths)!r}, {batch}, {fwd})))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = None
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=3600
        )
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as err:
        detail = proc.stderr.strip().splitlines()[-1:] if proc is not None else []
        print(f"peak memory of {name} at T={lengths} not measured: {err} {detail}")
        return [{"fwd_peak_mb": None, "fwd_bwd_peak_mb": None} for _ in lengths]


def chunk_flops(T: int, batch: int, heads: int, d: int, C: int, erase: bool) -> float:
    """Floating-point operations of the causal chunk forward's matrix products (2 per
    multiply-add; the triangular inverse is not counted).

    Per chunk and head: ``Q S^T``, ``U^T K`` (``C d^2`` each), ``tril(Q K^T)``, ``P U``
    (``C^2 d`` each); with erase also ``K K^T``, ``A^{-1} [W V, E K]`` (``3 C^2 d``) and
    ``W_k S^T`` (``C d^2``).
    """
    n = -(-T // C) * batch * heads
    macs = 2 * C * d * d + 2 * C * C * d
    if erase:
        macs += C * d * d + 3 * C * C * d
    return 2.0 * n * macs


def _get(rows: list[dict], form: str, T: int, key: str) -> float | None:
    for r in rows:
        if r["form"] == form and r["T"] == T and r.get(key) is not None:
            return r[key]
    return None


def _ratio(rows: list[dict], T: int, num: str, den: str, key: str) -> float | None:
    a, b = _get(rows, num, T, key), _get(rows, den, T, key)
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
    memory: bool = True,
    long_lengths: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Run the sweep; returns (and writes to ``out_dir/attention.json``) rows, ratios and checks.

    ``memory=False`` skips the peak-memory subprocesses; ``long_lengths`` (default: ``LONG_T`` in
    the full sweep, none with ``quick``) are the memory-only rows of ``chunk-gated`` at ``B = 1``.
    """
    set_threads(threads)
    forms = FORMS if forms is None else forms
    lengths = (QUICK_T if quick else FULL_T) if lengths is None else tuple(lengths)
    long_lengths = (() if quick else LONG_T) if long_lengths is None else tuple(long_lengths)
    reps = (3 if quick else 7) if reps is None else reps
    errors = check_equivalence(forms)
    refused = {n for n, e in errors.items() if not e < _tolerance(forms[n])}
    for n in sorted(refused):
        print(f"refusing to time {n!r}: it differs from its naive twin by {errors[n]:.3g}")
    todo = [
        (T, name, form)
        for T in lengths
        for name, form in forms.items()
        if name not in refused and T <= form.max_T
    ]
    rows: list[dict[str, Any]] = []
    timed: dict[int, dict[str, dict[str, float]]] = {}
    for T in lengths:  # every form of one length round-robin (see _time_round_robin)
        at_T = {name: form for t, name, form in todo if t == T}
        timed[T] = _time_round_robin(at_T, T, reps, budget_s=30.0 if quick else 1200.0)
    T_r = RATIO_T if RATIO_T in lengths else max(lengths)
    # the sgemm timed in the same rounds as the forms at the ratio's length
    sgemm = 2 * 1024**3 / (timed[T_r]["sgemm"]["ms"] * 1e-3) / 1e9
    for T, name, form in todo:
        res = timed[T][name]
        row: dict[str, Any] = {"form": name, "T": T, **res}
        if form.fn is _chunk and form.dtype == torch.float32:
            flops = chunk_flops(T, B, H, D, min(CHUNK, T), erase=form.gated)
            row["fwd_gflops"] = flops / (res["fwd_ms"] * 1e-3) / 1e9
        rows.append(row)
        if verbose:
            print(
                f"T={T:>6} {name:>17}: fwd {res['fwd_ms']:9.2f} ms  fwd+bwd {res['fwd_bwd_ms']:9.2f} ms",
                flush=True,
            )
    # Memory after all timings, each row in its own process (see the module docstring).
    for name in forms:
        mine = [r for r in rows if r["form"] == name]
        if not mine:
            continue
        if memory:
            peaks = _memory_in_subprocess(name, [r["T"] for r in mine], threads)
        else:
            peaks = [{"fwd_peak_mb": None, "fwd_bwd_peak_mb": None} for _ in mine]
        for r, p in zip(mine, peaks, strict=True):
            r.update(p)
    for row in rows:
        peer = forms[row["form"]].peer
        a = row.get("fwd_bwd_peak_mb")
        b = None if peer is None else _get(rows, peer, row["T"], "fwd_bwd_peak_mb")
        row["fwd_bwd_peak_vs_sdpa"] = None if not a or not b else a / b
    long_rows = []
    if memory and "chunk-gated" in forms and "chunk-gated" not in refused:
        for T in long_lengths:  # a process each: the 1M row alone holds several GiB
            (res,) = _memory_in_subprocess("chunk-gated", [T], threads, batch=1, fwd=False)
            long_rows.append({"form": "chunk-gated", "T": T, "B": 1, **res})
            if verbose:
                print(f"T={T:>7} chunk-gated B=1: fwd+bwd peak {res.get('fwd_bwd_peak_mb')} MiB")
    T_m = max(lengths)
    ratios: dict[str, float | None] = {
        f"T={T_r} non-causal fwd: sdpa / nam": _ratio(rows, T_r, "nam", "sdpa", "fwd_ms"),
    }
    for T in dict.fromkeys((T_r, T_m)):
        for key, label in (("fwd_ms", "fwd"), ("fwd_bwd_ms", "fwd+bwd")):
            for form in ("chunk-gated", "chunk"):
                ratios[f"T={T} causal {label}: sdpa-causal / {form}"] = _ratio(
                    rows, T, form, "sdpa-causal", key
                )
    gf = _get(rows, "chunk-gated", T_r, "fwd_gflops")
    gf0 = _get(rows, "chunk", T_r, "fwd_gflops")
    ratios[f"T={T_r} causal fwd GFLOP/s: chunk-gated / sgemm 1024"] = gf and gf / sgemm
    ratios[f"T={T_r} causal fwd GFLOP/s: chunk / sgemm 1024"] = gf0 and gf0 / sgemm
    ratios[f"T={T_r} causal fwd: recurrent / chunk-gated"] = _ratio(
        rows, T_r, "chunk-gated", "recurrent", "fwd_ms"
    )
    ratios[f"T={T_r} causal fwd: sdpa-causal-bf16 / chunk-gated-bf16"] = _ratio(
        rows, T_r, "chunk-gated-bf16", "sdpa-causal-bf16", "fwd_ms"
    )
    ratios[f"T={T_r} causal fwd+bwd: sdpa-causal-bf16 / chunk-gated-bf16"] = _ratio(
        rows, T_r, "chunk-gated-bf16", "sdpa-causal-bf16", "fwd_bwd_ms"
    )
    for form in ("chunk-gated", "chunk", "chunk-gated-bf16"):
        peer = forms[form].peer if form in forms else None
        for T in dict.fromkeys((T_r, T_m)):
            if peer is not None:
                ratios[f"T={T} fwd+bwd peak: {peer} / {form}"] = _ratio(
                    rows, T, form, peer, "fwd_bwd_peak_mb"
                )
    targets = {
        f"T={T_r} non-causal fwd: sdpa / nam": 30.0,
        f"T={T_r} causal fwd: sdpa-causal / chunk-gated": 4.0,
        f"T={T_r} causal fwd+bwd: sdpa-causal / chunk-gated": 5.0,
        f"T={T_r} causal fwd GFLOP/s: chunk-gated / sgemm 1024": 0.5,
        f"T={T_m} fwd+bwd peak: sdpa-causal / chunk-gated": 1.0,
    }
    if T_m != T_r:
        targets[f"T={T_m} causal fwd: sdpa-causal / chunk-gated"] = 20.0
        targets[f"T={T_m} causal fwd+bwd: sdpa-causal / chunk-gated"] = 20.0
    checks = check_targets(ratios, targets)
    # Upper limits on the long rows (lower = better).
    limits = {262144: ("fwd+bwd peak / one input", 10.0), 1048576: ("process peak GiB", 12.0)}
    for r in long_rows:
        if r["T"] not in limits:
            continue
        label, limit = limits[r["T"]]
        if r["T"] == 262144:
            val = r.get("fwd_bwd_peak_mb") and r["fwd_bwd_peak_mb"] / r["one_input_mb"]
        else:
            val = r.get("process_peak_mb") and r["process_peak_mb"] / 1024
        checks[f"T={r['T']} B=1 chunk-gated {label} (at most)"] = {
            "target": limit,
            "measured": val,
            "met": val is not None and val <= limit,
        }
    result = {
        "config": {
            "B": B,
            "H": H,
            "d": D,
            "chunk_size": CHUNK,
            "threads": threads,
            "clock": default_clock(),
            "lengths": list(lengths),
            "long_lengths": list(long_lengths),
            "reps": reps,
            "torch": torch.__version__,
            "quick": quick,
            "sgemm_1024_gflops": sgemm,
        },
        "equivalence_max_error": errors,
        "refused": sorted(refused),
        "rows": rows,
        "long_rows": long_rows,
        "ratios": ratios,
        "targets": checks,
    }
    cols = (
        "T",
        "form",
        "fwd_ms",
        "fwd_bwd_ms",
        "fwd_peak_mb",
        "fwd_bwd_peak_mb",
        "fwd_bwd_peak_vs_sdpa",
        "fwd_gflops",
    )
    write_outputs(
        out_dir,
        "attention",
        result,
        lambda path: _plot(rows, path),
        tables=[
            (
                [
                    "T",
                    "form",
                    "fwd ms",
                    "fwd+bwd ms",
                    "fwd peak MiB",
                    "fwd+bwd peak MiB",
                    "peak vs SDPA",
                    "fwd GFLOP/s",
                ],
                [[r.get(c) for c in cols] for r in rows],
            ),
            (
                ["T (B=1)", "form", "fwd+bwd peak MiB", "x one input", "process peak MiB"],
                [
                    [
                        r["T"],
                        r["form"],
                        r.get("fwd_bwd_peak_mb"),
                        r.get("fwd_bwd_peak_mb") and r["fwd_bwd_peak_mb"] / r["one_input_mb"],
                        r.get("process_peak_mb"),
                    ]
                    for r in long_rows
                ],
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
