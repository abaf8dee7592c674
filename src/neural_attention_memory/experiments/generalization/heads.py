"""Head-position probe of a trained NAM-TM run: does the tape hold the digits where an aligned
algorithm needs them?

For ``fib`` (``a_0..a_{n-1} <sep> b_0..b_{n-1} <sep> <mask>^{n+1}``, little-endian) an
algorithm that generalises in length reads ``a_j`` and ``b_j`` at answer slot ``j``; for
``palin`` it reads ``d_{n-1-j}``. The probe runs the run's checkpoint through the slow twin on
unseen ``n``-digit problems, records every tape's unit write and read heads
(:meth:`~...models.nam_tm.NAMTuringMachine.forward_reference` with ``trace``) and measures, per
layer and tape:

- ``distinct_cells``: the share of distinct cells (argmax of the write head) over the problem's
  tokens; 1 = every token to its own cell, near ``1 / tokens`` = one register;
- ``write_head_max`` / ``read_head_max``: the largest entry of the unit head (1 = one cell);
- ``overlap_a`` / ``overlap_b``: mean ``<read head at slot j, write head at the token>`` for the
  token the answer needs (``a_j``; fib also ``b_j``, palin ``d_j`` as a control);
- ``hit_a`` / ``hit_b``: how often that token's write head overlaps the read head more than any
  other problem token's does (by :data:`HIT_MARGIN`; tokens piled into one cell tie: no hit);
- ``p_w`` at the problem's digits and ``p_r`` at the answer slots (``None`` without gates).

Layer ``l > 1`` starts from layer ``l - 1``'s final value tape, so its reads are also compared
with the previous layer's write heads (where that layer put the digits): ``prev_overlap_*`` and
``prev_hit_*`` (``None`` in layer 1).

``nam probe RUN_DIR [--digits 6]`` prints the table; :func:`head_alignment` returns it as a dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...models.sequence import NAMTMSequenceModel
from ...tasks import algorithmic as alg
from ...training import ConfigError, read_config
from ...training.module import TaskModule
from ...training.results import BEST_CKPT, LAST_CKPT
from ..registry import get_task

__all__ = ["format_alignment", "head_alignment"]

TASKS = ("fib", "palin")
#: A hit needs the needed token's overlap to beat every other token's by this much.
HIT_MARGIN = 0.05


def _positions(task: str, n: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(problem tokens, source a [n], source b [n], answer slots [n])`` for ``n`` digits."""
    j = np.arange(n)
    if task == "fib":  # a_j at j, b_j at n + 1 + j; answer digit j at slot 2n + 2 + j
        return 2 * n + 1, j, n + 1 + j, 2 * n + 2 + j
    # palin: d_i at i; slot j (at n + 1 + j) answers d_{n-1-j}; "b" = d_j is the control
    return n, n - 1 - j, j, n + 1 + j


def _load(run_dir: Path, checkpoint: str) -> tuple[dict[str, Any], NAMTMSequenceModel]:
    config = read_config(run_dir)
    if config.get("task") not in TASKS:
        raise ConfigError(
            f"run_dir: the probe needs a run of {' or '.join(TASKS)}, got task "
            f"{config.get('task')!r} in {run_dir}"
        )
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint: expected 'best' or 'last', got {checkpoint!r}")
    ckpt = run_dir / (BEST_CKPT if checkpoint == "best" else LAST_CKPT)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint: no checkpoint file at {ckpt}")
    module = TaskModule(get_task(config["task"]), config)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    module.load_state_dict(state["state_dict"])
    if not isinstance(module.model, NAMTMSequenceModel):
        raise ConfigError(
            f"run_dir: the probe needs a NAM-TM run, got model {config['model']['name']!r}"
        )
    return config, module.model.eval()


def _hits(O, rows, src_a, src_b, prefix: str) -> dict[str, float | None]:
    """Mean overlap with, and share of argmax hits on, the tokens ``src_a`` / ``src_b``."""
    keys = [f"{prefix}{m}_{w}" for m in ("overlap", "hit") for w in ("a", "b")]
    if O is None:
        return dict.fromkeys(keys)

    def hit(src: np.ndarray) -> float:
        # The needed token must overlap the read head strictly most (by HIT_MARGIN): tokens piled
        # into one cell tie, and a tie is no alignment.
        mine = O[:, rows, src]  # [B, slots]
        others = O.clone()
        others[:, rows, src] = -float("inf")
        return (mine > others.amax(-1) + HIT_MARGIN).float().mean().item()

    return dict(
        zip(
            keys,
            [
                O[:, rows, src_a].mean().item(),
                O[:, rows, src_b].mean().item(),
                hit(src_a),
                hit(src_b),
            ],
            strict=True,
        )
    )


