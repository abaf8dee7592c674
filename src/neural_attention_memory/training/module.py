"""The Lightning module and sampler behind :func:`neural_attention_memory.training.fit`.

One module trains every :class:`~.spec.TaskSpec`: it calls ``spec.compute(model, batch)``,
aggregates each metric exactly over a split as ``sum(num) / sum(den)``, keeps the per-epoch history
(saved inside checkpoints so a resumed run continues it), sets the learning rate of epoch ``e`` to
``lr * lr_decay**e`` and reseeds every RNG at the start of each epoch from ``(seed, epoch)``. With
the train sampler also seeded from ``(seed, epoch)``, an epoch's computation depends only on the
weights and optimizer state at its start, which Lightning's checkpoint restores exactly; so a
resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Sampler

from .spec import StepOutput, TaskSpec, TrainSchedule

__all__ = ["EpochSeededSampler", "TaskModule", "derive_seed", "seed_all"]

_MASK63 = (1 << 63) - 1
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    # splitmix64 finaliser: a bijection on 64-bit integers that scatters nearby inputs.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, *salt: int) -> int:
    """A 63-bit seed mixed from ``seed`` and ``salt`` (e.g. the epoch), stable across runs."""
    x = _mix64(int(seed) & _MASK64)
    for s in salt:
        x = _mix64(x ^ (int(s) & _MASK64))
    return x & _MASK63


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))  # noqa: NPY002 - user code may draw from the global RNG
    torch.manual_seed(seed)


class EpochSeededSampler(Sampler[int]):
    """Random permutation of ``range(n)`` from ``(seed, epoch)``; Lightning calls ``set_epoch``.

    With ``indices`` (``epoch -> indices``, e.g. a :class:`~.spec.TrainSchedule`'s), epoch ``e``
    draws only ``indices(e)``, permuted by the same ``(seed, e)`` stream (in order when
    ``shuffle`` is false), and ``len`` is that epoch's count.
    """

    def __init__(
        self,
        n: int,
        seed: int,
        indices: Callable[[int], Sequence[int]] | None = None,
        shuffle: bool = True,
    ) -> None:
        if n < 0:
            raise ValueError(f"n: expected a non-negative dataset size, got {n}")
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0
        self.indices = indices
        self.shuffle = bool(shuffle)
        self._subset: tuple[int, list[int]] | None = None  # (epoch, indices) cache

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def subset(self) -> list[int] | None:
        """The indices of the current epoch (``None``: all of ``range(n)``)."""
        if self.indices is None:
            return None
        if self._subset is None or self._subset[0] != self.epoch:
            sub = [int(i) for i in self.indices(self.epoch)]
            if not sub or not 0 <= min(sub) <= max(sub) < self.n:
                got = f"[{min(sub)}, {max(sub)}]" if sub else "none"
                raise ValueError(
                    f"indices: expected a non-empty list of indices in [0, {self.n}) for epoch "
                    f"{self.epoch}, got {len(sub)} indices, range {got}"
                )
            self._subset = (self.epoch, sub)
        return self._subset[1]

    def __len__(self) -> int:
        sub = self.subset()
        return self.n if sub is None else len(sub)

    def __iter__(self) -> Iterator[int]:
        sub = self.subset()
        if sub is not None and not self.shuffle:
            return iter(list(sub))
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, 1, self.epoch))
        perm = torch.randperm(self.n if sub is None else len(sub), generator=g).tolist()
        return iter(perm if sub is None else [sub[i] for i in perm])


def _batch_size(batch: Any) -> int:
    """Number of samples in ``batch`` (first dimension of its first tensor; 1 if none is found)."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else 1
    if isinstance(batch, Mapping):
        items: Sequence[Any] = list(batch.values())
    elif isinstance(batch, (list, tuple)):
        items = batch
    else:
        return 1
    for item in items:
        n = _batch_size(item)
        if n != 1 or isinstance(item, Tensor):
            return n
    return 1


class _Sums:
    """Running ``sum(num)``, ``sum(den)`` per metric, plus a sample-weighted loss, in float64.

    Sums stay tensors on the batch's device, so an accelerator is not synchronised every step;
    they become Python floats once per epoch in :meth:`compute`.
    """

    def __init__(self) -> None:
        self.num: dict[str, Tensor] = {}
        self.den: dict[str, Tensor] = {}
        self.loss_sum: Tensor | float = 0.0
        self.count = 0

    def add(self, out: StepOutput, n: int) -> None:
        self.loss_sum = self.loss_sum + out.loss.detach().double() * n
        self.count += n
        for name, pair in out.metrics.items():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(
                    f"StepOutput.metrics[{name!r}]: expected a (numerator, denominator) pair, "
                    f"got {type(pair).__name__}"
                )
            num, den = (torch.as_tensor(x).detach().double().reshape(()) for x in pair)
            self.num[name] = self.num[name] + num if name in self.num else num
            self.den[name] = self.den[name] + den if name in self.den else den

    def compute(self, reduce: Callable[[Tensor], Tensor]) -> dict[str, float]:
        names = sorted(self.num)
        # One all-reduce (a no-op on one device) over [loss_sum, count, num..., den...].
        parts = [self.loss_sum, float(self.count), *(self.num[n] for n in names)]
        parts += [self.den[n] for n in names]
        flat = torch.stack([torch.as_tensor(p, dtype=torch.float64).cpu() for p in parts])
        flat = reduce(flat)
        loss_sum, count, rest = float(flat[0]), float(flat[1]), flat[2:].tolist()
        k = len(names)
        out = {"loss": loss_sum / count if count > 0 else math.nan}
        for i, name in enumerate(names):
            den = rest[k + i]
            out[name] = rest[i] / den if den > 0 else math.nan
        return out


class TaskModule(L.LightningModule):
    """Wraps ``spec.build_model(config)``; trains with ``spec.compute``; evaluates named splits.

    Args:
        spec: the task.
        config: resolved configuration (see :func:`~.config.resolve_config`).
        eval_splits: names of the validation dataloaders, in order.
        on_epoch_end: called as ``fn(module)`` after each epoch's history entry is complete
            (the engine writes ``results.json`` there).
    """

    def __init__(
        self,
        spec: TaskSpec,
        config: Mapping[str, Any],
        eval_splits: Sequence[str] = (),
        on_epoch_end: Callable[[TaskModule], None] | None = None,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.model = model if model is not None else spec.build_model(config)
        if not isinstance(self.model, nn.Module):
            raise TypeError(
                f"spec.build_model: expected an nn.Module, got {type(self.model).__name__}"
            )
        self.eval_splits = list(eval_splits)
        self.on_epoch_end = on_epoch_end
        self.seed = int(config.get("seed", 0))
        self.history: list[dict[str, Any]] = []
        self.elapsed_s = 0.0  # training wall-clock up to the last completed epoch (all sessions)
        # Process CPU time of the same epochs: on a shared machine wall-clock mostly measures the
        # other processes, CPU time measures the run.
        self.cpu_s = 0.0
        self.last_eval: dict[str, dict[str, float]] = {}
        self._train_sums = _Sums()
        self._eval_sums: list[_Sums] = []
        self._epoch_t0 = 0.0
        self._epoch_c0 = 0.0
        self._pending: dict[str, Any] = {}
        #: Set by the engine; its epoch is also set here in case a wrapper (e.g. Lightning's
        #: distributed sampler wrapper) does not forward ``set_epoch``.
        self.train_sampler: EpochSeededSampler | None = None
        #: The train DataLoader's generator (worker seeds); reseeded per epoch so loader workers
        #: draw the same random streams in a resumed run.
        self.train_generator: torch.Generator | None = None
        #: Set by the engine when the task trains each epoch on a subset of its training set.
        self.train_schedule: TrainSchedule | None = None

    # ----------------------------------------------------------------- optimisation
    def _lr_at(self, epoch: int, step: int | None = None) -> float:
        """``lr * lr_decay**epoch``, times a linear warm-up ``(step + 1) / warmup_steps`` while
        ``step < optim.warmup_steps``. A function of (epoch, step) only, so resume needs no state."""
        optim = self.config["optim"]
        lr = float(optim["lr"]) * float(optim.get("lr_decay", 1.0) or 1.0) ** epoch
        warmup = int(optim.get("warmup_steps", 0) or 0)
        if step is not None and step < warmup:
            lr *= (step + 1) / warmup
        return lr

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optim = self.config["optim"]
        name = str(optim.get("name", "adam")).lower()
        kwargs = {
            "lr": self._lr_at(0, 0),
            "weight_decay": float(optim.get("weight_decay", 0.0) or 0.0),
        }
        if name == "adam":
            return torch.optim.Adam(self.model.parameters(), **kwargs)
        if name == "adamw":
            return torch.optim.AdamW(self.model.parameters(), **kwargs)
        raise ValueError(f"optim.name: expected 'adam' or 'adamw', got {name!r}")

    # ----------------------------------------------------------------- training
    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        # Epoch-level determinism: everything random in this epoch follows from (seed, epoch).
        seed_all(derive_seed(self.seed, 2, epoch))
        if self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch)
        if self.train_generator is not None:
            self.train_generator.manual_seed(derive_seed(self.seed, 3, epoch))
        lr = self._lr_at(epoch)
        self._set_lr(self._lr_at(epoch, self.global_step))
        self._train_sums = _Sums()
        self._epoch_t0 = time.perf_counter()
        self._epoch_c0 = time.process_time()
        self._pending = {"epoch": epoch, "lr": lr}
        if self.train_schedule is not None:
            self._pending.update(self.train_schedule.describe(epoch))

    def add_to_epoch_entry(self, **items: Any) -> None:
        """Add ``items`` to the history entry of the current epoch (e.g. from a callback)."""
        self._pending.update(items)

    def _set_lr(self, lr: float) -> None:
        for opt in self._optimizers():
            for group in opt.param_groups:
                group["lr"] = lr

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        warmup = int(self.config["optim"].get("warmup_steps", 0) or 0)
        # During warm-up (and on the first step after it) the lr changes every step.
        if self.global_step <= warmup and warmup > 0:
            self._set_lr(self._lr_at(self.current_epoch, self.global_step))

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        opts = self.optimizers(use_pl_optimizer=False)
        return list(opts) if isinstance(opts, (list, tuple)) else [opts]

    def _compute(self, batch: Any) -> StepOutput:
        out = self.spec.compute(self.model, batch)
        if not isinstance(out, StepOutput):
            raise TypeError(f"spec.compute: expected a StepOutput, got {type(out).__name__}")
        return out

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        out = self._compute(batch)
        # Fail fast on a diverged run; on an accelerator this check would sync every step.
        if out.loss.device.type == "cpu" and not torch.isfinite(out.loss.detach()):
            raise FloatingPointError(
                f"training loss is {float(out.loss.detach())} at epoch {self.current_epoch}, "
                f"batch {batch_idx}"
            )
        self._train_sums.add(out, out.batch_size or _batch_size(batch))
        # self.log costs ~2 ms per call on CPU, so log the step loss only on the steps the loggers
        # write (every log_every_n_steps); the progress bar reads running_loss() instead.
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 1)))
        if (self.global_step + 1) % every == 0:
            self.log("train/loss_step", out.loss.detach(), on_step=True, on_epoch=False)
        return out.loss

    def running_loss(self) -> float | None:
        """Mean training loss of the current epoch so far (shown by the progress bar)."""
        sums = self._train_sums
        return float(sums.loss_sum) / sums.count if sums.count else None

    def on_train_epoch_end(self) -> None:
        train = self._train_sums.compute(self._reduce)
        for name, val in train.items():
            self.log(f"train/{name}", val, on_step=False, on_epoch=True)
        entry = dict(self._pending)
        entry.update({f"train/{k}": v for k, v in train.items()})
        for split, metrics in self.last_eval.items():
            entry.update({f"{split}/{k}": v for k, v in metrics.items()})
        epoch_s = time.perf_counter() - self._epoch_t0
        epoch_cpu_s = time.process_time() - self._epoch_c0
        self.elapsed_s += epoch_s
        self.cpu_s += epoch_cpu_s
        entry["epoch_s"] = epoch_s
        self.history.append(entry)
        max_epochs = self.trainer.max_epochs if self._trainer is not None else None
        last = max_epochs is None or 0 <= max_epochs <= self.current_epoch + 1
        if self.train_schedule is not None and self.train_sampler is not None and not last:
            # Lightning sizes the next epoch's batches (reload_dataloaders_every_n_epochs) before
            # it calls set_epoch, so the sampler moves to the next epoch's subset now.
            self.train_sampler.set_epoch(self.current_epoch + 1)
        if self.on_epoch_end is not None:
            self.on_epoch_end(self)

    # ----------------------------------------------------------------- evaluation
    def on_validation_epoch_start(self) -> None:
        self._eval_sums = [_Sums() for _ in self.eval_splits]

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        out = self._compute(batch)
        self._eval_sums[dataloader_idx].add(out, out.batch_size or _batch_size(batch))

    def on_validation_epoch_end(self) -> None:
        self.last_eval = {}
        for split, sums in zip(self.eval_splits, self._eval_sums, strict=True):
            metrics = sums.compute(self._reduce)
            self.last_eval[split] = metrics
            for name, val in metrics.items():
                self.log(f"{split}/{name}", val, add_dataloader_idx=False, prog_bar=False)

    def _reduce(self, t: Tensor) -> Tensor:
        if self._trainer is None:
            return t
        return self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum").cpu()

    # ----------------------------------------------------------------- checkpoint state
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nam_history"] = self.history
        checkpoint["nam_elapsed_s"] = self.elapsed_s
        checkpoint["nam_cpu_s"] = self.cpu_s

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("nam_history", []))
        self.elapsed_s = float(checkpoint.get("nam_elapsed_s", 0.0))
        self.cpu_s = float(checkpoint.get("nam_cpu_s", 0.0))
