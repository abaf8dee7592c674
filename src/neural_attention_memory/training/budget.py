"""A training budget in CPU seconds: equal-compute comparisons on a shared machine.

``trainer.max_train_cpu_s`` (None = no budget) stops a run once the process CPU time spent in
training batches (forward, backward, optimizer step; not data loading or evaluation) reaches the
budget. The current epoch ends there and is evaluated as usual. With a budget, each epoch's
history entry gets ``train_cpu_s`` and ``train_batches``: the cumulative CPU seconds and batches so
far, kept in checkpoints so a resumed run continues the count.

CPU time (``time.process_time``) is used because with one torch thread it equals the compute of
this process alone, whatever else the machine runs.
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import Callback

__all__ = ["CPUTimeBudget"]


class CPUTimeBudget(Callback):
    """Count CPU seconds and batches of training; stop at ``budget_s`` (None = never stop)."""

    def __init__(self, budget_s: float | None = None) -> None:
        if budget_s is not None and (isinstance(budget_s, bool) or not budget_s > 0):
            raise ValueError(
                f"trainer.max_train_cpu_s: expected None or a positive number, got {budget_s!r}"
            )
        self.budget_s = None if budget_s is None else float(budget_s)
        self.spent_s = 0.0
        self.batches = 0
        self._t0: float | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        self._t0 = time.process_time()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self._t0 is not None:
            self.spent_s += time.process_time() - self._t0
            self.batches += 1
            self._t0 = None
        if self.budget_s is not None and self.spent_s >= self.budget_s:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # Lightning calls callbacks before the module's own hook, which writes the history entry.
        add = getattr(pl_module, "add_to_epoch_entry", None)
        if add is not None:
            add(train_cpu_s=self.spent_s, train_batches=self.batches)

    def state_dict(self) -> dict[str, Any]:
        return {"spent_s": self.spent_s, "batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.spent_s = float(state_dict.get("spent_s", 0.0))
        self.batches = int(state_dict.get("batches", 0))
