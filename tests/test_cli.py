"""`nam train / eval / reproduce` through typer's CliRunner, on a toy task registered in isolation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "training"))
from nam_toy_task import make_spec

from neural_attention_memory.cli import app
from neural_attention_memory.experiments import registry
from neural_attention_memory.training import read_results

runner = CliRunner()


@pytest.fixture
def toy_registry(monkeypatch):
    """Only the toy task and a toy reproducer are visible (other families are tested elsewhere)."""
    spec = make_spec()
    calls = []

    def reproduce(preset, out_dir):
        calls.append((preset, Path(out_dir)))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        report = Path(out_dir) / "report.md"
        report.write_text("# toy\n")
        return report

    monkeypatch.setattr(registry, "_TASKS", {"toy": spec})
    info = registry.FamilyInfo(
        "toyfamily", reproduce, "a toy family", {"mlp": "an MLP"}, {"quick": "", "paper": ""}
    )
    monkeypatch.setattr(registry, "_REPRODUCERS", {"toyfamily": info})
    monkeypatch.setattr(registry, "_loaded", True)
    return calls


def _err(result) -> str:
    return result.stderr if hasattr(result, "stderr") else result.output


def test_train_writes_run_and_prints_table(toy_registry, tmp_path):
    run = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "train",
            "toy",
            "--model",
            "mlp",
            "--run-dir",
            str(run),
            "--set",
            "optim.lr=0.03",
            "--max-epochs",
            "2",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"run directory: {run}" in res.output
    assert "| toy | mlp | val |" in res.output and "selected epoch" in res.output
    results = read_results(run)
    assert results["status"] == "finished" and results["epochs_completed"] == 2
    assert results["history"][0]["lr"] == pytest.approx(0.03)

    # Resume to 3 epochs; the config keeps its overrides.
    res = runner.invoke(app, ["train", "--resume", str(run), "--max-epochs", "3"])
    assert res.exit_code == 0, res.output
    assert read_results(run)["epochs_completed"] == 3

    res = runner.invoke(app, ["train", "--resume", str(run), "--preset", "paper"])
    assert res.exit_code == 2 and "holds a run of preset 'quick'" in _err(res)
    res = runner.invoke(app, ["train", "toy", "--model", "linear", "--resume", str(run)])
    assert res.exit_code == 2 and "holds a run of model 'mlp'" in _err(res)

    # A used folder is never overwritten.
    res = runner.invoke(app, ["train", "toy", "--run-dir", str(run)])
    assert res.exit_code == 2 and "already holds a run" in _err(res)

    # eval: default (all eval splits), one split, task options, and JSON output.
    res = runner.invoke(app, ["eval", str(run)])
    assert res.exit_code == 0, res.output
    assert "| val |" in res.output and "| far |" in res.output
    out = tmp_path / "ev.json"
    res = runner.invoke(
        app, ["eval", str(run), "--split", "far", "--scale", "5", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads(out.read_text())["metrics"]
    assert set(metrics) == {"far", "scale=5"}
    res = runner.invoke(app, ["eval", str(run), "--split", "nope"])
    assert res.exit_code == 2 and "valid choices" in _err(res)
    res = runner.invoke(app, ["eval", str(run), "--colour", "red"])
    assert res.exit_code == 2 and "valid choices: scale" in _err(res)
    res = runner.invoke(app, ["eval", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "config.yaml" in _err(res)


def test_results_command_lists_runs(toy_registry, tmp_path):
    for model in ("mlp", "linear"):
        res = runner.invoke(
            app, ["train", "toy", "-m", model, "--runs-root", str(tmp_path), "--max-epochs", "1"]
        )
        assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["results", str(tmp_path), "--split", "far"])
    assert res.exit_code == 0, res.output
    assert res.output.count("| far |") == 2 and "| val |" not in res.output
    assert "| toy | linear | far |" in res.output and "finished" in res.output
    res = runner.invoke(app, ["results", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no results.json" in _err(res)


def test_default_run_dir_under_runs_root(toy_registry, tmp_path):
    res = runner.invoke(
        app,
        ["train", "toy", "-m", "linear", "--runs-root", str(tmp_path), "--max-epochs", "1"],
    )
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "toy").iterdir()
    assert run.name.startswith("linear-quick-")
    assert read_results(run)["model"] == "linear"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "nope"], "task: unknown 'nope'; valid choices: toy"),
        (
            ["train", "toy", "--model", "gru"],
            "unknown model 'gru' for task 'toy'; valid choices: mlp, linear",
        ),
        (
            ["train", "toy", "--preset", "huge"],
            "unknown preset 'huge' for task 'toy'; valid choices: paper, quick",
        ),
        (["train", "toy", "--set", "optim.lrr=1"], "unknown key 'lrr' under optim; valid choices:"),
        (["train", "toy", "--set", "optim.lr"], "expected KEY=VALUE"),
        (["train"], "give a task name or --resume RUN_DIR; valid choices: toy"),
        (["eval", "somewhere", "--digits"], "--digits needs a value"),
        (["eval", "somewhere", "17-22"], "expected --NAME VALUE task options, got '17-22'"),
        (["reproduce", "nope"], "family: unknown 'nope'; valid choices: toyfamily"),
        (["reproduce", "toyfamily", "--preset", "huge"], "valid choices: quick, paper"),
        (
            ["reproduce", "toyfamily", "--seed", "1"],
            "--set/--seed: the toyfamily family takes no config overrides",
        ),
        (["train", "toy", "--set", "optim.lr=abc"], "optim.lr: expected a float > 0, got 'abc'"),
        (["list", "things"], "what: expected one of tasks, models, presets, datasets"),
        (
            ["reproduce", "toyfamily", "--report-only"],
            "--report-only: the toyfamily family does not support it",
        ),
    ],
)
def test_bad_input_exits_2_with_choices(toy_registry, tmp_path, args, message):
    res = runner.invoke(app, [*args, "--runs-root", str(tmp_path)] if args[0] == "train" else args)
    assert res.exit_code == 2, res.output
    assert message in _err(res)
    assert "Traceback" not in res.output


def test_reproduce_calls_family(toy_registry, tmp_path):
    res = runner.invoke(app, ["reproduce", "toyfamily", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert toy_registry == [("quick", tmp_path / "r")]
    assert "report.md" in res.output
