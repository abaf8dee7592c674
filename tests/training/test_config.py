"""resolve_config / overrides: defaults, per-model sections, good and bad keys."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nam_toy_task import make_spec

from neural_attention_memory.training import (
    ENGINE_DEFAULTS,
    ConfigError,
    apply_overrides,
    parse_override,
    resolve_config,
)


@pytest.fixture(scope="module")
def spec():
    return make_spec()


def test_preset_merged_over_engine_defaults(spec):
    cfg = resolve_config(spec, "quick")
    assert cfg["task"] == "toy" and cfg["preset"] == "quick" and cfg["model"]["name"] == "mlp"
    assert cfg["optim"]["lr"] == 0.02  # from the preset
    assert cfg["optim"]["name"] == ENGINE_DEFAULTS["optim"]["name"]  # from the defaults
    assert cfg["trainer"]["num_workers"] == 0
    assert "per_model" not in cfg
    # The spec's preset is never mutated.
    cfg["optim"]["lr"] = 5.0
    assert spec.presets["quick"]["optim"]["lr"] == 0.02


def test_model_choice_and_per_model_section(spec):
    cfg = resolve_config(spec, "quick", model="linear")
    assert cfg["model"]["name"] == "linear" and cfg["optim"]["lr"] == 0.05
    with pytest.raises(ValueError, match=r"unknown model 'gru'.*valid choices: mlp, linear"):
        resolve_config(spec, "quick", model="gru")


def test_unknown_preset_lists_choices(spec):
    with pytest.raises(ValueError, match=r"unknown preset 'fast'.*valid choices: paper, quick"):
        resolve_config(spec, "fast")


def test_overrides_parse_yaml_values(spec):
    cfg = resolve_config(
        spec,
        "quick",
        [
            "optim.lr=1e-3",
            "trainer.max_epochs=7",
            "optim.grad_clip=null",
            "trainer.progress_bar=true",
            "model.hidden=8",
            "+data.extra=[1, 2]",
        ],
    )
    assert cfg["optim"]["lr"] == pytest.approx(1e-3) and isinstance(cfg["optim"]["lr"], float)
    assert cfg["trainer"]["max_epochs"] == 7
    assert cfg["optim"]["grad_clip"] is None
    assert cfg["trainer"]["progress_bar"] is True
    assert cfg["model"]["hidden"] == 8
    assert cfg["data"]["extra"] == [1, 2]
    # Open sections (model, data) take new keys; the top level and the engine's do not.
    for bad in ("+new.section.key=abc", "+optim.momentum=0.9"):
        with pytest.raises(ConfigError, match="unknown key; valid keys under"):
            resolve_config(spec, "quick", [bad])


def test_unknown_override_key_lists_valid_keys(spec):
    with pytest.raises(
        ValueError, match=r"unknown key 'lrr' under optim; valid choices: .*optim.lr"
    ):
        resolve_config(spec, "quick", ["optim.lrr=1"])
    with pytest.raises(ValueError, match=r"unknown key 'optimizer' under <top level>.*optim"):
        resolve_config(spec, "quick", ["optimizer.lr=1"])
    with pytest.raises(ValueError, match="not a section"):
        resolve_config(spec, "quick", ["seed.x=1"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        resolve_config(spec, "quick", ["optim.lr"])
    with pytest.raises(ValueError, match="dotted key"):
        parse_override("optim..lr=1")
    with pytest.raises(ValueError, match="model.name: unknown model"):
        resolve_config(spec, "quick", ["model.name=gru"])


def test_apply_overrides_copies():
    base = {"a": {"b": 1}}
    out = apply_overrides(base, ["a.b=2"])
    assert out == {"a": {"b": 2}} and base == {"a": {"b": 1}}
    assert parse_override("x=hello") == ("x", "hello", False)
    assert parse_override("+x=1.5") == ("x", 1.5, True)
