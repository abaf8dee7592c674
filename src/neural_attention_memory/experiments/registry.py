"""Registry of tasks (``nam train <task>``) and reproduction reports (``nam reproduce <family>``).

Each experiment family lives in its own module and registers itself on import; the registry imports
the family modules lazily so ``import neural_attention_memory`` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..training.config import check_names
from ..training.spec import TaskSpec

__all__ = [
    "FamilyInfo",
    "get_family",
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


@dataclass(frozen=True)
class FamilyInfo:
    """A reproducible family as ``nam reproduce`` and ``nam list`` show it.

    Attributes:
        name: ``nam reproduce <name>``.
        reproduce: ``fn(preset, out_dir, *, tasks=..., models=..., overrides=..., seed=...,
            data_root=..., ...) -> Path`` (the report written); the CLI passes only the
            options ``fn`` accepts.
        description: one line.
        models: model name -> one-line description.
        presets: preset name -> one-line description.
        datasets: data set name -> one line (generated, or where the user's files go).
        family: the :class:`~.reproducer.Family` of families built on the shared reproducer.
        plan: ``fn(preset, out_dir, **the options reproduce takes)`` that checks everything and
            returns the jobs (or an object with ``.jobs``) without writing anything: what
            ``nam reproduce FAMILY --dry-run`` lists. Default for a ``family``:
            :func:`~.reproducer.plan_jobs`.
        set_help: the help of ``--set`` when the family routes overrides (default: generic).
    """

    name: str
    reproduce: Callable[..., Any]
    description: str = ""
    models: Mapping[str, str] = field(default_factory=dict)
    presets: Mapping[str, str] = field(default_factory=dict)
    datasets: Mapping[str, str] = field(default_factory=dict)
    family: Any = None
    plan: Callable[..., Any] | None = None
    set_help: str = ""


_REPRODUCERS: dict[str, FamilyInfo] = {}
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
    check_names("task", [name], list_tasks())
    return _TASKS[name]


def register_reproducer(
    family: str,
    fn: Callable[..., Any],
    *,
    description: str = "",
    models: Mapping[str, str] | None = None,
    presets: Mapping[str, str] | None = None,
    datasets: Mapping[str, str] | None = None,
    family_spec: Any = None,
    plan: Callable[..., Any] | None = None,
    set_help: str = "",
) -> Callable[..., Any]:
    """Register ``fn(preset, out_dir, **options) -> pathlib.Path`` (the report written).

    ``family_spec``: the family's :class:`~.reproducer.Family` when it uses the shared reproducer;
    its description and models fill in what is not given here. ``plan``: see
    :class:`FamilyInfo` (default: the shared planner of ``family_spec``).
    """
    if family_spec is not None:
        description = description or family_spec.description
        models = models or {m: "" for m in family_spec.models}
        if plan is None:
            plan = _shared_plan(family_spec)
    _REPRODUCERS[family] = FamilyInfo(
        family,
        fn,
        description,
        dict(models or {}),
        dict(presets or {}),
        dict(datasets or {}),
        family_spec,
        plan,
        set_help,
    )
    return fn


def _shared_plan(family: Any) -> Callable[..., Any]:
    from .reproducer import plan_jobs

    def plan(
        preset: str,
        out_dir: Any = None,
        *,
        tasks: Any = None,
        models: Any = None,
        overrides: Any = (),
        seed: int | None = None,
        data_root: Any = None,
    ) -> Any:
        """The checked jobs of ``family`` (``out_dir`` is not needed to plan them)."""
        return plan_jobs(
            family,
            preset,
            tasks=tasks,
            models=models,
            overrides=overrides,
            seed=seed,
            data_root=data_root,
        )

    return plan


def list_reproducers() -> list[str]:
    _load_families()
    return sorted(_REPRODUCERS)


def get_family(family: str) -> FamilyInfo:
    """The :class:`FamilyInfo` of ``family``; missing model/preset lists come from its tasks."""
    _load_families()
    check_names("family", [family], list_reproducers())
    info = _REPRODUCERS[family]
    specs = [_TASKS[t] for t in list_tasks(family)]
    models = dict(info.models) or {m: "" for s in specs for m in s.models}
    presets = dict(info.presets) or {p: "" for s in specs for p in s.presets}
    return FamilyInfo(
        info.name,
        info.reproduce,
        info.description,
        models,
        presets,
        info.datasets,
        info.family,
        info.plan,
        info.set_help,
    )


def get_reproducer(family: str) -> Callable[..., Any]:
    return get_family(family).reproduce
