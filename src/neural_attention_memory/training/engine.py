"""``fit`` and ``evaluate``: the one training/evaluation engine for every experiment family."""

from __future__ import annotations

import contextlib
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from ..models._params import count_parameters
from .checkpoint import AtomicCheckpointIO, remove_stale_temporaries
from .config import ENGINE_DEFAULTS, ConfigError, check_run_config, deep_merge
from .display import loggers, progress_bar, quiet_lightning_info
from .lock import RunLock
from .module import EpochSeededSampler, TaskModule, derive_seed, seed_all
from .results import LAST_CKPT, build_results, select_epoch
from .rundir import (
    CONFIG_FILE,
    META_FILE,
    RESULTS_FILE,
    atomic_write_json,
    atomic_write_yaml,
    collect_meta,
)
from .spec import TaskSpec, TrainSchedule

# count_parameters and select_epoch are re-exported from ..models._params and .results.
__all__ = ["count_parameters", "fit", "select_epoch"]

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
    spec: TaskSpec,
    ds: Dataset,
    tcfg: Mapping[str, Any],
    train: bool,
    seed: int,
    schedule: TrainSchedule | None = None,
) -> DataLoader:
    batch_size = int(
        tcfg["batch_size"] if train else tcfg.get("eval_batch_size") or tcfg["batch_size"]
    )
    workers = int(tcfg.get("num_workers", 0) or 0)
    shuffle = bool(tcfg.get("shuffle", True))
    sampler = None
    if train and schedule is not None:
        sampler = EpochSeededSampler(len(ds), seed, indices=schedule.indices, shuffle=shuffle)
    elif train and shuffle:
        sampler = EpochSeededSampler(len(ds), seed)
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


