"""``fit`` and ``evaluate``: the one training/evaluation engine for every experiment family."""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .config import ENGINE_DEFAULTS, ConfigError, check_run_config, deep_merge
from .module import EpochSeededSampler, TaskModule, derive_seed, seed_all
from .rundir import (
    CONFIG_FILE,
    META_FILE,
    RESULTS_FILE,
    atomic_write_json,
    atomic_write_yaml,
    collect_meta,
    read_config,
)
from .spec import TaskSpec

__all__ = ["count_parameters", "evaluate", "fit", "select_epoch"]

# Lightning warnings that say nothing useful for these runs: generated data sets need no loader
# workers, small epochs are shorter than the logging interval, a resumed run reuses its folders,
# and lightning 2.6 trips a torch 2.13 deprecation internally.
_QUIET = (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*exists and is not empty.*",
    ".*LeafSpec.*",
    # Epoch metrics are already all-reduced by the module (exact sums), so no sync_dist.
    ".*sync_dist=True.*",
)


class _DropTips(logging.Filter):
    """Drops Lightning's advertising tips (e.g. for its cloud logger) from the run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    if not any(isinstance(f, _DropTips) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_DropTips())

LAST_CKPT = "checkpoints/last.ckpt"
BEST_CKPT = "checkpoints/best.ckpt"


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def select_epoch(history: Sequence[Mapping[str, Any]], metric: str, mode: str) -> int | None:
    """Index into ``history`` of the selected epoch: the first best finite value of ``metric``.

    Mirrors :class:`lightning.pytorch.callbacks.ModelCheckpoint` (strict improvement; NaN never
    wins), so ``best.ckpt`` holds the selected epoch's weights.
    """
    best_i, best_v = None, None
    for i, entry in enumerate(history):
        v = entry.get(metric)
        if v is None or not math.isfinite(v):
            continue
        if best_v is None or (v > best_v if mode == "max" else v < best_v):
            best_i, best_v = i, v
    return best_i


def _check_spec(spec: TaskSpec) -> None:
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec: expected a TaskSpec, got {type(spec).__name__}")
    if spec.selection_mode not in ("max", "min"):
        raise ValueError(
            f"spec.selection_mode: expected 'max' or 'min', got {spec.selection_mode!r}"
        )
    if "/" not in spec.selection_metric:
        raise ValueError(
            f"spec.selection_metric: expected '<split>/<metric>', got {spec.selection_metric!r}"
        )


def _loader(
    spec: TaskSpec, ds: Dataset, tcfg: Mapping[str, Any], train: bool, seed: int
) -> DataLoader:
    batch_size = int(
        tcfg["batch_size"] if train else tcfg.get("eval_batch_size") or tcfg["batch_size"]
    )
    workers = int(tcfg.get("num_workers", 0) or 0)
    sampler = EpochSeededSampler(len(ds), seed) if (train and tcfg.get("shuffle", True)) else None
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, 3))
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        collate_fn=spec.collate_fn,
        num_workers=workers,
        drop_last=bool(tcfg.get("drop_last", False)) and train,
        generator=gen,
        persistent_workers=False,
    )


def _trainer_kwargs(tcfg: Mapping[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "accelerator": tcfg.get("accelerator", "auto"),
        "devices": tcfg.get("devices", 1),
        "precision": tcfg.get("precision", "32-true"),
        "enable_progress_bar": bool(tcfg.get("progress_bar", True)),
        "deterministic": tcfg.get("deterministic", False),
        "strategy": tcfg.get("strategy", "auto"),
        "num_nodes": int(tcfg.get("num_nodes", 1)),
    }
    return kw


def _progress_bar() -> Any:
    """Lightning's default bar (rich when installed, else tqdm) without the logger-version field."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    base = RichProgressBar if _RICH_AVAILABLE else TQDMProgressBar

    class _Bar(base):  # type: ignore[valid-type,misc]
        def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)  # the logger "version" is a folder name here, not a number
            loss = pl_module.running_loss() if hasattr(pl_module, "running_loss") else None
            if loss is not None and trainer.training:
                items["loss"] = f"{loss:.4g}"
            # The selection split's last metrics stay on the bar (all splits: one line per epoch).
            spec = getattr(pl_module, "spec", None)
            split = spec.selection_metric.split("/", 1)[0] if spec is not None else None
            for name, val in getattr(pl_module, "last_eval", {}).get(split, {}).items():
                if name not in ("loss", "select"):
                    items[f"{split}/{name}"] = f"{val:.3g}"
            return items

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            super().on_train_epoch_end(trainer, pl_module)
            # One line per epoch with the validation metrics (the bar itself is redrawn).
            line = epoch_summary(trainer.current_epoch, trainer.max_epochs, pl_module)
            if line and trainer.is_global_zero:
                self.print(line)

    return _Bar()


