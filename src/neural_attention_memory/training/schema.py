"""Typed configuration schemas: dataclasses that say what every config key is and what it may hold.

A run's configuration stays one nested dict of plain data (it is what ``config.yaml`` holds and
what presets are written as), and a *schema* -- a dataclass per section -- types it. Why plain
dataclasses rather than OmegaConf structured configs: the library already describes its models with
dataclasses, the checks needed here (type, range, choices, unknown keys) fit in one small
function, and the core package stays free of another dependency.

:func:`check_config` walks a config against a schema class:

- every key must be a field of the section's dataclass, unless the section is *open*
  (``OPEN = True``: extra keys allowed, e.g. model hyper-parameters that the model's own config
  validates); an extra key of an open section must keep the type of the preset's value;
- values are checked against the field's annotation (``int``, ``float``, ``bool``, ``str``,
  ``Literal[...]``, ``X | None``, ``list[int]``, ``dict[str, X]``, nested dataclasses, ``Any``):
  ``2.7`` is not an ``int`` (``3.0`` is read as ``3``), ``"abc"`` is not a ``float``, ``1`` is
  not a ``bool``; floats must be finite;
- ranges come from the field's metadata (:func:`num`): ``gt``, ``ge``, ``lt``, ``le``;
- a section may define ``check(values, where)`` (a static method) for rules across fields;
- a field whose metadata is :func:`addable` is one that presets leave out (its absence means "off") and
  that ``--set`` may still add without the ``+`` prefix (:func:`is_addable`), e.g.
  ``--set data.curriculum.start=3``.

Every failure is a :class:`~.config.ConfigError` naming the dotted key, the expected and the given
value, e.g. ``optim.lr: expected a float > 0, got 'abc'``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from .config import ConfigError

__all__ = [
    "OptimConfig",
    "RunConfig",
    "TrainerConfig",
    "addable",
    "check_config",
    "is_addable",
    "num",
    "schema_keys",
]

PRECISIONS = (
    "32-true",
    "32",
    "64-true",
    "64",
    "bf16-mixed",
    "bf16-true",
    "16-mixed",
    "16-true",
)


def num(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with a numeric range (``None`` values skip the range check)."""
    return dataclasses.field(
        default=default, metadata={"gt": gt, "ge": ge, "lt": lt, "le": le, "doc": doc}
    )


def addable(doc: str = "") -> dict[str, Any]:
    """Field metadata of an optional section that ``--set`` may add although the preset lacks it:
    ``x: Section | None = dataclasses.field(default=None, metadata=addable("..."))``."""
    return {"addable": True, "doc": doc}


def is_addable(schema: type | None, dotted: str) -> bool:
    """Whether the key ``dotted`` (``"data.curriculum.start"``) lies in a field of ``schema``
    marked :func:`addable` (``X | None`` fields are followed into their dataclass)."""
    tp: Any = schema
    for part in dotted.split("."):
        if typing.get_origin(tp) in (Union, types.UnionType):
            inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
            tp = inner[0] if len(inner) == 1 else None
        if tp is None or not dataclasses.is_dataclass(tp):
            return False
        fields = {f.name: f for f in dataclasses.fields(tp)}
        if part not in fields:
            return False
        if fields[part].metadata.get("addable"):
            return True
        tp = typing.get_type_hints(tp)[part]
    return False


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any value"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a float"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {_describe(item).removeprefix('an ').removeprefix('a ')}s"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _range_text(meta: Mapping[str, Any]) -> str:
    ops = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
    return " and ".join(f"{op} {meta[k]:g}" for k, op in ops if meta.get(k) is not None)


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any, key: str, hints_of: Any) -> Any:
    """``value`` as type ``tp`` or :class:`_Mismatch`; nested dataclasses recurse."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, hints_of)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise _Mismatch
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        if not math.isfinite(value):
            raise _Mismatch
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
        raise _Mismatch
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_coerce(v, item, key, hints_of) for v in value]
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        if not isinstance(value, Mapping):
            raise _Mismatch
        if dataclasses.is_dataclass(vt):
            return {str(k): _check_section(v, vt, f"{key}.{k}", None) for k, v in value.items()}
        out = {}
        for k, v in value.items():
            try:
                out[str(k)] = _coerce(v, vt, f"{key}.{k}", hints_of)
            except _Mismatch:
                raise ConfigError(f"{key}.{k}: expected {_describe(vt)}, got {v!r}") from None
        return out
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _Mismatch
        return _check_section(value, tp, key, None)
    raise TypeError(f"schema: unsupported annotation {tp!r} at {key}")


def _same_kind(value: Any, ref: Any) -> Any:
    """``value`` converted to the kind of the preset's ``ref`` value (for open sections' extras)."""
    if ref is None or value is None:
        return value
    for tp in (bool, int, float, str):
        if isinstance(ref, tp):
            return _coerce(value, tp, "", None)
    if isinstance(ref, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise _Mismatch
    if isinstance(ref, Mapping) and not isinstance(value, Mapping):
        raise _Mismatch
    return value


def _kind(ref: Any) -> str:
    for tp in (bool, int, float, str):
        if isinstance(ref, tp):
            return _describe(tp)
    return "a list" if isinstance(ref, (list, tuple)) else "a mapping"


def _check_section(
    section: Any, schema: type, prefix: str, reference: Mapping[str, Any] | None
) -> dict[str, Any]:
    where = prefix or "config"
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {section!r}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    is_open = bool(getattr(schema, "OPEN", False))
    out: dict[str, Any] = {}
    for key, value in section.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            if not is_open:
                raise ConfigError(
                    f"{dotted}: unknown key; valid keys under {where}: {', '.join(fields)}"
                )
            ref = None if reference is None else reference.get(key)
            try:
                out[key] = _same_kind(value, ref)
            except _Mismatch:
                raise ConfigError(
                    f"{dotted}: expected {_kind(ref)} (like the preset's {ref!r}), got {value!r}"
                ) from None
            continue
        f = fields[key]
        tp = hints[key]
        sub_ref = reference.get(key) if isinstance(reference, Mapping) else None
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            out[key] = _check_section(value, tp, dotted, sub_ref)
            continue
        try:
            v = _coerce(value, tp, dotted, None)
        except _Mismatch:
            rng = _range_text(f.metadata)
            raise ConfigError(
                f"{dotted}: expected {_describe(tp)}{' ' + rng if rng else ''}, got {value!r}"
            ) from None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m = f.metadata
            ok = (
                (m.get("gt") is None or v > m["gt"])
                and (m.get("ge") is None or v >= m["ge"])
                and (m.get("lt") is None or v < m["lt"])
                and (m.get("le") is None or v <= m["le"])
            )
            if not ok:
                doc = f" ({m['doc']})" if m.get("doc") else ""
                raise ConfigError(
                    f"{dotted}: expected {_describe(tp)} {_range_text(m)}{doc}, got {value!r}"
                )
        out[key] = v
    hook = getattr(schema, "check", None)
    if hook is not None:  # cross-field rules, e.g. a [lo, hi] range with lo <= hi
        hook(out, where)
    return out


def check_config(
    config: Mapping[str, Any], schema: type, reference: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``config`` checked against the dataclass ``schema`` (see the module docstring).

    Args:
        config: the resolved configuration (nested dict).
        schema: a dataclass such as :class:`RunConfig` or a family's subclass of it.
        reference: the preset's configuration; an extra key of an open section must keep the
            type of its value there.

    Returns:
        A copy with values converted to their fields' types (``3.0`` -> ``3`` for an ``int``).

    Raises:
        ConfigError: unknown key, wrong type or value out of range, naming the dotted key.
    """
    return _check_section(config, schema, "", reference)


