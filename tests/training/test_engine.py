"""fit / evaluate on a tiny synthetic task: run-dir files, results.json, exact resume, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nam_toy_task import make_spec

from neural_attention_memory.training import (
    evaluate,
    fit,
    resolve_config,
    select_epoch,
)
from neural_attention_memory.training.module import EpochSeededSampler, derive_seed


@pytest.fixture(scope="module")
def spec():
    return make_spec()


def _strip(history):
    # epoch_s is wall-clock; everything else must match exactly.
    return [{k: v for k, v in e.items() if k != "epoch_s"} for e in history]


def test_fit_writes_run_directory(spec, tmp_path):
    cfg = resolve_config(spec, "quick", [])
    res = fit(spec, cfg, tmp_path / "run")
    run = tmp_path / "run"
    for rel in [
        "config.yaml",
        "meta.json",
        "results.json",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "logs/csv/metrics.csv",
    ]:
        assert (run / rel).is_file(), rel
    assert any((run / "logs" / "tensorboard").glob("events.out.tfevents.*"))

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"] == {"name": "mlp", "hidden": 16, "dropout": 0.2}
    assert saved["task"] == "toy" and saved["preset"] == "quick" and saved["seed"] == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["torch"] == torch.__version__
    assert {"lightning", "python", "git_sha", "command", "started"} <= set(meta)

    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["status"] == "finished" == res["status"]
    assert on_disk["epochs_completed"] == 3 and len(on_disk["history"]) == 3
    assert set(on_disk["splits"]) == {"train", "val", "far"}
    assert set(on_disk["splits"]["val"]) == {"loss", "acc", "err"}
    assert on_disk["num_params"] == 4 * 16 + 16 + 16 * 2 + 2
    assert on_disk["wall_clock_s"] > 0
    # The selected epoch is the first with the best val/acc, and splits hold that epoch's values.
    accs = [e["val/acc"] for e in on_disk["history"]]
    sel = accs.index(max(accs))
    assert on_disk["selected_epoch"] == sel == on_disk["selection"]["epoch"]
    for split in ("val", "far"):
        for m, v in on_disk["splits"][split].items():
            assert v == on_disk["history"][sel][f"{split}/{m}"]
    # lr decays per epoch.
    lrs = [e["lr"] for e in on_disk["history"]]
    assert lrs == pytest.approx([0.02, 0.016, 0.0128])
    # Metrics are aggregated exactly over the split: acc is a multiple of 1/96 and acc + err == 1.
    for e in on_disk["history"]:
        assert e["val/acc"] * 96 == pytest.approx(round(e["val/acc"] * 96))
        assert e["val/acc"] + e["val/err"] == pytest.approx(1.0)
    # The model learns the toy task.
    assert on_disk["splits"]["val"]["acc"] > 0.8

    # evaluate() on the best checkpoint reproduces the selected epoch's eval metrics.
    ev = evaluate(run, spec=spec)
    assert set(ev) == {"val", "far"}
    assert ev["val"]["acc"] == on_disk["splits"]["val"]["acc"]
    assert ev["far"]["loss"] == pytest.approx(on_disk["splits"]["far"]["loss"], rel=1e-6)
    # Aggregation is exact: the batch size changes nothing (acc is a ratio of integer counts).
    for bs in (1, 7, 96):
        assert (
            evaluate(run, spec=spec, splits=["far"], batch_size=bs)["far"]["acc"]
            == (on_disk["splits"]["far"]["acc"])
        )
    custom = evaluate(run, spec=spec, options={"scale": 4.0}, splits=["val"])
    assert set(custom) == {"val", "scale=4.0"} and 0.0 <= custom["scale=4.0"]["acc"] <= 1.0
    with pytest.raises(ValueError, match="valid choices"):
        evaluate(run, spec=spec, splits=["nope"])

    # A folder that holds a run is never overwritten without resume.
    with pytest.raises(ValueError, match="already holds a run"):
        fit(spec, cfg, run)


def test_same_seed_same_metrics_and_resume_is_exact(spec, tmp_path):
    cfg3 = resolve_config(spec, "quick", ["trainer.max_epochs=3"])
    straight = fit(spec, cfg3, tmp_path / "a")
    again = fit(spec, cfg3, tmp_path / "b")
    assert _strip(straight["history"]) == _strip(again["history"])

    # "Interrupt" after epoch 1, then resume to 3 epochs.
    cfg1 = resolve_config(spec, "quick", ["trainer.max_epochs=1"])
    first = fit(spec, cfg1, tmp_path / "c")
    assert first["epochs_completed"] == 1
    resumed = fit(spec, cfg3, tmp_path / "c", resume=True)
    assert resumed["status"] == "finished"
    assert _strip(resumed["history"]) == _strip(straight["history"])
    assert resumed["splits"] == straight["splits"]
    # best.ckpt survives the resume: it still holds the selected epoch's weights.
    best = evaluate(tmp_path / "c", spec=spec, splits=["val"])
    assert best["val"]["acc"] == resumed["splits"]["val"]["acc"]
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert len(meta["resumes"]) == 1
    assert (tmp_path / "c" / "logs" / "csv-resume1" / "metrics.csv").is_file()

    # A different seed gives different numbers.
    other = fit(spec, resolve_config(spec, "quick", ["seed=1"]), tmp_path / "d")
    assert _strip(other["history"]) != _strip(straight["history"])


def test_resume_without_checkpoint_starts_fresh(spec, tmp_path):
    cfg = resolve_config(spec, "quick", ["trainer.max_epochs=1"])
    res = fit(spec, cfg, tmp_path / "new", resume=True)
    assert res["status"] == "finished" and res["epochs_completed"] == 1


def test_failed_run_is_marked_failed(spec, tmp_path):
    calls = {"n": 0}

    def bad_compute(model, batch):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return spec.compute(model, batch)

    bad = make_spec("toy_bad")
    bad.compute = bad_compute
    with pytest.raises(RuntimeError, match="boom"):
        fit(bad, resolve_config(bad, "quick", []), tmp_path / "bad")
    res = json.loads((tmp_path / "bad" / "results.json").read_text())
    assert res["status"] == "failed" and "boom" in res["error"]


def test_bad_selection_metric_and_config(spec, tmp_path):
    wrong = make_spec("toy_wrong")
    wrong.selection_metric = "nosplit/acc"
    with pytest.raises(ValueError, match="valid splits: train, val, far"):
        fit(wrong, resolve_config(wrong, "quick", []), tmp_path / "w")
    wrong.selection_metric = "val/nometric"
    with pytest.raises(ValueError, match="logged metrics"):
        fit(wrong, resolve_config(wrong, "quick", []), tmp_path / "w2")
    with pytest.raises(ValueError, match="trainer.max_epochs: expected an integer >= 1, got 0"):
        resolve_config(spec, "quick", ["trainer.max_epochs=0"])
    cfg = resolve_config(spec, "quick", [])
    bad = {**cfg, "trainer": {**cfg["trainer"], "max_epochs": 0}}  # fit checks plain dicts too
    with pytest.raises(ValueError, match="trainer.max_epochs: expected an integer >= 1, got 0"):
        fit(spec, bad, tmp_path / "z")
    assert not (tmp_path / "z").exists()
    with pytest.raises(TypeError, match="spec"):
        fit("toy", cfg, tmp_path / "z")


def test_select_epoch_first_best_and_nan():
    h = [{"v/a": 0.5}, {"v/a": float("nan")}, {"v/a": 0.7}, {"v/a": 0.7}, {}]
    assert select_epoch(h, "v/a", "max") == 2
    assert select_epoch(h, "v/a", "min") == 0
    assert select_epoch([{"v/a": float("nan")}], "v/a", "max") is None


def test_sampler_depends_on_seed_and_epoch():
    s = EpochSeededSampler(50, seed=3)
    p0 = list(s)
    s.set_epoch(1)
    p1 = list(s)
    assert sorted(p0) == sorted(p1) == list(range(50)) and p0 != p1
    s.set_epoch(0)
    assert list(s) == p0
    assert list(EpochSeededSampler(50, seed=4)) != p0
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_diverging_loss_fails_fast(spec, tmp_path):
    nan = make_spec("toy_nan")

    def nan_compute(model, batch):
        out = spec.compute(model, batch)
        out.loss = out.loss * float("nan")
        return out

    nan.compute = nan_compute
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 0, batch 0"):
        fit(nan, resolve_config(nan, "quick", []), tmp_path / "nan")
    res = json.loads((tmp_path / "nan" / "results.json").read_text())
    assert res["status"] == "failed" and res["epochs_completed"] == 0


def test_ctrl_c_marks_run_interrupted_and_resume_finishes_it(spec, tmp_path):
    import signal

    calls = {"n": 0}

    def interrupting(model, batch):
        calls["n"] += model.training
        if calls["n"] == 10 and model.training:  # inside epoch 1 (7 train batches per epoch)
            raise KeyboardInterrupt
        return spec.compute(model, batch)

    flaky = make_spec("toy_flaky")
    flaky.compute = interrupting
    cfg = resolve_config(flaky, "quick", [])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning shuts down gracefully, then exits
            fit(flaky, cfg, tmp_path / "run")
    finally:
        signal.signal(signal.SIGINT, handler)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["status"] == "interrupted" and res["epochs_completed"] == 1
    resumed = fit(flaky, cfg, tmp_path / "run", resume=True)
    straight = fit(spec, resolve_config(spec, "quick", []), tmp_path / "straight")
    assert resumed["status"] == "finished"
    assert _strip(resumed["history"]) == _strip(straight["history"])


class _Noisy(torch.utils.data.Dataset):
    """Adds fresh torch noise in ``__getitem__`` (runs inside a loader worker)."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return x + 0.3 * torch.randn(x.shape), y


