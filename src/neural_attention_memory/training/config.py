"""Configuration: presets, engine defaults and ``--set a.b.c=value`` overrides.

A configuration is one nested dict of plain data (see :mod:`.spec`). :func:`resolve_config`
starts from :data:`ENGINE_DEFAULTS`, deep-merges ``spec.presets[preset]`` on top, selects the
model, then applies overrides. Override keys must already exist (so a typo fails loudly, listing
the valid keys) or lie in a field the schema marks addable (an optional section that presets leave
out, e.g. ``data.curriculum``); prefix a key with ``+`` to add any new one (``--set +data.note=x``).

A preset may hold a ``per_model`` mapping ``{model_name: {partial config}}``; the entry of the
chosen model is deep-merged into the config (so each model can have its own ``quick`` size) and
the ``per_model`` section is dropped from the resolved config.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from .spec import TaskSpec

__all__ = [
    "ENGINE_DEFAULTS",
    "ConfigError",
    "apply_overrides",
    "check_names",
    "check_run_config",
    "deep_merge",
    "parse_override",
    "resolve_config",
]


class ConfigError(ValueError):
    """Bad user input: unknown preset/model/key, a malformed override, a run folder in use.

    The CLI prints these as one-line errors (exit code 2) instead of a traceback.
    """


#: Keys the engine reads; every preset gets these unless it sets its own.
ENGINE_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "task": None,
    "model": {"name": None},
    "data": {},
    "optim": {
        "name": "adam",  # "adam" (L2 weight decay, as in the paper's code) or "adamw"
        "lr": 1e-3,
        "weight_decay": 0.0,
        "lr_decay": 1.0,  # multiplicative, per epoch: lr_e = lr * lr_decay**e
        "warmup_steps": 0,  # linear warm-up over the first optimizer steps
        "grad_clip": None,  # gradient-norm clip; None or 0 disables
    },
    "trainer": {
        "max_epochs": 1,
        "batch_size": 32,
        "eval_batch_size": None,  # None: same as batch_size
        "num_workers": 0,
        "shuffle": True,
        "drop_last": False,
        "accelerator": "auto",
        "devices": 1,
        "strategy": "auto",  # e.g. "ddp" for several GPUs / processes
        "num_nodes": 1,
        "precision": "32-true",
        "limit_train_batches": None,
        "max_train_cpu_s": None,  # stop once training batches used this much CPU time
        "log_every_n_steps": 50,
        "progress_bar": True,
        "deterministic": False,
        # Treat subnormal floats as zero on the CPU while training: trained gates that decay
        # towards zero made LSAM's steps 4x slower through subnormal arithmetic.
        "flush_denormal": True,
    },
}


def check_names(arg: str, given: Iterable[str], valid: Iterable[str]) -> list[str]:
    """``list(given)`` after checking every name is in ``valid``.

    The one validator of name lists (tasks, models, presets, data sets): raises
    :class:`ConfigError` naming ``arg``, the unknown names and the valid choices.
    """
    if isinstance(given, str):
        given = [given]
    names = list(given)
    valid = list(valid)
    unknown = [n for n in names if n not in valid]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown)
        raise ConfigError(f"{arg}: unknown {shown}; valid choices: {', '.join(map(str, valid))}")
    if not names:
        raise ConfigError(f"{arg}: expected at least one name; valid choices: {', '.join(valid)}")
    return names


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with ``update`` merged in recursively (``update`` wins on leaves)."""
    out = copy.deepcopy(dict(base))
    for key, val in update.items():
        if isinstance(val, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def parse_override(text: str) -> tuple[str, Any, bool]:
    """``"a.b=1e-3"`` -> ``("a.b", 0.001, False)``; a leading ``+`` allows a new key (third item).

    The value is parsed with :func:`yaml.safe_load`, so ``true``, ``null``, ``[1, 2]`` and
    ``{a: 1}`` work; ``1e-3`` is read as a float too (YAML 1.1 would keep it a string).
    """
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. optim.lr=1e-3), got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    add = key.startswith("+")
    key = key.lstrip("+")
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: expected a dotted key such as optim.lr, got {key!r} in {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {err}") from None
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            pass
    return key, value, add


def apply_overrides(
    config: Mapping[str, Any], overrides: Iterable[str], schema: type | None = None
) -> dict[str, Any]:
    """A copy of ``config`` with ``KEY=VALUE`` overrides applied; unknown keys raise ValueError.

    ``schema`` (a :class:`~.schema.RunConfig` subclass): keys inside its
    :func:`~.schema.addable` fields may be added without the ``+`` prefix.
    """
    from .schema import is_addable

    out = copy.deepcopy(dict(config))
    for text in overrides:
        key, value, add = parse_override(text)
        parts = key.split(".")
        node = out
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[:depth]) or "<top level>"
            if not isinstance(node, dict):
                raise ConfigError(
                    f"--set {key}: {here} is a value ({node!r}), not a section; cannot set {part!r}"
                )
            if part not in node and not add and not is_addable(schema, key):
                valid = ", ".join(sorted(_dotted_keys(node, ".".join(parts[:depth]))))
                raise ConfigError(
                    f"--set {key}: unknown key {part!r} under {here}; valid choices: {valid} "
                    "(prefix the key with '+' to add a new one)"
                )
            if last:
                node[part] = value
            else:
                if part not in node:
                    node[part] = {}
                node = node[part]
    return out


