"""What a run shows and logs: the progress bar, one line per epoch, loggers, quiet Lightning."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["epoch_summary", "loggers", "progress_bar", "quiet_lightning_info"]


class _DropTips(logging.Filter):
    """Drops Lightning's advertising tips (e.g. for its cloud logger) from the run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    if not any(isinstance(f, _DropTips) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_DropTips())


def progress_bar() -> Any:
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
    schedule = getattr(module, "train_schedule", None)
    if schedule is not None:  # e.g. a length curriculum: "train_max_size 5 train_samples 4089"
        parts.append(" ".join(f"{k} {v}" for k, v in schedule.describe(epoch).items()))
    for split, metrics in getattr(module, "last_eval", {}).items():
        vals = " ".join(f"{k} {v:.3g}" for k, v in metrics.items() if k not in ("loss", "select"))
        parts.append(f"{split} {vals}" if vals else split)
    return " | ".join(parts)


def loggers(run_dir: Path) -> list[Any]:
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


@contextlib.contextmanager
def quiet_lightning_info() -> Iterator[None]:
    """Silence Lightning's info lines ("GPU available: ...") for a quick evaluation."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)