def test_resume_exact_with_loader_workers_and_random_getitem(tmp_path):
    from nam_toy_task import build_datasets

    noisy = make_spec("toy_noisy")
    noisy.build_datasets = lambda config, seed: {
        k: (_Noisy(v) if k == "train" else v) for k, v in build_datasets(config, seed).items()
    }
    over = ["trainer.num_workers=1", "trainer.max_epochs=2"]
    straight = fit(noisy, resolve_config(noisy, "quick", over), tmp_path / "a")
    fit(noisy, resolve_config(noisy, "quick", [*over, "trainer.max_epochs=1"]), tmp_path / "b")
    resumed = fit(noisy, resolve_config(noisy, "quick", over), tmp_path / "b", resume=True)
    assert _strip(resumed["history"]) == _strip(straight["history"])


def test_best_checkpoint_from_an_earlier_session_survives_resume(tmp_path):
    # Selecting the *highest* validation loss makes epoch 0 (first session) the best one.
    worst = make_spec("toy_maxloss")
    worst.selection_metric, worst.selection_mode = "val/loss", "max"
    fit(worst, resolve_config(worst, "quick", ["trainer.max_epochs=1"]), tmp_path / "r")
    res = fit(worst, resolve_config(worst, "quick", []), tmp_path / "r", resume=True)
    losses = [e["val/loss"] for e in res["history"]]
    assert losses[0] > max(losses[1:])  # the toy task's loss falls every epoch
    assert res["selected_epoch"] == 0
    best = evaluate(tmp_path / "r", spec=worst, splits=["val"])
    last = evaluate(tmp_path / "r", spec=worst, splits=["val"], checkpoint="last")
    assert best["val"]["loss"] == pytest.approx(losses[0], rel=1e-6)
    assert last["val"]["loss"] == pytest.approx(losses[-1], rel=1e-6)