def _dotted_keys(node: Mapping[str, Any], prefix: str) -> list[str]:
    return [f"{prefix}.{k}" if prefix else str(k) for k in node]


def resolve_config(
    spec: TaskSpec,
    preset: str,
    overrides: Iterable[str] = (),
    model: str | None = None,
) -> dict[str, Any]:
    """The full configuration of a run of ``spec``.

    Args:
        spec: the task.
        preset: a key of ``spec.presets`` (``"quick"``, ``"paper"``, ...).
        overrides: ``"a.b.c=value"`` strings (see :func:`parse_override`).
        model: model name (one of ``spec.models``); ``None`` keeps the preset's ``model.name``,
            or the only model when the task has one.

    Raises:
        ConfigError: unknown preset, model or override key (the message lists the valid choices),
            or a value of the wrong type or out of range (checked against ``spec.schema``).
    """
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec: expected a TaskSpec, got {type(spec).__name__}")
    if preset not in spec.presets:
        raise ConfigError(
            f"preset: unknown preset {preset!r} for task {spec.name!r}; "
            f"valid choices: {', '.join(sorted(spec.presets))}"
        )
    cfg = deep_merge(ENGINE_DEFAULTS, spec.presets[preset])
    per_model = cfg.pop("per_model", None) or {}
    if model is None:
        model = cfg.get("model", {}).get("name")
        if model is None and len(spec.models) == 1:
            model = spec.models[0]
    if model is None:
        raise ConfigError(
            f"model: task {spec.name!r} needs a model; valid choices: {', '.join(spec.models)}"
        )
    if model not in spec.models:
        raise ConfigError(
            f"model: unknown model {model!r} for task {spec.name!r}; "
            f"valid choices: {', '.join(spec.models)}"
        )
    if model in per_model:
        cfg = deep_merge(cfg, per_model[model])
    cfg["task"] = spec.name
    cfg.setdefault("model", {})
    cfg["model"]["name"] = model
    cfg["preset"] = preset
    reference = copy.deepcopy(cfg)
    cfg = apply_overrides(cfg, overrides, spec.schema)
    if cfg["model"].get("name") not in spec.models:
        raise ConfigError(
            f"model.name: unknown model {cfg['model'].get('name')!r} for task {spec.name!r}; "
            f"valid choices: {', '.join(spec.models)}"
        )
    return check_run_config(spec, cfg, reference)


def check_run_config(
    spec: TaskSpec, config: Mapping[str, Any], reference: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``config`` checked against ``spec.schema`` (default :class:`~.schema.RunConfig`).

    Types, ranges and keys; ``reference`` (the preset) types the extra keys of open sections.
    Raises :class:`ConfigError` naming the key, the expected and the given value.
    """
    from .schema import RunConfig, check_config

    return check_config(config, spec.schema or RunConfig, reference)
