"""Run folders survive being killed at any moment, including in the middle of a checkpoint write and
with ``$TMPDIR`` on another file system: every resume works and ends at the uninterrupted result."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nam_toy_task import make_spec

from neural_attention_memory.training import fit, read_results, resolve_config
from neural_attention_memory.training.engine import LAST_CKPT

WORKER = Path(__file__).resolve().parent / "kill_worker.py"
EPOCHS = 4


def _other_filesystem_tmpdir(near: Path) -> str | None:
    """A temporary folder on another file system than ``near`` (``/dev/shm`` is tmpfs)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != near.stat().st_dev:
        return tempfile.mkdtemp(dir=shm, prefix="nam-test-")
    return None


def _metrics(res: dict) -> tuple:
    hist = [{k: v for k, v in h.items() if k != "epoch_s"} for h in res["history"]]
    return res["status"], res["selected_epoch"], res["splits"], hist


def _kill_and_resume(tmp_path: Path, kills: int, seed: int, epochs: int = EPOCHS) -> None:
    spec = make_spec()
    cfg = resolve_config(
        spec, "quick", [f"trainer.max_epochs={epochs}", "trainer.progress_bar=false"]
    )
    reference = fit(spec, cfg, tmp_path / "reference")
    run = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    other_tmp = _other_filesystem_tmpdir(tmp_path)
    if other_tmp is not None:
        env["TMPDIR"] = other_tmp
    rng = random.Random(seed)
    mid_write = 0
    for i in range(kills):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(run), str(epochs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and line.strip() != "READY":
            line = proc.stdout.readline()
        # Half of the kills land right inside a write, the others at a random moment.
        if i % 2 == 0:
            for _ in range(
                rng.randint(1, 2 * epochs)
            ):  # skip a few writes to spread over the epochs
                line = proc.stdout.readline()
                while line and line.strip() != "WRITING":
                    line = proc.stdout.readline()
            mid_write += 1
        else:
            time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        _, err = proc.communicate()
        assert proc.returncode in (-9, 0), f"worker failed on its own:\n{err}"
        ckpt = run / LAST_CKPT
        held = 0
        if ckpt.exists():  # whatever the moment of the kill, the checkpoint is complete
            held = len(torch.load(ckpt, map_location="cpu", weights_only=False)["nam_history"])
        res = read_results(run)
        # ... and the results never claim an epoch the checkpoint lacks.
        assert res is None or res["epochs_completed"] <= held, (res["epochs_completed"], held)
    done = subprocess.run(
        [sys.executable, str(WORKER), str(run), str(epochs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "DONE" in done.stdout
    assert mid_write >= 1
    assert _metrics(read_results(run)) == _metrics(reference)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    _kill_and_resume(tmp_path, kills=2, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_many_kills(tmp_path: Path, seed: int) -> None:
    _kill_and_resume(tmp_path, kills=10, seed=seed, epochs=8)
