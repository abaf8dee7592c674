"""The contract between an experiment family and the shared training engine.

Every experiment (length generalisation, Long Range Arena, few-shot) registers its tasks as
:class:`TaskSpec` objects; the one Lightning-based engine in
:mod:`neural_attention_memory.training` trains, evaluates, checkpoints and resumes any of them,
and the ``nam train/eval/reproduce`` commands reach them through
:func:`neural_attention_memory.experiments.registry.get_task`.

Configuration is one nested dict (resolved from a YAML/py preset plus ``--set key=value``
overrides) with these top-level sections, all plain data so it can be written to ``config.yaml``::

    seed: int
    task: str            # TaskSpec.name
    model: {name: str, ...model hyper-parameters}
    data: {...}          # task-specific (digit ranges, sequence length, number of samples, ...)
    optim: {lr, weight_decay, lr_decay (per-epoch multiplicative), grad_clip}
    trainer: {max_epochs, batch_size, eval_batch_size, num_workers, ...}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = ["StepOutput", "TaskSpec", "TrainSchedule"]


@dataclass
class StepOutput:
    """What :attr:`TaskSpec.compute` returns for one batch.

    ``metrics`` maps a metric name (e.g. ``"seq_acc"``, ``"tok_acc"``) to a pair
    ``(numerator, denominator)`` of 0-dim tensors summed over the batch, so the engine can aggregate
    exactly over a whole split (``sum(num) / sum(den)``) whatever the batch sizes.

    ``batch_size`` (optional) weights ``loss`` in the split's mean loss; by default the engine
    uses the first dimension of the batch's first tensor.
    """

    loss: Tensor
    metrics: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    batch_size: int | None = None


@dataclass(frozen=True)
class TrainSchedule:
    """Which training examples each epoch uses, e.g. a length curriculum.

    Both functions take the 0-based epoch and must depend on nothing else (so a resumed run
    continues the same schedule). The engine shuffles epoch ``e``'s examples from ``(seed, e)``,
    rebuilds the epoch's batches when its length changes, and adds ``describe(e)`` to the epoch's
    history entry.

    Attributes:
        indices: ``epoch -> indices`` into the training set (non-empty; the epoch trains on
            exactly these examples, once each).
        describe: ``epoch -> {name: value}`` recorded in the epoch's history entry (e.g.
            ``{"train_max_size": 7, "train_samples": 18000}``).
    """

    indices: Callable[[int], Sequence[int]]
    describe: Callable[[int], dict[str, Any]] = field(default=lambda epoch: {})


@dataclass
class TaskSpec:
    """A trainable task.

    Attributes:
        name: registry name used on the command line (``nam train <name>``).
        family: experiment family (``"generalization"``, ``"lra"``, ``"fewshot"``).
        build_datasets: ``(config, seed) -> {"train": ds, <eval split>: ds, ...}``; must be
            deterministic for a given seed; eval splits are evaluated every epoch.
        build_model: ``(config) -> nn.Module``; reads ``config["model"]["name"]``.
        compute: ``(model, batch) -> StepOutput``; used for training and evaluation.
        models: model names this task accepts (for error messages and ``--help``).
        presets: preset name -> config dict (at least ``"quick"`` and ``"paper"``).
        collate_fn: optional DataLoader collate function.
        selection_metric: ``"<split>/<metric>"`` used to pick the reported epoch (the paper's
            rule for length generalisation is ``"od_easy/seq_acc"``).
        selection_mode: ``"max"`` or ``"min"``.
        description: one line shown by ``nam train --help``-style listings.
        schema: the family's config schema, a dataclass subclassing
            :class:`~.schema.RunConfig` (``None``: the engine's sections only, ``model`` and
            ``data`` open); resolved configs and every preset are checked against it.
        build_eval_dataset: optional ``(config, seed, options) -> Dataset`` building an extra
            evaluation set from task-specific options (e.g. ``{"digits": "17-22"}`` from
            ``nam eval RUN_DIR --digits 17-22``); ``None`` when the task has no such options.
        train_schedule: optional ``(config, train_dataset) -> TrainSchedule | None``: the
            per-epoch subset of the training set (``None``, or a ``None`` result: every example,
            every epoch). It may raise :class:`~.config.ConfigError` for a bad schedule.
    """

    name: str
    family: str
    build_datasets: Callable[[Mapping[str, Any], int], dict[str, Dataset]]
    build_model: Callable[[Mapping[str, Any]], nn.Module]
    compute: Callable[[nn.Module, Any], StepOutput]
    models: tuple[str, ...]
    presets: Mapping[str, Mapping[str, Any]]
    collate_fn: Callable[[list], Any] | None = None
    selection_metric: str = "val/acc"
    selection_mode: str = "max"
    description: str = ""
    build_eval_dataset: Callable[[Mapping[str, Any], int, dict[str, Any]], Dataset] | None = None
    schema: type | None = None
    train_schedule: Callable[[Mapping[str, Any], Dataset], TrainSchedule | None] | None = None
