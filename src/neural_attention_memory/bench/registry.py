"""Registry of benchmarks reachable as ``nam bench <name>``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["get_benchmark", "list_benchmarks", "register_benchmark"]

BENCH_MODULES: tuple[str, ...] = (
    "neural_attention_memory.bench.attention",
    "neural_attention_memory.bench.mann",
    "neural_attention_memory.bench.lra",
)

_BENCH: dict[str, Callable[..., Any]] = {}
_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BENCH_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise


def register_benchmark(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(quick: bool, out_dir: pathlib.Path, threads: int) -> dict`` (also writes JSON + PNG)."""
    _BENCH[name] = fn
    return fn


def list_benchmarks() -> list[str]:
    _load()
    return sorted(_BENCH)


def get_benchmark(name: str) -> Callable[..., Any]:
    _load()
    if name not in _BENCH:
        raise ValueError(
            f"name: unknown benchmark {name!r}; valid choices: {', '.join(list_benchmarks())}"
        )
    return _BENCH[name]