def head_alignment(
    run_dir: str | Path,
    *,
    digits: int = 6,
    count: int = 128,
    checkpoint: str = "best",
    seed: int = 12345,
) -> dict[str, Any]:
    """Probe where a NAM-TM run's heads point (see the module doc); returns a JSON-able dict.

    Args:
        run_dir: a finished (or checkpointed) ``fib`` or ``palin`` run of a NAM-TM model.
        digits: ``n`` of the probe problems (drawn outside the run's training set).
        count: problems.
        checkpoint: ``"best"`` (the selected epoch) or ``"last"``.
        seed: seed of the probe problems.
    """
    run_dir = Path(run_dir)
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ConfigError(f"digits: expected an int >= 1, got {digits!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"count: expected an int >= 1, got {count!r}")
    config, model = _load(run_dir, checkpoint)
    task, n = config["task"], digits
    splits = config.get("data", {}).get("splits") or alg.default_splits()
    params = dict(config.get("data", {}).get("params") or {})
    train = alg.build_splits(task, int(config["seed"]), {"train": splits["train"]}, **params)
    ds = alg.build_eval_dataset(task, f"{n}-{n}", count, seed, train["train"].examples, **params)
    tokens = torch.tensor([e.tokens for e in ds.examples])
    targets = torch.tensor([e.targets for e in ds.examples])
    trace: list[list[dict[str, Any]]] = []
    with torch.no_grad():
        logits = model(tokens, reference=True, trace=trace)
    pred, real = logits.argmax(-1), targets != alg.IGNORE_INDEX
    P, src_a, src_b, slots = _positions(task, n)
    rows = np.arange(n)
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "task": task,
        "model": config["model"]["name"],
        "checkpoint": checkpoint,
        "digits": n,
        "count": len(ds),
        "seq_acc": ((pred == targets) | ~real).all(1).float().mean().item(),
        "tok_acc": (pred == targets)[real].float().mean().item(),
        "layers": [],
    }
    prev_hw = None
    for li, steps in enumerate(trace):
        hw = torch.stack([s["write_head"] for s in steps], 1)  # [B, T, N, L]
        hr = torch.stack([s["read_head"] for s in steps], 1)
        # read head at each slot . write head at each problem token: [B, N, slots, tokens]
        O = torch.einsum("bjnl,btnl->bnjt", hr[:, slots], hw[:, :P])
        Op = (
            None
            if prev_hw is None
            else torch.einsum("bjnl,btnl->bnjt", hr[:, slots], prev_hw[:, :P])
        )
        tapes = []
        for k in range(hw.shape[2]):
            cells = hw[:, :P, k].argmax(-1)
            gate = {}
            for name, at in (("p_w", np.r_[src_a, src_b]), ("p_r", slots)):
                g = steps[0][name]
                gate[name] = (
                    None
                    if g is None
                    else torch.stack([s[name][:, k] for s in steps], 1)[:, at].mean().item()
                )
            tapes.append(
                {
                    "tape": k,
                    "distinct_cells": float(np.mean([len(set(c.tolist())) / P for c in cells])),
                    "write_head_max": hw[:, :P, k].amax(-1).mean().item(),
                    "read_head_max": hr[:, slots, k].amax(-1).mean().item(),
                    **_hits(O[:, k], rows, src_a, src_b, ""),
                    **_hits(None if Op is None else Op[:, k], rows, src_a, src_b, "prev_"),
                    **gate,
                }
            )
        out["layers"].append({"layer": li + 1, "tapes": tapes})
        prev_hw = hw
    return out


def format_alignment(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`head_alignment`'s result."""
    a, b = ("a_j", "b_j") if result["task"] == "fib" else ("d_(n-1-j)", "d_j")
    lines = [
        f"{result['model']} on {result['task']} ({result['checkpoint']} checkpoint), "
        f"{result['count']} unseen {result['digits']}-digit problems: sequence accuracy "
        f"{100 * result['seq_acc']:.1f}%, token accuracy {100 * result['tok_acc']:.1f}%",
        "",
        f"| layer | tape | distinct cells | write / read head max | overlap {a} / {b} "
        f"| hit {a} / {b} | hit {a} / {b}, previous layer's cells | p_w digits | p_r slots |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.2f}"

    for layer in result["layers"]:
        for t in layer["tapes"]:
            lines.append(
                f"| {layer['layer']} | {t['tape']} | {f(t['distinct_cells'])} "
                f"| {f(t['write_head_max'])} / {f(t['read_head_max'])} "
                f"| {f(t['overlap_a'])} / {f(t['overlap_b'])} | {f(t['hit_a'])} / {f(t['hit_b'])} "
                f"| {f(t['prev_hit_a'])} / {f(t['prev_hit_b'])} | {f(t['p_w'])} | {f(t['p_r'])} |"
            )
    return "\n".join(lines)
