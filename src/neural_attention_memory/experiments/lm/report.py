"""The LM benchmark report: bits per byte after equal CPU time, speed, and which attention wins
at which context length; a loss-vs-CPU-time plot and a bits-per-byte-vs-position plot."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ...models.lm import NAMForCausalLM
from ...tasks.pysource import corpus_digest, load_split
from ...training.rundir import atomic_write_json
from ...training.timing import time_fn
from ..report import format_params, format_value, markdown_table, save_line_plot
from ..reproducer import ReportContext
from .step import BUCKETS

__all__ = ["GEN_CONTEXTS", "add_generation_speed", "generation_speed", "write_report"]

#: Context lengths (bytes already read) at which decoding speed is measured.
GEN_CONTEXTS: tuple[int, ...] = (64, 2048)
GEN_TOKENS = 32
GEN_FILE = "generation_speed.json"


@torch.no_grad()
def generation_speed(model: NAMForCausalLM, prompt: bytes, contexts: Sequence[int]) -> dict:
    """Decoding tokens per CPU second after each context length (one sequence, greedy ``step``).

    The context is read by one ``forward`` (not timed); then ``GEN_TOKENS`` steps are timed
    (median of 3 after a warm-up) from that state.
    """
    out = {}
    for n in contexts:
        ids = torch.frombuffer(bytearray(prompt[:n]), dtype=torch.uint8).long()[None]
        state = model(ids).state
        first = ids[:, -1]

        def decode(state=state, first=first) -> None:
            s, tok = state, first
            for _ in range(GEN_TOKENS):
                logits, s = model.step(tok, s)
                tok = logits.argmax(-1)

        ms = time_fn(decode, reps=3, warmup=1, clock="cpu")
        out[str(n)] = GEN_TOKENS / (ms / 1e3)
    return out


def add_generation_speed(ctx: ReportContext) -> None:
    """Measure (once per run, cached in the run folder) decoding speed into ``gen_tok_s``."""
    prompt = None
    for r in ctx.results:
        if r.get("status") != "finished":
            continue
        cache = Path(r["run_dir"]) / GEN_FILE
        if cache.is_file():
            r["gen_tok_s"] = json.loads(cache.read_text())["tokens_per_s"]
            continue
        if prompt is None:
            prompt = load_split("test")[0][: max(GEN_CONTEXTS)]
        model = NAMForCausalLM.from_run(r["run_dir"], checkpoint="last")
        speed = generation_speed(model, prompt, GEN_CONTEXTS)
        atomic_write_json(
            cache,
            {"tokens_per_s": speed, "clock": "cpu", "threads": torch.get_num_threads()},
        )
        r["gen_tok_s"] = speed


def _last(r: Mapping[str, Any], key: str) -> Any:
    hist = r.get("history") or []
    return hist[-1].get(key) if hist else None


def _train_bytes_per_s(r: Mapping[str, Any]) -> float | None:
    cfg = r.get("config") or {}
    batches, cpu = _last(r, "train_batches"), _last(r, "train_cpu_s")
    if not batches or not cpu or not cfg:
        return None
    return batches * cfg["trainer"]["batch_size"] * cfg["data"]["train_length"] / cpu


def _bucket_keys(T: int) -> list[tuple[str, str]]:
    return [(f"bpb@{lo}-{hi}", f"{lo}–{min(hi, T)}") for lo, hi in BUCKETS if lo < T]


def _winner(values: Mapping[str, float | None], best=min) -> str | None:
    got = {k: v for k, v in values.items() if v is not None}
    return best(got, key=got.get) if got else None


def write_report(ctx: ReportContext) -> list[str]:
    res = [r for r in ctx.results if r.get("status") == "finished"]
    for r in res:
        cfg_file = Path(r["run_dir"]) / "config.yaml"
        if "config" not in r and cfg_file.is_file():
            import yaml

            r["config"] = yaml.safe_load(cfg_file.read_text())
    T = int(res[0]["config"]["data"]["eval_length"]) if res else 1024
    buckets = _bucket_keys(T)
    rows = []
    for r in res:
        test = r.get("splits", {}).get("test", {})
        gen = r.get("gen_tok_s") or {}
        rows.append(
            [
                r["model"],
                format_params(r.get("num_params")),
                format_value(_last(r, "train_cpu_s"), ".0f"),
                format_value(_train_bytes_per_s(r), ".0f"),
                format_value(test.get("bpb"), ".3f"),
                *[format_value(test.get(k), ".3f") for k, _ in buckets],
                *[format_value(gen.get(str(n)), ".0f") for n in GEN_CONTEXTS],
            ]
        )
    headers = [
        "Attention", "Params", "Train CPU s", "Train bytes/s", "Test bpb",
        *[f"bpb @ pos {label}" for _, label in buckets],
        *[f"Gen tok/s @ ctx {n}" for n in GEN_CONTEXTS],
    ]  # fmt: skip
    # Loss vs CPU time.
    series = {}
    for r in res:
        xs = [h.get("train_cpu_s") for h in r.get("history", [])]
        ys = [h.get("val/bpb") for h in r.get("history", [])]
        if xs and None not in xs:
            series[r["model"]] = (xs, ys)
    plots = []
    if series:
        plots.append(
            save_line_plot(
                ctx.out_dir / "bpb_vs_cpu_time.png",
                series,
                xlabel="training CPU time (s, one thread)",
                ylabel="validation bits per byte",
                title="Byte-level LM on Python stdlib source: loss vs training time",
            )
        )
        mids = [(lo + min(hi, T)) / 2 for lo, hi in BUCKETS if lo < T]
        pos_series = {
            r["model"]: (mids, [r.get("splits", {}).get("test", {}).get(k) for k, _ in buckets])
            for r in res
        }
        plots.append(
            save_line_plot(
                ctx.out_dir / "bpb_vs_position.png",
                pos_series,
                xlabel="position in the evaluation window (bytes of context)",
                ylabel="test bits per byte",
                title="Which attention uses long context best",
            )
        )
    # Which attention wins where.
    verdict = []
    for key, label in [("bpb", "all positions"), *buckets]:
        vals = {r["model"]: r.get("splits", {}).get("test", {}).get(key) for r in res}
        w = _winner(vals)
        if w is not None:
            verdict.append(f"- lowest test bits per byte at {label}: **{w}** ({vals[w]:.3f})")
    for n in GEN_CONTEXTS:
        vals = {r["model"]: (r.get("gen_tok_s") or {}).get(str(n)) for r in res}
        w = _winner(vals, best=max)
        if w is not None:
            verdict.append(
                f"- fastest decoding after {n} bytes of context: **{w}** ({vals[w]:.0f} tok/s)"
            )
    cfg = res[0]["config"] if res else {}
    lines = [
        f"# Byte-level language modelling on Python stdlib source (`--preset {ctx.preset}`)",
        "",
        "Every model is the same causal Transformer (`NAMForCausalLM`) with only the attention",
        "swapped, trained for the same CPU time (`trainer.max_train_cpu_s` = "
        f"{format_value((cfg.get('trainer') or {}).get('max_train_cpu_s'), '.0f')} s of training",
        "batches, one thread). Test bits per byte on held-out files, read in windows of",
        f"{T} bytes (training windows: {format_value((cfg.get('data') or {}).get('train_length'), '.0f')} bytes), "
        "at the epoch with the best validation bits per byte; `bpb @ pos A–B` counts only the bytes",
        "at positions A–B of their window (how much A–B bytes of context help). Training bytes/s:",
        "bytes trained on per CPU second. Decoding: greedy `step()` tokens per CPU second, one",
        "sequence, after reading the given context.",
        "",
        markdown_table(headers, rows),
        "## Which attention wins where",
        "",
        *verdict,
        "",
        f"Data: Python {platform.python_version()} standard library, corpus digest "
        f"`{corpus_digest((cfg.get('data') or {}).get('root'))}` (equal digest = identical data).",
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
    ]
    return lines
