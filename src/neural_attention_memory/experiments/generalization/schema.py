"""The config schema of the length-generalisation family (see :mod:`...training.schema`)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from ...tasks import algorithmic as alg
from ...training.config import ConfigError
from ...training.schema import RunConfig, num

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
class GeneralizationData:
    """``data``: ``splits`` + ``params`` for the algorithmic tasks, counts for SCAN."""

    splits: dict[str, SplitConfig] | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    id_count: int | None = num(None, ge=1)
    test_count: int | None = num(None, ge=1)
    train_count: int | None = num(None, ge=1)
    slots: int | None = num(None, ge=1)
    max_train_actions: int | None = num(None, ge=1)


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