def epoch_summary(epoch: int, max_epochs: int | None, module: Any) -> str:
    """``epoch 2/3  train loss 0.41 | id seq_acc 0.998 tok_acc 1 | ...``: one epoch's line."""
    parts = [f"epoch {epoch + 1}/{max_epochs}"]
    loss = module.running_loss() if hasattr(module, "running_loss") else None
    if loss is not None:
        parts.append(f"train loss {loss:.4g}")
    for split, metrics in getattr(module, "last_eval", {}).items():
        vals = " ".join(f"{k} {v:.3g}" for k, v in metrics.items() if k not in ("loss", "select"))
        parts.append(f"{split} {vals}" if vals else split)
    return " | ".join(parts)


def _loggers(run_dir: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    # Lightning's CSV writer deletes an existing metrics.csv, so each resumed session gets its own
    # folder (logs/csv, logs/csv-resume1, ...); TensorBoard appends a new event file by itself.
    version, k = "csv", 0
    while (run_dir / "logs" / version / "metrics.csv").exists():
        k += 1
        version = f"csv-resume{k}"
    loggers: list[Any] = [CSVLogger(save_dir=run_dir, name="logs", version=version)]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(
                save_dir=run_dir, name="logs", version="tensorboard", default_hp_metric=False
            )
        )
    except ModuleNotFoundError:  # tensorboard is an optional extra
        pass
    return loggers


def _build_results(
    spec: TaskSpec,
    config: Mapping[str, Any],
    module: TaskModule,
    eval_splits: Sequence[str],
    status: str,
    session_t0: float,
    error: str | None = None,
) -> dict[str, Any]:
    history = module.history
    sel = select_epoch(history, spec.selection_metric, spec.selection_mode)
    splits: dict[str, dict[str, float]] = {}
    if sel is not None:
        entry = history[sel]
        for split in ["train", *eval_splits]:
            prefix = f"{split}/"
            metrics = {k[len(prefix) :]: v for k, v in entry.items() if k.startswith(prefix)}
            if metrics:
                splits[split] = metrics
    res: dict[str, Any] = {
        "task": spec.name,
        "family": spec.family,
        "model": config["model"]["name"],
        "preset": config.get("preset"),
        "seed": config.get("seed"),
        "status": status,
        "selection": {
            "metric": spec.selection_metric,
            "mode": spec.selection_mode,
            "epoch": history[sel]["epoch"] if sel is not None else None,
            "value": history[sel].get(spec.selection_metric) if sel is not None else None,
        },
        "selected_epoch": history[sel]["epoch"] if sel is not None else None,
        "splits": splits,
        "epochs_completed": len(history),
        "max_epochs": int(config["trainer"]["max_epochs"]),
        "num_params": count_parameters(module.model),
        "num_trainable_params": sum(
            p.numel() for p in module.model.parameters() if p.requires_grad
        ),
        # Seconds spent in training + evaluation epochs, summed over resumed sessions.
        "wall_clock_s": module.elapsed_s,
        # Process CPU seconds of the same epochs (the run's cost on a shared machine).
        "cpu_time_s": module.cpu_s,
        "session_wall_clock_s": time.perf_counter() - session_t0,
        "checkpoints": {"last": LAST_CKPT, "best": BEST_CKPT},
        "history": history,
    }
    if error is not None:
        res["error"] = error
    return res


