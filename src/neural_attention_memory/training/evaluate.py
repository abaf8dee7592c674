"""``evaluate``: score a trained run on its splits, extra data sets or task options."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import Dataset

from .config import ENGINE_DEFAULTS, ConfigError, deep_merge
from .engine import _QUIET, _check_spec, _loader, _trainer_kwargs, quiet_lightning_info
from .module import TaskModule, derive_seed, seed_all
from .results import BEST_CKPT, LAST_CKPT
from .rundir import read_config
from .spec import TaskSpec

__all__ = ["evaluate"]


def evaluate(
    run_dir: str | Path,
    splits: Sequence[str] | None = None,
    datasets: Mapping[str, Dataset] | None = None,
    options: Mapping[str, Any] | None = None,
    checkpoint: str = "best",
    spec: TaskSpec | None = None,
    progress_bar: bool = False,
    batch_size: int | None = None,
) -> dict[str, dict[str, float]]:
    """Evaluate a trained run on splits of its task, on extra data sets, or on a custom range.

    Args:
        run_dir: a folder written by :func:`fit`.
        splits: eval split names of the task (``None``: all of them, unless ``datasets`` or
            ``options`` are given).
        datasets: extra ``{name: Dataset}`` evaluated with the task's collate function.
        options: passed to ``spec.build_eval_dataset(config, seed, options)`` (e.g.
            ``{"digits": "17-22"}``); the result is reported under ``"digits=17-22"``.
        checkpoint: ``"best"``, ``"last"`` or a path to a ``.ckpt`` file.
        spec: the run's task (e.g. from :func:`~..experiments.registry.get_task`); required.
        progress_bar: show Lightning's progress bar.
        batch_size: evaluation batch size (default: the run's ``trainer.eval_batch_size``);
            metrics do not depend on it (they are exact sums over the split).

    Returns:
        ``{name: {metric: value}}`` with ``loss`` and every metric of ``spec.compute``.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if spec is None:  # the training layer does not know the registry of the experiments above it
        raise TypeError(
            f"spec: expected the TaskSpec of the run's task {config.get('task')!r} "
            "(e.g. neural_attention_memory.experiments.registry.get_task(task)), got None"
        )
    _check_spec(spec)
    config = deep_merge(ENGINE_DEFAULTS, config)
    seed = int(config.get("seed", 0))

    if checkpoint in ("best", "last"):
        ckpt = run_dir / (BEST_CKPT if checkpoint == "best" else LAST_CKPT)
        if checkpoint == "best" and not ckpt.exists():
            ckpt = run_dir / LAST_CKPT
    else:
        ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint: no checkpoint file at {ckpt}")

    to_eval: dict[str, Dataset] = {}
    if splits is not None or (datasets is None and options is None):
        seed_all(derive_seed(seed, 0))
        built = spec.build_datasets(config, seed)
        available = [k for k in built if k != "train"]
        wanted = list(splits) if splits is not None else available
        for s in wanted:
            if s not in built:
                raise ConfigError(
                    f"split: unknown split {s!r} for task {spec.name!r}; "
                    f"valid choices: {', '.join(sorted(built))}"
                )
            to_eval[s] = built[s]
    if options:
        if spec.build_eval_dataset is None:
            raise ConfigError(
                f"options: task {spec.name!r} does not build custom evaluation sets "
                f"(got {dict(options)}); use --split with one of its splits"
            )
        name = ",".join(f"{k}={v}" for k, v in options.items())
        to_eval[name] = spec.build_eval_dataset(config, seed, dict(options))
    if datasets:
        to_eval.update(datasets)
    if not to_eval:
        raise ConfigError("splits/datasets/options: nothing to evaluate")

    seed_all(derive_seed(seed, 0))
    module = TaskModule(spec, config, eval_splits=list(to_eval))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    module.load_state_dict(state["state_dict"])
    tcfg = dict(config["trainer"])
    tcfg["progress_bar"] = progress_bar
    # Evaluation runs in this process on one device (no multi-process launch).
    tcfg.update(devices=1, strategy="auto", num_nodes=1)
    if batch_size is not None:
        tcfg["eval_batch_size"] = batch_size
    with quiet_lightning_info():
        trainer = L.Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            **_trainer_kwargs(tcfg),
        )
    loaders = [_loader(spec, ds, tcfg, False, seed) for ds in to_eval.values()]
    with warnings.catch_warnings(), quiet_lightning_info():
        for msg in _QUIET:
            warnings.filterwarnings("ignore", message=msg)
        trainer.validate(module, loaders, verbose=False)
    return {k: dict(v) for k, v in module.last_eval.items()}