def test_best_checkpoint_survives_resume_of_a_moved_run_folder(tmp_path):
    # Regression: Lightning forgets the best score when the checkpoint's folder moved, so the
    # first resumed epoch overwrote best.ckpt although epoch 0 stays the selected one.
    import shutil
    import warnings

    worst = make_spec("toy_maxloss_moved")
    worst.selection_metric, worst.selection_mode = "val/loss", "max"  # epoch 0 stays the best
    fit(worst, resolve_config(worst, "quick", ["trainer.max_epochs=1"]), tmp_path / "r")
    shutil.copytree(tmp_path / "r", tmp_path / "copy")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*dirpath has changed.*")
        res = fit(worst, resolve_config(worst, "quick", []), tmp_path / "copy", resume=True)
    assert res["selected_epoch"] == 0 and res["epochs_completed"] == 3
    best = torch.load(tmp_path / "copy" / "checkpoints" / "best.ckpt", weights_only=False)
    assert best["epoch"] == 0
    losses = [e["val/loss"] for e in res["history"]]
    again = evaluate(tmp_path / "copy", spec=worst, splits=["val"])
    assert again["val"]["loss"] == pytest.approx(losses[0], rel=1e-6)
    # checkpoints written after the resume name only the copy's folder
    last = torch.load(tmp_path / "copy" / "checkpoints" / "last.ckpt", weights_only=False)
    (cb,) = [v for k, v in last["callbacks"].items() if "best" in str(v.get("best_model_path"))]
    assert str(tmp_path / "r") not in str(cb) and str(tmp_path / "copy") in cb["dirpath"]


