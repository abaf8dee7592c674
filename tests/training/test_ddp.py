"""Two-process DDP on the CPU: ranks agree on exactly reduced metrics; only rank 0 writes files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "ddp_fit.py"
    # DDP's launcher re-executes the script for rank 1, so this must be a plain script, not pytest.
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            sys.path.insert(0, {str(HERE)!r})
            import torch
            torch.set_num_threads(1)
            from nam_toy_task import make_spec
            from neural_attention_memory.training import fit, resolve_config
            spec = make_spec()
            over = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                    "trainer.max_epochs=2"]
            res = fit(spec, resolve_config(spec, "quick", over), {str(run)!r})
            rank = torch.distributed.get_rank()
            print("RESULT", json.dumps({{"rank": rank, "val": res["splits"]["val"]}}))
            """
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [
        json.loads(x.split(" ", 1)[1]) for x in out.stdout.splitlines() if x.startswith("RESULT")
    ]
    assert sorted(r["rank"] for r in lines) == [0, 1]
    assert lines[0]["val"] == lines[1]["val"]
    res = json.loads((run / "results.json").read_text())
    assert res["status"] == "finished" and res["epochs_completed"] == 2
    assert res["splits"]["val"] == lines[0]["val"]
    # 96 eval samples split over 2 ranks: the reduced accuracy is still a count over 96.
    acc = res["splits"]["val"]["acc"]
    assert acc * 96 == pytest.approx(round(acc * 96))