def fit(
    spec: TaskSpec,
    config: Mapping[str, Any],
    run_dir: str | Path,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``spec`` with ``config``, writing a run directory; return the ``results.json`` dict.

    Every eval split returned by ``spec.build_datasets`` (all keys but ``"train"``) is evaluated
    each epoch; metrics are ``sum(num) / sum(den)`` over the split and logged as
    ``<split>/<metric>`` (plus ``<split>/loss``). The reported epoch is the one with the best
    ``spec.selection_metric`` (first best; ``spec.selection_mode``); ``results.json`` holds every
    split's metrics at that epoch, the per-epoch history, the parameter count, wall-clock seconds
    and ``status`` (``running``, ``finished``, ``interrupted`` or ``failed``).

    Args:
        spec: the task.
        config: resolved configuration (:func:`~.config.resolve_config`); engine keys missing
            from it take the values of :data:`~.config.ENGINE_DEFAULTS`.
        run_dir: output folder (created).
        resume: continue from ``run_dir/checkpoints/last.ckpt`` when it exists (the result equals an
            uninterrupted run's); without it, a folder that already holds a run is an error.

    Raises:
        ValueError: ``run_dir`` already holds a run and ``resume`` is false; bad config values;
            a selection metric that the task never logs.
    """
    _check_spec(spec)
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a mapping, got {type(config).__name__}")
    config = deep_merge(ENGINE_DEFAULTS, config)
    config["task"] = spec.name
    config = check_run_config(spec, config)
    if config["model"].get("name") not in spec.models:
        raise ConfigError(
            f"config['model']['name']: expected one of {', '.join(spec.models)}, "
            f"got {config['model'].get('name')!r}"
        )
    tcfg = config["trainer"]
    max_epochs = tcfg.get("max_epochs")
    if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs: expected an integer >= 1, got {max_epochs!r}")
    seed = config.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")

    run_dir = Path(run_dir)
    last = run_dir / LAST_CKPT
    # Under multi-process training (DDP) every process runs fit(); only rank 0 writes files.
    rank_zero = _is_rank_zero()
    if rank_zero and not resume and (last.exists() or (run_dir / RESULTS_FILE).exists()):
        raise ConfigError(
            f"run_dir: {run_dir} already holds a run; resume it (resume=True / --resume) "
            "or choose another folder"
        )
    ckpt_path = str(last) if resume and last.exists() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    session_t0 = time.perf_counter()

    if rank_zero:
        atomic_write_yaml(run_dir / CONFIG_FILE, config)
        meta_extra: dict[str, Any] = {"task": spec.name, "model": config["model"]["name"]}
        if ckpt_path is not None:
            old = _read_json_or_none(run_dir / META_FILE)
            prev = (old or {}).get("resumes", [])
            meta = dict(old) if old else collect_meta(seed, meta_extra)
            meta["resumes"] = [*prev, collect_meta(seed)]
        else:
            meta = collect_meta(seed, meta_extra)
        atomic_write_json(run_dir / META_FILE, meta)

    # Data and model are functions of the seed alone.
    seed_all(derive_seed(seed, 0))
    datasets = spec.build_datasets(config, seed)
    if not isinstance(datasets, Mapping) or "train" not in datasets:
        raise ValueError(
            f"spec.build_datasets: expected a dict with a 'train' split, got "
            f"{sorted(datasets) if isinstance(datasets, Mapping) else type(datasets).__name__}"
        )
    eval_splits = [k for k in datasets if k != "train"]
    sel_split = spec.selection_metric.split("/", 1)[0]
    if sel_split not in ["train", *eval_splits]:
        raise ValueError(
            f"spec.selection_metric: split {sel_split!r} is not built by the task; "
            f"valid splits: {', '.join(['train', *eval_splits])}"
        )

    def write_results(
        module: TaskModule, status: str = "running", error: str | None = None
    ) -> dict:
        res = _build_results(spec, config, module, eval_splits, status, session_t0, error)
        if _is_rank_zero():
            atomic_write_json(run_dir / RESULTS_FILE, res)
        return res

    def on_epoch_end(module: TaskModule) -> None:
        if module.history and spec.selection_metric not in module.history[-1]:
            logged = sorted(k for k in module.history[-1] if "/" in k)
            raise ValueError(
                f"spec.selection_metric: {spec.selection_metric!r} was not logged; "
                f"logged metrics: {', '.join(logged)}"
            )
        write_results(module)

    seed_all(derive_seed(seed, 0))
    module = TaskModule(spec, config, eval_splits=eval_splits, on_epoch_end=on_epoch_end)

    from lightning.pytorch.callbacks import ModelCheckpoint

    from .budget import CPUTimeBudget

    ckpt_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=spec.selection_metric,
        mode=spec.selection_mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    grad_clip = config["optim"].get("grad_clip")
    limit = tcfg.get("limit_train_batches")
    with _quiet_lightning_info():  # no "GPU available: ..." banner on every run
        trainer = L.Trainer(
            default_root_dir=run_dir,
            max_epochs=max_epochs,
            logger=_loggers(run_dir),
            callbacks=[ckpt_cb]
            + ([CPUTimeBudget(tcfg["max_train_cpu_s"])] if tcfg.get("max_train_cpu_s") else [])
            + ([_progress_bar()] if tcfg.get("progress_bar", True) else []),
            gradient_clip_val=float(grad_clip) if grad_clip else None,
            gradient_clip_algorithm="norm",
            num_sanity_val_steps=0,
            log_every_n_steps=int(tcfg.get("log_every_n_steps", 50)),
            enable_model_summary=False,
            **({"limit_train_batches": limit} if limit is not None else {}),
            **_trainer_kwargs(tcfg),
        )
    train_dl = _loader(spec, datasets["train"], tcfg, True, seed)
    if isinstance(train_dl.sampler, EpochSeededSampler):
        module.train_sampler = train_dl.sampler
    module.train_generator = train_dl.generator
    # Lightning creates the first train iterator of a session before on_train_epoch_start (and a
    # multi-worker loader draws its indices and worker seeds right then), so prime the sampler
    # and generator for the epoch this session starts at.
    start_epoch = _completed_epochs(ckpt_path) if ckpt_path is not None else 0
    if module.train_sampler is not None:
        module.train_sampler.set_epoch(start_epoch)
    train_dl.generator.manual_seed(derive_seed(seed, 3, start_epoch))
    val_dls = [_loader(spec, datasets[s], tcfg, False, seed) for s in eval_splits]

    try:
        with warnings.catch_warnings():
            # Lightning asks for more CPU loader workers; generated data sets do not need them.
            for msg in _QUIET:
                warnings.filterwarnings("ignore", message=msg)
            with _quiet_lightning_info():  # e.g. "`Trainer.fit` stopped: `max_epochs=3` reached."
                trainer.fit(module, train_dl, val_dls or None, ckpt_path=ckpt_path)
    except (KeyboardInterrupt, SystemExit):
        write_results(module, "interrupted", "interrupted by the user")
        raise
    except BaseException as err:
        write_results(module, "failed", f"{type(err).__name__}: {err}")
        raise
    return write_results(module, "finished")


@contextlib.contextmanager
def _quiet_lightning_info() -> Iterator[None]:
    """Silence Lightning's info lines ("GPU available: ...") for a quick evaluation."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _completed_epochs(ckpt_path: str) -> int:
    """Epochs finished in a checkpoint written by :func:`fit` (its history length)."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    return len(state.get("nam_history", []))


def _read_json_or_none(path: Path) -> dict[str, Any] | None:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


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
    with _quiet_lightning_info():
        trainer = L.Trainer(
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            **_trainer_kwargs(tcfg),
        )
    loaders = [_loader(spec, ds, tcfg, False, seed) for ds in to_eval.values()]
    with warnings.catch_warnings(), _quiet_lightning_info():
        for msg in _QUIET:
            warnings.filterwarnings("ignore", message=msg)
        trainer.validate(module, loaders, verbose=False)
    return {k: dict(v) for k, v in module.last_eval.items()}
