"""Time of one training step of a finished run, on the same batches for every model of a task."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from ...training.rundir import atomic_write_json, read_config
from ...training.timing import default_clock, time_fn
from ..registry import get_task

__all__ = ["STEP_FILE", "compare_step_times", "step_time_ms", "timed_batches"]


STEP_FILE = "step_time.json"


def timed_batches(spec: Any, config: dict[str, Any], batches: int) -> list:
    """The first ``batches`` training batches of ``config``, unshuffled; with a ListOps warm-up
    (``data.warmup``), the first full-length ones (the warm-up's short expressions come first)."""
    train = spec.build_datasets(config, config["seed"])["train"]
    schedule = spec.train_schedule(config, train) if spec.train_schedule else None
    if schedule is not None:
        last = int(config["trainer"]["max_epochs"]) - 1
        train = Subset(train, list(schedule.indices(last)))
    loader = DataLoader(
        train, batch_size=config["trainer"]["batch_size"], shuffle=False, collate_fn=spec.collate_fn
    )
    return [b for _, b in zip(range(batches), loader, strict=False)]


def step_time_ms(run_dir: str | Path, batches: int = 3, reps: int = 3) -> dict[str, Any]:
    """Time of one training step (forward, loss, backward) of a run's model on its first
    ``batches`` training batches (same batches for every model of a task), in milliseconds.
    With a ListOps warm-up (``data.warmup``) the batches are the first full-length ones.

    Uses process CPU time with one torch thread (robust on a shared machine; see
    :func:`...training.timing.default_clock`). Cached in ``<run_dir>/step_time.json``.
    """
    run_dir = Path(run_dir)
    cached = run_dir / STEP_FILE
    if cached.is_file():
        return json.loads(cached.read_text())
    config = read_config(run_dir)
    spec = get_task(config["task"])
    data = timed_batches(spec, config, batches)
    torch.manual_seed(0)
    model = spec.build_model(config).train()

    def steps() -> None:
        for b in data:
            spec.compute(model, b).loss.backward()
        model.zero_grad(set_to_none=True)

    ms = time_fn(steps, reps=reps, warmup=1) / len(data)
    info = {
        "step_ms": ms,
        "batches": len(data),
        "clock": default_clock(),
        "threads": torch.get_num_threads(),
    }
    atomic_write_json(cached, info)
    return info


def compare_step_times(
    task: str,
    preset: str = "medium",
    models: Sequence[str] = ("softmax-transformer", "linear-transformer", "nam-transformer"),
    batches: int = 3,
    reps: int = 2,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Training-step time of several encoders on the same first ``batches`` training batches of
    ``task`` at ``preset``, without training them (Table 1's speedup column).

    ``overrides`` (``KEY=VALUE``) apply to every model, e.g. a smaller ``data.train`` so that only
    the batches to be timed are generated. Process CPU time, one torch thread (see
    :func:`step_time_ms`).

    Returns:
        ``{"task", "preset", "clock", "batch_shape": [B, T], "step_ms": {model: ms},
        "speedup": {model: ms of the first model / ms of model}}``.
    """
    from ...training.config import resolve_config

    spec = get_task(task)
    if not models:
        raise ValueError("models: expected at least one model, got none")
    step_ms: dict[str, float] = {}
    shape: list[int] | None = None
    for model in models:
        config = resolve_config(spec, preset, overrides, model=model)
        data = timed_batches(spec, config, batches)
        tokens = data[0].get("tokens") if isinstance(data[0], dict) else None
        shape = list(tokens.shape) if isinstance(tokens, torch.Tensor) else shape
        torch.manual_seed(0)
        net = spec.build_model(config).train()

        def steps(net: torch.nn.Module = net, data: list = data) -> None:
            for b in data:
                spec.compute(net, b).loss.backward()
            net.zero_grad(set_to_none=True)

        step_ms[model] = time_fn(steps, reps=reps, warmup=1) / len(data)
    first = step_ms[models[0]]
    return {
        "task": task,
        "preset": preset,
        "clock": default_clock(),
        "threads": torch.get_num_threads(),
        "batches": batches,
        "batch_shape": shape,
        "step_ms": step_ms,
        "speedup": {m: first / ms for m, ms in step_ms.items()},
    }
