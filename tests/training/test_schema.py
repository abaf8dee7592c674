"""Typed configs: every preset fits its family's schema; bad values are named before any run."""

from __future__ import annotations

import dataclasses

import pytest

from neural_attention_memory.experiments.registry import get_task, list_tasks
from neural_attention_memory.training import ENGINE_DEFAULTS, ConfigError, resolve_config
from neural_attention_memory.training.schema import RunConfig, check_config


def test_engine_defaults_are_the_schema_defaults() -> None:
    defaults = dataclasses.asdict(RunConfig())
    for section in ("optim", "trainer"):
        assert defaults[section] == ENGINE_DEFAULTS[section]
    assert defaults["seed"] == ENGINE_DEFAULTS["seed"]


@pytest.mark.parametrize("task", list_tasks())
def test_every_preset_of_every_task_fits_its_schema(task: str) -> None:
    spec = get_task(task)
    for preset in spec.presets:
        for model in spec.models[:3]:
            cfg = resolve_config(spec, preset, model=model)
            assert cfg["task"] == task and cfg["model"]["name"] == model


# (override, message) as the issue lists them; each is refused with the key, expected and given.
BAD = [
    ("optim.lr=abc", "optim.lr: expected a float > 0, got 'abc'"),
    ("optim.lr=-0.1", "optim.lr: expected a float > 0, got -0.1"),
    ("optim.lr=.inf", "optim.lr: expected a float > 0, got inf"),
    ("optim.lr_decay=-1", "optim.lr_decay: expected a float > 0 and <= 1"),
    ("optim.lr_decay=0", "optim.lr_decay: expected a float > 0 and <= 1"),
    ("optim.lr_decay=1.5", "optim.lr_decay: expected a float > 0 and <= 1"),
    ("optim.grad_clip=-1", "optim.grad_clip: expected a float or null > 0 .*null disables"),
    ("trainer.batch_size=2.7", "trainer.batch_size: expected an integer >= 1, got 2.7"),
    ("trainer.batch_size=0", "trainer.batch_size: expected an integer >= 1, got 0"),
    ("trainer.max_epochs=true", "trainer.max_epochs: expected an integer >= 1, got True"),
    ("trainer.precision=bf16", "trainer.precision: expected one of .*'bf16-mixed'.*got 'bf16'"),
    ("trainer.progress_bar=1", "trainer.progress_bar: expected true or false, got 1"),
    ("optim.name=sgd", "optim.name: expected one of 'adam', 'adamw', got 'sgd'"),
    ("seed=-3", "seed: expected an integer >= 0, got -3"),
    ("model.size=huge", "model.size: expected one of 'quick', 'paper', got 'huge'"),
    ("data.splits.id.count=0", "data.splits.id.count: expected an integer >= 1, got 0"),
    ("data.splits.od_hard.digits=[16, 14]", "data.splits.od_hard.digits: expected .*lo <= hi"),
    ("optim.lrr=1", "unknown key 'lrr' under optim; valid choices"),
]


@pytest.mark.parametrize(("override", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config(get_task("reduce"), "quick", [override], model="lstm")


def test_good_values_are_converted_to_the_fields_type() -> None:
    cfg = resolve_config(
        get_task("reduce"),
        "quick",
        ["trainer.batch_size=16.0", "optim.lr=1", "optim.grad_clip=null", "optim.lr_decay=1"],
        model="lstm",
    )
    assert cfg["trainer"]["batch_size"] == 16 and isinstance(cfg["trainer"]["batch_size"], int)
    assert cfg["optim"]["lr"] == 1.0 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["optim"]["grad_clip"] is None


def test_lra_model_and_data_are_typed() -> None:
    spec = get_task("lra-listops")
    with pytest.raises(ConfigError, match="model.dropout: expected a float >= 0 and < 1"):
        resolve_config(spec, "quick", ["model.dropout=1.5"], model="nam-transformer")
    with pytest.raises(ConfigError, match="model.pooling: expected one of 'cls', 'mean'"):
        resolve_config(spec, "quick", ["model.pooling=max"], model="nam-transformer")
    with pytest.raises(ConfigError, match="data.max_length: expected an integer or null >= 1"):
        resolve_config(spec, "quick", ["data.max_length=ten"], model="nam-transformer")


def test_extra_keys_of_open_sections_keep_the_presets_type() -> None:
    ref = {"model": {"name": "m", "hidden": 16}}
    assert check_config({"model": {"name": "m", "hidden": 8}}, RunConfig, ref)["model"] == {
        "name": "m",
        "hidden": 8,
    }
    with pytest.raises(ConfigError, match=r"model.hidden: expected an integer \(like the preset"):
        check_config({"model": {"name": "m", "hidden": "wide"}}, RunConfig, ref)