def denormals_flushed() -> bool:
    """Whether this thread's CPU arithmetic treats subnormal float32 values as zero."""
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(1.0).item()) == 0.0


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Subnormal floats count as zero on the CPU inside the block (``torch.set_flush_denormal``,
    this thread), restored afterwards; a no-op when ``enabled`` is False or the CPU lacks it.

    Values below 1.2e-38 (float32) become 0: no effect a model could learn from, but arithmetic
    on subnormals is many times slower on x86 (a trained LSAM's step: 4.1x; see docs/training.md).
    """
    before = denormals_flushed()
    if enabled and not before:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled and not before:
            torch.set_flush_denormal(False)


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
    # Under multi-process training (DDP) every process runs fit(); only rank 0 writes files.
    rank_zero = _is_rank_zero()
    if rank_zero and not resume:
        _refuse_used_folder(run_dir)
    # What depends on the user's input (model hyper-parameters, data files) is checked before the
    # run folder is touched, so a bad value or missing data leaves nothing behind.
    seed_all(derive_seed(seed, 0))
    model = _build_model(spec, config)
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
    schedule = _train_schedule(spec, config, datasets["train"])
    created = _first_missing(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    started: list[bool] = []  # set once training starts: from then on the folder is the run's
    try:
        if rank_zero:
            lock.acquire()
            if not resume:  # another run may have used the folder since the first check
                _refuse_used_folder(run_dir)
            remove_stale_temporaries(run_dir)
            remove_stale_temporaries(run_dir / "checkpoints")
        return _fit_in_folder(
            spec,
            config,
            run_dir,
            resume,
            model,
            datasets,
            eval_splits,
            rank_zero,
            started,
            schedule,
        )
    except BaseException:
        if created is not None and not started and rank_zero and lock.held:
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        lock.release()


def _refuse_used_folder(run_dir: Path) -> None:
    if (run_dir / LAST_CKPT).exists() or (run_dir / RESULTS_FILE).exists():
        raise ConfigError(
            f"run_dir: {run_dir} already holds a run; resume it (resume=True / --resume) "
            "or choose another folder"
        )


def _first_missing(path: Path) -> Path | None:
    """The top-most folder of ``path`` that does not exist yet (``None``: it exists)."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def _build_model(spec: TaskSpec, config: Mapping[str, Any]) -> torch.nn.Module:
    """The run's model, built first: bad model hyper-parameters fail before any data or file."""
    try:
        return spec.build_model(config)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model: {err}") from None


class _BestCheckpoint(ModelCheckpoint):
    """``best.ckpt`` that keeps its score when the run folder was moved or copied.

    Lightning's :class:`ModelCheckpoint` drops the best score it saved when the checkpoint's
    ``dirpath`` differs from the current one, so after resuming a moved run folder the first new
    epoch overwrote ``best.ckpt`` even when an earlier epoch stays the selected one
    (``results.json`` and ``best.ckpt`` would then disagree). The files live in the run folder, so
    the saved paths are mapped into this folder instead.
    """

    def _generate_state_key(self, **kwargs: Any) -> str:
        # Lightning keys a callback's saved state by its class name: keep ModelCheckpoint's, so
        # checkpoints written before this class existed still restore the best score.
        return f"ModelCheckpoint{kwargs!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old is not None and self.dirpath is not None and old != self.dirpath:
            here = Path(self.dirpath)

            def moved(path: Any) -> Any:
                return str(here / Path(path).name) if path else path

            state_dict = {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": moved(state_dict.get("best_model_path")),
                "kth_best_model_path": moved(state_dict.get("kth_best_model_path")),
                "last_model_path": moved(state_dict.get("last_model_path")),
                "best_k_models": {
                    moved(k): v for k, v in (state_dict.get("best_k_models") or {}).items()
                },
            }
        super().load_state_dict(state_dict)


class _LastCheckpointThenResults(Checkpoint):
    """Saves ``last.ckpt``, then writes ``results.json``, at the end of every epoch.

    Lightning 2.6's :class:`ModelCheckpoint` writes ``last.ckpt`` only in epochs that improve the
    monitored metric, so this callback writes it every epoch. Lightning calls the
    LightningModule's ``on_train_epoch_end`` (which completes the epoch's history entry) and then
    the :class:`Checkpoint` callbacks in list order; placed after the :class:`ModelCheckpoint`
    (``best.ckpt``), this one saves the epoch before its results claim it, so an interrupt between
    the two writes leaves results one epoch behind the checkpoint, never ahead of it.
    """

    def __init__(self, last: Path, write: Callable[[TaskModule], Any]) -> None:
        self.last, self.write = last, write

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert isinstance(pl_module, TaskModule)
        trainer.save_checkpoint(self.last, weights_only=False)  # all ranks; rank 0 writes
        self.write(pl_module)


def _fit_in_folder(
    spec: TaskSpec,
    config: dict[str, Any],
    run_dir: Path,
    resume: bool,
    model: torch.nn.Module,
    datasets: Mapping[str, Dataset],
    eval_splits: list[str],
    rank_zero: bool,
    started: list[bool],
    schedule: TrainSchedule | None = None,
) -> dict[str, Any]:
    """:func:`fit` once the folder is made and locked."""
    tcfg = config["trainer"]
    seed = int(config["seed"])
    last = run_dir / LAST_CKPT
    ckpt_path = str(last) if resume and last.exists() else None
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

    def write_results(
        module: TaskModule, status: str = "running", error: str | None = None
    ) -> dict:
        res = build_results(spec, config, module, eval_splits, status, session_t0, error)
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

    module = TaskModule(
        spec, config, eval_splits=eval_splits, on_epoch_end=on_epoch_end, model=model
    )

    from .budget import CPUTimeBudget

    ckpt_cb = _BestCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=spec.selection_metric,
        mode=spec.selection_mode,
        save_top_k=1,
        save_last=False,  # written every epoch by _LastCheckpointThenResults
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    grad_clip = config["optim"].get("grad_clip")
    limit = tcfg.get("limit_train_batches")
    with quiet_lightning_info():  # no "GPU available: ..." banner on every run
        trainer = L.Trainer(
            default_root_dir=run_dir,
            max_epochs=int(tcfg["max_epochs"]),
            plugins=[AtomicCheckpointIO()],
            logger=loggers(run_dir),
            # The checkpoints first, then the results of the epoch they hold.
            callbacks=[ckpt_cb, _LastCheckpointThenResults(last, write_results)]
            + ([CPUTimeBudget(tcfg["max_train_cpu_s"])] if tcfg.get("max_train_cpu_s") else [])
            + ([progress_bar()] if tcfg.get("progress_bar", True) else []),
            gradient_clip_val=float(grad_clip) if grad_clip else None,
            gradient_clip_algorithm="norm",
            num_sanity_val_steps=0,
            log_every_n_steps=int(tcfg.get("log_every_n_steps", 50)),
            enable_model_summary=False,
            **({"limit_train_batches": limit} if limit is not None else {}),
            # An epoch's subset sets its length: Lightning re-measures the loader every epoch.
            reload_dataloaders_every_n_epochs=1 if schedule is not None else 0,
            **_trainer_kwargs(tcfg),
        )
    train_dl = _loader(spec, datasets["train"], tcfg, True, seed, schedule)
    if isinstance(train_dl.sampler, EpochSeededSampler):
        module.train_sampler = train_dl.sampler
    module.train_schedule = schedule
    module.train_generator = train_dl.generator
    # Lightning creates the first train iterator of a session before on_train_epoch_start (and a
    # multi-worker loader draws its indices and worker seeds right then), so prime the sampler
    # and generator for the epoch this session starts at.
    start_epoch = _completed_epochs(ckpt_path) if ckpt_path is not None else 0
    if module.train_sampler is not None:
        module.train_sampler.set_epoch(start_epoch)
    train_dl.generator.manual_seed(derive_seed(seed, 3, start_epoch))
    val_dls = [_loader(spec, datasets[s], tcfg, False, seed) for s in eval_splits]

    started.append(True)
    try:
        with warnings.catch_warnings():
            # Lightning asks for more CPU loader workers; generated data sets do not need them.
            for msg in _QUIET:
                warnings.filterwarnings("ignore", message=msg)
            with (
                quiet_lightning_info(),  # e.g. "`Trainer.fit` stopped: `max_epochs=3` reached."
                flush_denormals(bool(tcfg.get("flush_denormal", True))),
            ):
                trainer.fit(module, train_dl, val_dls or None, ckpt_path=ckpt_path)
    except (KeyboardInterrupt, SystemExit):
        _write_final(write_results, module, "interrupted", "interrupted by the user")
        raise
    except BaseException as err:
        _write_final(write_results, module, "failed", f"{type(err).__name__}: {err}")
        raise
    return write_results(module, "finished")


def _train_schedule(
    spec: TaskSpec, config: Mapping[str, Any], train: Dataset
) -> TrainSchedule | None:
    """The task's per-epoch training subsets for ``config`` (``None``: the whole set)."""
    if spec.train_schedule is None:
        return None
    schedule = spec.train_schedule(config, train)
    if schedule is not None and not isinstance(schedule, TrainSchedule):
        raise TypeError(
            f"spec.train_schedule: expected a TrainSchedule or None, got {type(schedule).__name__}"
        )
    return schedule


def _write_final(write: Any, module: TaskModule, status: str, reason: str) -> None:
    """Record a run's end; a second failure here (e.g. the disk is full) must not hide the first."""
    try:
        write(module, status, reason)
    except Exception as err:
        warnings.warn(f"could not record status {status!r}: {err}", stacklevel=2)


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
