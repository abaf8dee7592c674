"""Registry of tasks (``nam train <task>``) and reproduction reports (``nam reproduce <family>``).

Each experiment family lives in its own module and registers itself on import; the registry imports
the family modules lazily so ``import neural_attention_memory`` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..training.spec import TaskSpec

__all__ = [
    "get_reproducer",
    "get_task",
    "list_reproducers",
    "list_tasks",
    "register_reproducer",
    "register_task",
]

# Modules that register tasks / reproducers when imported. A family that is not built yet is skipped.
FAMILY_MODULES: tuple[str, ...] = (
    "neural_attention_memory.experiments.generalization",
    "neural_attention_memory.experiments.lra",
    "neural_attention_memory.experiments.fewshot",
    "neural_attention_memory.experiments.lm",
)

_TASKS: dict[str, TaskSpec] = {}
_REPRODUCERS: dict[str, Callable[..., Any]] = {}
_loaded = False


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in FAMILY_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            # Only tolerate the family module itself being absent, never a broken import inside it.
            if err.name != mod:
                raise


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS and _TASKS[spec.name] is not spec:
        raise ValueError(f"task {spec.name!r} is registered twice")
    _TASKS[spec.name] = spec
    return spec


def list_tasks(family: str | None = None) -> list[str]:
    _load_families()
    return sorted(n for n, s in _TASKS.items() if family is None or s.family == family)


def get_task(name: str) -> TaskSpec:
    _load_families()
    if name not in _TASKS:
        raise ValueError(f"task: unknown task {name!r}; valid choices: {', '.join(list_tasks())}")
    return _TASKS[name]


def register_reproducer(family: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(preset: str, out_dir: pathlib.Path, **options) -> pathlib.Path`` (the report written)."""
    _REPRODUCERS[family] = fn
    return fn


def list_reproducers() -> list[str]:
    _load_families()
    return sorted(_REPRODUCERS)


def get_reproducer(family: str) -> Callable[..., Any]:
    _load_families()
    if family not in _REPRODUCERS:
        raise ValueError(
            f"family: unknown experiment {family!r}; valid choices: {', '.join(list_reproducers())}"
        )
    return _REPRODUCERS[family]
