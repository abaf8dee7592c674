"""run_grid: one run folder per job, finished runs skipped, interrupted runs resumed exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from nam_toy_task import make_spec

from neural_attention_memory.experiments.runner import Job, job_run_dir, run_grid
from neural_attention_memory.training import ConfigError, fit, resolve_config


@pytest.fixture
def specs():
    spec = make_spec()
    return {"toy": spec}


def _strip(history):
    return [{k: v for k, v in e.items() if k != "epoch_s"} for e in history]


def test_grid_trains_skips_and_resumes(specs, tmp_path):
    jobs = [
        Job("toy", "mlp"),
        Job("toy", "linear", overrides=("trainer.max_epochs=2",)),
        Job("toy", "mlp", overrides=("seed=5",), name="mlp-seed5"),
    ]
    logs: list[str] = []
    # Simulate an interruption: the first job has only finished one of its three epochs.
    spec = specs["toy"]
    fit(spec, resolve_config(spec, "quick", ["trainer.max_epochs=1"]), tmp_path / "toy" / "mlp")

    res = run_grid(jobs, tmp_path, get_spec=specs.__getitem__, log=logs.append)
    assert [r["job_name"] for r in res] == ["mlp", "linear", "mlp-seed5"]
    assert all(r["status"] == "finished" and not r["skipped"] for r in res)
    assert [r["epochs_completed"] for r in res] == [3, 2, 3]
    assert "resuming" in logs[0] and "training" in logs[1]
    assert res[2]["seed"] == 5
    assert all(r["wall_clock_s"] > 0 for r in res)

    # The resumed first job equals a straight run.
    straight = fit(spec, resolve_config(spec, "quick", []), tmp_path / "straight")
    assert _strip(res[0]["history"]) == _strip(straight["history"])

    grid = json.loads((tmp_path / "grid.json").read_text())
    assert [j["status"] for j in grid["jobs"]] == ["finished"] * 3

    # Second call: everything is skipped and the same results come back.
    logs.clear()
    again = run_grid(jobs, tmp_path, get_spec=specs.__getitem__, log=logs.append)
    assert all(r["skipped"] for r in again)
    assert [r["splits"] for r in again] == [r["splits"] for r in res]
    assert all("skipped" in line for line in logs)

    # A run written before an engine default was added is still recognised as the same run.
    import yaml

    cfg_path = tmp_path / "toy" / "linear" / "config.yaml"
    old = yaml.safe_load(cfg_path.read_text())
    del old["optim"]["warmup_steps"]
    cfg_path.write_text(yaml.safe_dump(old))
    assert run_grid(jobs[1:2], tmp_path, get_spec=specs.__getitem__, log=None)[0]["skipped"]

    # Asking for more epochs continues the finished run.
    more = run_grid(
        [Job("toy", "linear", overrides=("trainer.max_epochs=3",))],
        tmp_path,
        get_spec=specs.__getitem__,
        log=None,
    )
    assert more[0]["epochs_completed"] == 3 and not more[0]["skipped"]

    # A job whose config differs from the stored run is refused (nothing is overwritten).
    with pytest.raises(ConfigError, match=r"different configuration \(optim.lr\)"):
        run_grid(
            [Job("toy", "mlp", overrides=("optim.lr=0.5",))],
            tmp_path,
            get_spec=specs.__getitem__,
            log=None,
        )


def test_grid_keep_going_records_failures(specs, tmp_path):
    bad = make_spec("bad")

    def explode(model, batch):
        raise RuntimeError("exploded")

    bad.compute = explode
    lookup = {"toy": specs["toy"], "bad": bad}.__getitem__
    jobs = [Job("bad", "mlp"), Job("toy", "linear", overrides=("trainer.max_epochs=1",))]
    res = run_grid(jobs, tmp_path, get_spec=lookup, keep_going=True, log=None)
    assert res[0]["status"] == "failed" and "exploded" in res[0]["error"]
    assert res[1]["status"] == "finished"
    with pytest.raises(RuntimeError, match="exploded"):
        run_grid(jobs, tmp_path / "strict", get_spec=lookup, log=None)
    grid = json.loads((tmp_path / "strict" / "grid.json").read_text())
    assert grid["jobs"][0]["status"] == "failed"


def test_duplicate_run_folders_rejected(specs, tmp_path):
    with pytest.raises(ConfigError, match="share a run folder"):
        run_grid([Job("toy", "mlp"), Job("toy", "mlp")], tmp_path, get_spec=specs.__getitem__)
    assert job_run_dir(Job("toy", "mlp", name="x"), tmp_path) == tmp_path / "toy" / "x"


def test_report_only_grid_trains_nothing_and_says_where_each_run_stands(specs, tmp_path):
    spec = specs["toy"]
    jobs = [
        Job("toy", "mlp"),  # finished below
        Job("toy", "linear"),  # interrupted after 1 of 3 epochs
        Job("toy", "mlp", overrides=("seed=5",), name="never"),  # never started
    ]
    done = fit(spec, resolve_config(spec, "quick", []), tmp_path / "toy" / "mlp")
    part = resolve_config(spec, "quick", ["trainer.max_epochs=1"], model="linear")
    fit(spec, part, tmp_path / "toy" / "linear")
    ckpt = tmp_path / "toy" / "linear" / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns
    logs: list[str] = []
    res = run_grid(jobs, tmp_path, get_spec=specs.__getitem__, log=logs.append, train=False)
    assert [r["status"] for r in res] == ["finished", "not run", "not run"]
    assert res[0]["splits"] == done["splits"] and res[0]["skipped"]
    assert res[1]["error"].startswith("unfinished: 1 of 3 epochs")
    assert res[2]["error"] == "not trained (report only)"
    assert "unfinished: 1 of 3" in logs[1] and "not trained" in logs[2]
    # Nothing was trained or written into the run folders.
    assert ckpt.stat().st_mtime_ns == before
    assert not (tmp_path / "toy" / "never").exists()
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert [j["status"] for j in grid["jobs"]] == ["finished", "not run", "not run"]