def schema_keys(schema: type, prefix: str = "") -> list[str]:
    """Dotted names of every field of ``schema`` (nested dataclasses expanded)."""
    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += schema_keys(tp, dotted)
        else:
            out.append(dotted)
    return out


# ----------------------------------------------------------------------- the engine's sections
@dataclasses.dataclass
class OptimConfig:
    """``optim``: the optimiser and its per-epoch schedule."""

    name: Literal["adam", "adamw"] = "adam"  # adam: L2 weight decay (the paper's code); adamw
    lr: float = num(1e-3, gt=0.0)
    weight_decay: float = num(0.0, ge=0.0)
    # Multiplicative per epoch: lr_e = lr * lr_decay**e; 1 keeps the lr constant.
    lr_decay: float = num(1.0, gt=0.0, le=1.0, doc="lr_e = lr * lr_decay**epoch; 1 = constant")
    warmup_steps: int = num(0, ge=0)
    # Gradient-norm clip; null disables clipping.
    grad_clip: float | None = num(None, gt=0.0, doc="null disables clipping")


@dataclasses.dataclass
class TrainerConfig:
    """``trainer``: epochs, batches, devices and precision (passed on to Lightning)."""

    max_epochs: int = num(1, ge=1)
    batch_size: int = num(32, ge=1)
    eval_batch_size: int | None = num(None, ge=1, doc="null: same as batch_size")
    num_workers: int = num(0, ge=0)
    shuffle: bool = True
    drop_last: bool = False
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = num(1, ge=1)
    precision: Literal[PRECISIONS] = "32-true"  # type: ignore[valid-type]
    limit_train_batches: int | float | None = num(None, gt=0)
    # Stop once the training batches used this much process CPU time (None: no budget).
    max_train_cpu_s: float | None = num(None, gt=0, doc="null: no budget")
    log_every_n_steps: int = num(50, ge=1)
    progress_bar: bool = True
    deterministic: bool = False
    # Subnormal floats count as zero on the CPU while training (see docs/training.md).
    flush_denormal: bool = True


@dataclasses.dataclass
class ModelSection:
    """``model``: the model's name; other keys are the model's own hyper-parameters."""

    OPEN: typing.ClassVar[bool] = True
    name: str | None = None


@dataclasses.dataclass
class DataSection:
    """``data``: task-specific; a family's schema lists its keys."""

    OPEN: typing.ClassVar[bool] = True


@dataclasses.dataclass
class RunConfig:
    """The whole configuration of a run; families subclass it to type ``model`` and ``data``."""

    seed: int = num(0, ge=0)
    task: str | None = None
    preset: str | None = None
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
