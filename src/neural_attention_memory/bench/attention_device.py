"""NAM attention on an accelerator: the chunk form (fla's Triton kernels when importable, and the
pure-PyTorch fallback) against causal SDPA, forward and forward+backward, time and peak memory.

``python -m neural_attention_memory.bench.attention_device [--device cuda] [--out FILE]``; run by
``scripts/gpu_check.sh`` after the CUDA tests. On the CPU (``--device cpu``) it runs the same code
at small sizes, which is how the tests keep it working without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as TF

from .. import functional as F
from ..functional import _fla
from .common import format_table

__all__ = ["run_device"]

H, D = 4, 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    fn()  # warm-up (Triton compiles here)
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _peak_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _case(form: str, B: int, T: int, dtype: torch.dtype, device: torch.device):
    g = torch.Generator(device="cpu").manual_seed(T)
    bhtd = form == "sdpa-causal"
    shape = (B, H, T, D) if bhtd else (B, T, H, D)

    def rnd(*s):
        return torch.randn(*s, generator=g).to(device=device, dtype=dtype).requires_grad_()

    q, k, v = rnd(*shape), rnd(*shape), rnd(*shape)
    gates = [
        (0.05 + 0.9 * torch.rand(B, T, H, generator=g)).to(device, dtype).requires_grad_()
        for _ in range(3)
    ]
    cot = torch.randn(shape, generator=g).to(device, dtype)

    def call():
        if bhtd:
            return TF.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.chunk_causal_nam_attention(q, k, v, *gates)[0]

    leaves = [q, k, v] + ([] if bhtd else gates)

    def fwd():
        with torch.no_grad():
            call()

    def fwd_bwd():
        torch.autograd.grad(call(), leaves, cot)

    return fwd, fwd_bwd


def run_device(
    device: str = "cuda",
    lengths: tuple[int, ...] = (4096, 16384, 65536),
    B: int = 2,
    dtypes: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float32),
    reps: int = 5,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Time ``chunk-gated`` (fla path and PyTorch fallback) and ``sdpa-causal`` on ``device``."""
    dev = torch.device(device)
    forms = ["chunk-gated (pytorch)", "sdpa-causal"]
    if _fla.use_fla(torch.empty(0, device=dev)):
        forms.insert(0, "chunk-gated (fla)")
    rows = []
    old = os.environ.get("NAM_DISABLE_FLA")
    try:
        for dtype in dtypes:
            for T in lengths:
                for form in forms:
                    os.environ["NAM_DISABLE_FLA"] = "1" if "pytorch" in form else "0"
                    name = "sdpa-causal" if form == "sdpa-causal" else "chunk"
                    try:
                        fwd, fwd_bwd = _case(name, B, T, dtype, dev)
                        row = {
                            "form": form,
                            "dtype": str(dtype).replace("torch.", ""),
                            "T": T,
                            "fwd_ms": _time_ms(fwd, dev, reps),
                            "fwd_bwd_ms": _time_ms(fwd_bwd, dev, reps),
                            "fwd_bwd_peak_mb": _peak_mb(fwd_bwd, dev),
                        }
                    except torch.OutOfMemoryError:
                        row = {"form": form, "dtype": str(dtype), "T": T, "error": "out of memory"}
                    rows.append(row)
                    print(row, flush=True)
                    del fwd, fwd_bwd
    finally:
        if old is None:
            os.environ.pop("NAM_DISABLE_FLA", None)
        else:
            os.environ["NAM_DISABLE_FLA"] = old
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else device
    result = {"device": name, "B": B, "H": H, "d": D, "torch": torch.__version__, "rows": rows}
    cols = ("form", "dtype", "T", "fwd_ms", "fwd_bwd_ms", "fwd_bwd_peak_mb")
    print(
        format_table(
            ["form", "dtype", "T", "fwd ms", "fwd+bwd ms", "fwd+bwd peak MiB"],
            [[r.get(c) for c in cols] for r in rows],
        )
    )
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="bench_results/attention_device.json")
    p.add_argument("--lengths", default="4096,16384,65536")
    args = p.parse_args(argv)
    run_device(args.device, tuple(int(t) for t in args.lengths.split(",")), out=args.out)


if __name__ == "__main__":
    main()
