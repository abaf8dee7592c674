"""How large each encoder's attention output is next to the residual stream it is added to.

NAM attention has no normaliser (``out_j = sum_s p_w[s] cos(q_j, k_s) v_s``), so its output grows
with the number of tokens, while softmax and linear attention average. :func:`attention_scale`
measures this on real batches of a task, for fresh encoders and for trained runs, at several
presets (i.e. sequence lengths): the evidence behind the medium ListOps results in docs/lra.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...models.transformer import EncoderBlock
from ...training.config import resolve_config
from ...training.results import BEST_CKPT, LAST_CKPT
from ...training.rundir import read_config
from . import make_spec
from .models import MODELS
from .timing import timed_batches

__all__ = ["attention_scale"]


def _rms(x: Tensor, keep: Tensor) -> float:
    """Root mean square of ``x`` `[B, T, D]` over the positions where ``keep`` `[B, T, 1]` is 1."""
    n = keep.sum() * x.shape[-1]
    return float(((x.detach() * keep) ** 2).sum().div(n).sqrt())


def _measure(spec: Any, net: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Any]:
    """One forward + backward of ``net`` (eval mode: no dropout) on ``batch``."""
    keep = (~batch["padding_mask"]).float().unsqueeze(-1)
    blocks: list[dict[str, float]] = []

    def keep_of(x: Tensor) -> Tensor:
        # the classifier may prepend a CLS token: count it as a real position
        return (
            keep
            if keep.shape[1] == x.shape[1]
            else torch.cat([torch.ones_like(keep[:, :1]), keep], 1)
        )

    def block_input(block: nn.Module, inputs: tuple) -> None:
        blocks.append({"residual_rms": _rms(inputs[0], keep_of(inputs[0]))})

    def attn_output(attn: nn.Module, inputs: tuple, output: tuple) -> None:
        blocks[-1]["attn_rms"] = _rms(output[0], keep_of(output[0]))

    handles = []
    for m in net.modules():
        if isinstance(m, EncoderBlock):
            handles.append(m.register_forward_pre_hook(block_input))
            handles.append(m.attn.register_forward_hook(attn_output))
    try:
        net.zero_grad(set_to_none=True)
        out = spec.compute(net, batch)
        out.loss.backward()
    finally:
        for h in handles:
            h.remove()
    grads = [p.grad.pow(2).sum() for p in net.parameters() if p.grad is not None]
    return {
        "loss": float(out.loss.detach()),
        "grad_norm": float(torch.stack(grads).sum().sqrt()),
        "blocks": blocks,
    }


def _load_run(spec: Any, run_dir: Path, checkpoint: str) -> tuple[str, nn.Module]:
    ckpt = run_dir / (BEST_CKPT if checkpoint == "best" else LAST_CKPT)
    if not ckpt.is_file():
        raise FileNotFoundError(f"run_dirs: expected a run folder with {ckpt.name}, got {run_dir}")
    config = read_config(run_dir)
    if config.get("task") != spec.name:
        raise ValueError(
            f"run_dirs: expected {spec.name} runs, got task {config.get('task')!r} in {run_dir}"
        )
    net = spec.build_model(config)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    net.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    return config["model"]["name"], net


def attention_scale(
    task: str = "lra-listops",
    presets: Sequence[str] = ("quick", "medium"),
    models: Sequence[str] = tuple(MODELS),
    run_dirs: Sequence[str | os.PathLike[str]] = (),
    batch_size: int = 32,
    seed: int = 0,
    overrides: Sequence[str] = (),
    checkpoint: str = "best",
) -> list[dict[str, Any]]:
    """RMS of every encoder block's attention output and of the residual stream entering the
    block (real tokens only, CLS included), the loss and the gradient norm, on the first training
    batch of ``task`` at each preset.

    Fresh encoders (``models``, initialised with ``torch.manual_seed(seed)``) are measured at
    each preset's own config; trained encoders (``run_dirs``: run folders of ``nam train``, at
    their selected epoch with ``checkpoint="best"`` or their last with ``"last"``) with their own
    weights on every preset's batch. Eval mode (no dropout), one
    batch, so the numbers are deterministic. ``overrides`` (``KEY=VALUE``) apply to every
    preset's config (data and fresh encoders alike), e.g. shorter ``data.max_length`` for a run
    trained on short sequences (learned positions cover only its own lengths).

    Returns:
        one dict per (encoder, preset): ``{"model", "state": "init" | run folder, "preset",
        "batch_shape": [B, T], "loss", "grad_norm", "blocks": [{"attn_rms", "residual_rms"}]}``.
    """
    spec = make_spec(task)
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise ValueError(f"models: expected names from {tuple(MODELS)}, got {bad}")
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint: expected 'best' or 'last', got {checkpoint!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    small = [*overrides, f"data.train={batch_size}", "data.val=8", "data.test=8", f"seed={seed}"]

    def first_batch(preset: str, model: str) -> tuple[dict, Mapping[str, Tensor]]:
        config = resolve_config(spec, preset, small, model=model)
        config["trainer"]["batch_size"] = batch_size
        return config, timed_batches(spec, config, 1)[0]

    rows: list[dict[str, Any]] = []
    for preset in presets:
        for model in models:
            config, batch = first_batch(preset, model)
            torch.manual_seed(seed)
            net = spec.build_model(config).eval()
            rows.append(
                {"model": model, "state": "init", "preset": preset,
                 "batch_shape": list(batch["tokens"].shape), **_measure(spec, net, batch)}
            )  # fmt: skip
    for run_dir in run_dirs:
        model, net = _load_run(spec, Path(run_dir), checkpoint)
        net.eval()
        for preset in presets:
            _, batch = first_batch(preset, model)
            rows.append(
                {"model": model, "state": str(run_dir), "preset": preset,
                 "batch_shape": list(batch["tokens"].shape), **_measure(spec, net, batch)}
            )  # fmt: skip
    return rows
