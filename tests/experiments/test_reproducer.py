"""The shared reproducer: every family's presets have grids, jobs are checked before any run."""

from __future__ import annotations

import pytest

from neural_attention_memory.experiments import generalization, lra
from neural_attention_memory.experiments.registry import get_task
from neural_attention_memory.experiments.reproducer import plan_jobs
from neural_attention_memory.training import ConfigError

FAMILIES = [generalization.FAMILY, lra.FAMILY]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_preset_has_a_grid_and_resolves_for_every_job(family) -> None:
    for task in family.tasks:
        assert set(get_task(task).presets) == set(family.presets), task
    for preset in family.presets:
        tasks = list(family.grids[preset])
        jobs = plan_jobs(family, preset, tasks=tasks)
        assert {(j.task, j.model) for j in jobs} == {
            (t, m) for t, ms in family.grids[preset].items() for m in ms
        }


def test_jobs_take_the_seed_models_and_data_root(tmp_path) -> None:
    jobs = plan_jobs(
        lra.FAMILY,
        "quick",
        tasks=["lra-listops", "lra-text"],
        models=["nam-transformer"],
        seed=7,
        data_root=tmp_path,
    )
    assert [(j.task, j.model) for j in jobs] == [
        ("lra-listops", "nam-transformer"),
        ("lra-text", "nam-transformer"),
    ]
    assert "seed=7" in jobs[0].overrides
    # Only the task that reads user files gets the data root.
    assert not any(o.startswith("data.root=") for o in jobs[0].overrides)
    assert f"data.root={tmp_path}" in jobs[1].overrides


def test_bad_requests_fail_before_anything_is_written(tmp_path) -> None:
    out = tmp_path / "out"
    cases = [
        (dict(tasks=["sorting"]), "tasks: unknown 'sorting'; valid choices: fib"),
        (dict(models=["gpt"]), "models: unknown 'gpt'"),
        (dict(seed=1.5), "seed: expected an integer"),
        (dict(overrides=["optim.lrr=1"]), "unknown key 'lrr'"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            generalization.reproduce("quick", out, **kwargs)
    with pytest.raises(
        ConfigError, match="preset: unknown 'huge'; valid choices: quick, medium, paper"
    ):
        generalization.reproduce("huge", out)
    with pytest.raises(TypeError):  # no catch-all keyword swallowing a misspelled argument
        generalization.reproduce("quick", out, task=["reduce"])
    with pytest.raises(ConfigError, match="data_root: the generalization family generates"):
        plan_jobs(generalization.FAMILY, "quick", data_root=tmp_path)
    assert not out.exists()


def test_report_only_writes_the_report_over_finished_runs_and_trains_nothing(tmp_path) -> None:
    from typer.testing import CliRunner

    from neural_attention_memory.cli import app

    out = tmp_path / "rep"
    res = CliRunner().invoke(
        app,
        ["reproduce", "generalization", "--preset", "medium", "--tasks", "reduce,palin"]
        + ["--models", "lstm", "--report-only", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    report = (out / "report.md").read_text()
    assert "## Runs that did not finish" in report
    assert "- reduce/lstm: not trained (report only)" in report
    assert "- palin/lstm: not trained (report only)" in report
    assert not (out / "reduce").exists() and not (out / "palin").exists()
    # A family whose runs depend on each other refuses it, before anything is written.
    res = CliRunner().invoke(
        app, ["reproduce", "fewshot", "--report-only", "--out", str(tmp_path / "fs")]
    )
    assert res.exit_code == 2
    assert "--report-only: the fewshot family does not support it" in res.output
    assert not (tmp_path / "fs").exists()