def test_best_checkpoint_state_loads_from_checkpoints_of_lightnings_own_class(tmp_path):
    # Runs written while the engine used Lightning's ModelCheckpoint must keep their best score.
    from lightning.pytorch.callbacks import ModelCheckpoint

    from neural_attention_memory.training.engine import _BestCheckpoint

    kw = {"dirpath": tmp_path, "filename": "best", "monitor": "val/acc", "mode": "max"}
    assert _BestCheckpoint(**kw).state_key == ModelCheckpoint(**kw).state_key


def test_last_checkpoint_is_written_every_epoch_even_without_improvement(tmp_path):
    # Regression: with Lightning's save_last, last.ckpt was only written on epochs that improved
    # the selection metric, so resuming silently restarted from the last improving epoch.
    worst = make_spec("toy_maxloss_last")
    worst.selection_metric, worst.selection_mode = "val/loss", "max"  # epoch 0 stays the best
    res = fit(worst, resolve_config(worst, "quick", []), tmp_path / "r")
    assert res["selected_epoch"] == 0 and res["epochs_completed"] == 3
    last = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=False)
    best = torch.load(tmp_path / "r" / "checkpoints" / "best.ckpt", weights_only=False)
    assert (last["epoch"], best["epoch"]) == (2, 0)


def test_lr_schedule_decay_and_warmup(spec, tmp_path):
    from neural_attention_memory.training.module import TaskModule

    cfg = resolve_config(spec, "quick", ["optim.warmup_steps=4"])
    m = TaskModule(spec, cfg)
    assert [m._lr_at(0, s) for s in range(6)] == pytest.approx(
        [0.005, 0.01, 0.015, 0.02, 0.02, 0.02]
    )
    assert m._lr_at(2, 100) == pytest.approx(0.02 * 0.8**2)
    # Warm-up across the resume point (7 steps per epoch, 10 warm-up steps) is still exact.
    over = ["optim.warmup_steps=10"]
    straight = fit(spec, resolve_config(spec, "quick", over), tmp_path / "a")
    fit(spec, resolve_config(spec, "quick", [*over, "trainer.max_epochs=1"]), tmp_path / "b")
    resumed = fit(spec, resolve_config(spec, "quick", over), tmp_path / "b", resume=True)
    assert _strip(resumed["history"]) == _strip(straight["history"])
    plain = fit(spec, resolve_config(spec, "quick", []), tmp_path / "c")
    assert straight["history"][0]["train/loss"] != plain["history"][0]["train/loss"]


