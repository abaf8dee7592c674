"""Run folders: exclusive lock, atomic checkpoints, and user errors that leave nothing behind."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nam_toy_task import make_spec

from neural_attention_memory.training import ConfigError, fit, read_results, resolve_config, rundir
from neural_attention_memory.training.checkpoint import AtomicCheckpointIO
from neural_attention_memory.training.lock import RunLock, RunLockedError

QUIET = ["trainer.progress_bar=false"]


@pytest.fixture(scope="module")
def spec():
    return make_spec()


def test_a_second_run_on_a_locked_folder_is_refused(spec, tmp_path) -> None:
    cfg = resolve_config(spec, "quick", [*QUIET, "trainer.max_epochs=1"])
    run = tmp_path / "run"
    fit(spec, cfg, run)
    before = (run / "results.json").read_bytes()
    with RunLock(run):  # another process training into the folder
        with pytest.raises(RunLockedError, match=r"is in use by another run \(pid \d+"):
            fit(spec, cfg, run, resume=True)
        with pytest.raises(RunLockedError):
            RunLock(run).acquire()
    assert (run / "results.json").read_bytes() == before  # nothing was touched
    fit(spec, cfg, run, resume=True)  # free again once the holder is gone


def test_bad_model_values_and_missing_data_leave_no_folder(spec, tmp_path) -> None:
    cfg = resolve_config(spec, "quick", [*QUIET, "model.dropout=1.5"])
    with pytest.raises(ConfigError, match="model: dropout probability"):
        fit(spec, cfg, tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()

    from neural_attention_memory.experiments.registry import get_task
    from neural_attention_memory.tasks.lra import MissingDataError

    text = get_task("lra-text")
    cfg = resolve_config(text, "quick", [*QUIET, f"data.root={tmp_path / 'nothing'}"])
    with pytest.raises(MissingDataError):
        fit(text, cfg, tmp_path / "text-run")
    assert not (tmp_path / "text-run").exists()


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.arange(4)}, path)

    def disk_full(fh, data) -> None:
        fh.write(bytes(memoryview(data)[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir, "_write_all", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"w": torch.arange(1000)}, path)
    assert torch.equal(torch.load(path, weights_only=False)["w"], torch.arange(4))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary left


def test_a_run_that_fails_while_training_says_why(spec, tmp_path, monkeypatch) -> None:
    cfg = resolve_config(spec, "quick", [*QUIET, "trainer.max_epochs=3"])
    calls = {"n": 0}
    real = rundir._write_all

    def full_after_a_while(fh, data) -> None:
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fh, data)

    monkeypatch.setattr(rundir, "_write_all", full_after_a_while)
    with pytest.raises(OSError, match="No space left"):
        fit(spec, cfg, tmp_path / "run")
    monkeypatch.setattr(rundir, "_write_all", real)
    res = read_results(tmp_path / "run")
    # The status could not be written while the disk was full; the last complete state is kept
    # and the run resumes to the end once there is room.
    assert res is None or res["status"] in ("running", "failed")
    done = fit(spec, cfg, tmp_path / "run", resume=True)
    assert done["status"] == "finished" and done["epochs_completed"] == 3
