"""The config schema of the length-generalisation family (see :mod:`...training.schema`)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from ...tasks import algorithmic as alg
from ...training.config import ConfigError
from ...training.schema import RunConfig, addable, num

__all__ = ["GeneralizationConfig"]


@dataclasses.dataclass
class SplitConfig:
    """One split of an algorithmic task: problem sizes ``digits`` (``[lo, hi]`` or ``"lo-hi"``)."""

    digits: list[int] | str = dataclasses.field(default_factory=lambda: [1, 10])
    count: int = num(1, ge=1)

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        try:
            lo, hi = alg.parse_range(values["digits"])
        except (ValueError, TypeError, KeyError) as err:
            raise ConfigError(
                f"{where}.digits: expected [lo, hi] with 1 <= lo <= hi, got "
                f"{values.get('digits')!r} ({err})"
            ) from None
        if not 1 <= lo <= hi:
            raise ConfigError(f"{where}.digits: expected 1 <= lo <= hi, got [{lo}, {hi}]")


@dataclasses.dataclass
class CurriculumConfig:
    """``data.curriculum``: a length curriculum for the algorithmic tasks.

    Epoch ``e`` (0-based) trains only on the training problems of size
    ``n <= min(start + step * e, train's largest size)``; see :func:`.data.train_schedule`.
    """

    start: int = num(1, ge=1, doc="largest training size of epoch 0")
    step: int = num(1, ge=1, doc="sizes added per epoch")

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        missing = [k for k in ("start", "step") if k not in values]
        if missing:
            raise ConfigError(
                f"{where}: expected both 'start' and 'step' (integers >= 1), got {values!r} "
                f"(missing {', '.join(missing)})"
            )


@dataclasses.dataclass
class GeneralizationData:
    """``data``: ``splits`` + ``params`` for the algorithmic tasks, counts for SCAN;
    ``curriculum`` (optional, algorithmic tasks only): :class:`CurriculumConfig`."""

    splits: dict[str, SplitConfig] | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    id_count: int | None = num(None, ge=1)
    test_count: int | None = num(None, ge=1)
    train_count: int | None = num(None, ge=1)
    slots: int | None = num(None, ge=1)
    max_train_actions: int | None = num(None, ge=1)
    curriculum: CurriculumConfig | None = dataclasses.field(
        default=None, metadata=addable("null: every training problem in every epoch")
    )
    input_loss: bool = dataclasses.field(
        default=False,
        metadata=addable(
            "also train every non-answer position to reproduce its input token (the authors' "
            "autoencoding loss); metrics stay on the answer slots"
        ),
    )


@dataclasses.dataclass
class GeneralizationModel:
    """``model``: name and size; other keys are fields of the model's config dataclass."""

    OPEN: ClassVar[bool] = True
    name: str | None = None
    size: Literal["quick", "paper"] = "quick"


@dataclasses.dataclass
class GeneralizationConfig(RunConfig):
    model: GeneralizationModel = dataclasses.field(default_factory=GeneralizationModel)
    data: GeneralizationData = dataclasses.field(default_factory=GeneralizationData)

    @staticmethod
    def check(values: dict[str, Any], where: str) -> None:
        data = values.get("data") or {}
        curriculum = data.get("curriculum")
        if curriculum is None:
            return
        if values.get("task") == "scan":
            raise ConfigError(
                f"data.curriculum: SCAN has no digit sizes to order (a length curriculum applies "
                f"to the algorithmic tasks: {', '.join(t for t in alg.TASKS)}); remove it, "
                f"got {curriculum!r}"
            )
        train = (data.get("splits") or alg.default_splits()).get("train") or {}
        if "digits" not in train:  # build_splits names the missing train split
            return
        lo, hi = alg.parse_range(train["digits"])
        if curriculum["start"] < lo:
            raise ConfigError(
                f"data.curriculum.start: expected an integer >= {lo}, the smallest training size "
                f"(data.splits.train.digits [{lo}, {hi}]), got {curriculum['start']!r}"
            )