def test_loss_weighting_and_metric_pairs():
    from neural_attention_memory.training import StepOutput
    from neural_attention_memory.training.module import _batch_size, _Sums

    assert _batch_size((torch.zeros(5, 3), torch.zeros(5))) == 5
    assert _batch_size({"x": torch.zeros(4, 2)}) == 4
    assert _batch_size("no tensors") == 1
    sums = _Sums()
    sums.add(StepOutput(torch.tensor(1.0), batch_size=3), 3)
    sums.add(StepOutput(torch.tensor(4.0), batch_size=1), 1)
    assert sums.compute(lambda t: t)["loss"] == pytest.approx((3 * 1.0 + 1 * 4.0) / 4)
    with pytest.raises(TypeError, match=r"metrics\['acc'\]: expected a \(numerator, denominator\)"):
        sums.add(StepOutput(torch.tensor(1.0), metrics={"acc": 0.5}), 1)


def test_results_never_claim_an_epoch_the_checkpoint_lacks(spec, tmp_path, monkeypatch):
    """results.json is written after last.ckpt each epoch: an interrupt between the two writes
    leaves a results file that claims no epoch the checkpoint does not hold."""
    from neural_attention_memory.training import engine

    seen = []
    real = engine.atomic_write_json

    def checked(path, obj):
        if Path(path).name == "results.json" and obj["status"] == "running":
            ckpt = torch.load(
                Path(path).parent / "checkpoints" / "last.ckpt", weights_only=False, mmap=True
            )
            seen.append((obj["epochs_completed"], len(ckpt["nam_history"])))
        return real(path, obj)

    monkeypatch.setattr(engine, "atomic_write_json", checked)
    fit(spec, resolve_config(spec, "quick", []), tmp_path / "run")
    assert seen == [(1, 1), (2, 2), (3, 3)]


def test_the_model_is_built_once_per_run(tmp_path):
    """fit builds the model once (its hyper-parameters are checked before any data or folder)."""
    import dataclasses

    toy = make_spec()
    calls = []

    def build(config):
        calls.append(1)
        return toy.build_model(config)

    counted = dataclasses.replace(toy, build_model=build)
    cfg = resolve_config(counted, "quick", ["trainer.max_epochs=1"])
    res = fit(counted, cfg, tmp_path / "run")
    assert len(calls) == 1
    # The same weights as a run whose model is built twice (the first one dropped).
    ref = fit(toy, cfg, tmp_path / "ref")
    assert res["history"][0]["val/acc"] == ref["history"][0]["val/acc"]
    assert res["history"][0]["train/loss"] == ref["history"][0]["train/loss"]


def test_training_flushes_denormals_and_restores_the_mode(tmp_path):
    from neural_attention_memory.training.engine import denormals_flushed, flush_denormals

    assert not denormals_flushed()
    with flush_denormals():
        assert denormals_flushed()
        with flush_denormals():
            assert denormals_flushed()
        assert denormals_flushed()  # the inner block does not switch it off
    assert not denormals_flushed()
    with flush_denormals(False):
        assert not denormals_flushed()

    toy = make_spec("toy_denormal")
    compute, seen = toy.compute, []

    def recording(model, batch):
        seen.append(denormals_flushed())
        return compute(model, batch)

    toy.compute = recording
    fit(toy, resolve_config(toy, "quick", ["trainer.max_epochs=1"]), tmp_path / "a")
    assert seen and all(seen) and not denormals_flushed()
    seen.clear()
    off = ["trainer.max_epochs=1", "trainer.flush_denormal=false"]
    fit(toy, resolve_config(toy, "quick", off), tmp_path / "b")
    assert seen and not any(seen)
