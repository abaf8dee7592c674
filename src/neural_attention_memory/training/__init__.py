"""The shared training engine: one Lightning-based ``fit``/``evaluate`` for every experiment family.

An experiment family describes a task as a :class:`TaskSpec` (data sets, model builder, a
``compute`` step returning loss and ``(num, den)`` metrics, presets); :func:`fit` trains it into a
run directory (config, meta, logs, checkpoints, ``results.json``) and resumes it exactly;
:func:`evaluate` scores a trained run on any split or extra data set; :func:`resolve_config` turns a
preset plus ``--set key=value`` overrides into the run's configuration.
"""

from .config import (
    ENGINE_DEFAULTS,
    ConfigError,
    apply_overrides,
    check_names,
    check_run_config,
    deep_merge,
    parse_override,
    resolve_config,
)
from .engine import count_parameters, fit, select_epoch
from .evaluate import evaluate
from .rundir import (
    atomic_write_json,
    atomic_write_text,
    atomic_write_yaml,
    read_config,
    read_results,
)
from .spec import StepOutput, TaskSpec

__all__ = [
    "ENGINE_DEFAULTS",
    "ConfigError",
    "StepOutput",
    "TaskSpec",
    "apply_overrides",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_yaml",
    "check_names",
    "check_run_config",
    "count_parameters",
    "deep_merge",
    "evaluate",
    "fit",
    "parse_override",
    "read_config",
    "read_results",
    "resolve_config",
    "select_epoch",
]
