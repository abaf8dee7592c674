"""Subprocess of ``test_kill_resume.py``: trains the toy task into RUN_DIR, resuming what is there.

Checkpoint and JSON writes go through a slowed-down writer (small chunks with pauses) that prints
``WRITING`` first, so the test can kill the process in the middle of a write.
Usage: ``python kill_worker.py RUN_DIR EPOCHS``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from nam_toy_task import make_spec

from neural_attention_memory.training import fit, resolve_config, rundir


def slow_write(fh, data) -> None:
    print("WRITING", flush=True)
    view = memoryview(data).cast("B")
    for i in range(0, len(view), 512):
        fh.write(view[i : i + 512])
        fh.flush()
        time.sleep(0.002)


def main() -> None:
    run_dir, epochs = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    rundir._write_all = slow_write
    spec = make_spec()
    cfg = resolve_config(
        spec, "quick", [f"trainer.max_epochs={epochs}", "trainer.progress_bar=false"]
    )
    print("READY", flush=True)
    fit(spec, cfg, run_dir, resume=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
