"""Per-epoch training subsets (``TaskSpec.train_schedule``): exact examples, counters, resume."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nam_toy_task as toy

from neural_attention_memory.training import StepOutput, fit, resolve_config
from neural_attention_memory.training.module import EpochSeededSampler, derive_seed
from neural_attention_memory.training.spec import TrainSchedule

torch.set_num_threads(1)

# Epoch -> how many of the 200 training examples it uses: shrinking and growing epoch lengths.
COUNTS = {0: 45, 1: 200, 2: 130}
SEEN: list[int] = []  # indices of the training examples, in the order the model saw them


def _datasets(config, seed):
    out = toy.build_datasets(config, seed)
    x, y = out["train"].tensors
    out["train"] = TensorDataset(x, y, torch.arange(len(x)))  # the index rides along
    return out


def _compute(model: nn.Module, batch) -> StepOutput:
    if len(batch) == 3:  # a training batch
        SEEN.extend(batch[2].tolist())
        batch = batch[:2]
    return toy.compute(model, batch)


def _schedule(config, train):
    # Every other example first, so a subset is not simply a prefix.
    order = [*range(0, len(train), 2), *range(1, len(train), 2)]
    return TrainSchedule(
        indices=lambda e: order[: COUNTS[e]], describe=lambda e: {"train_samples": COUNTS[e]}
    )


@pytest.fixture
def spec():
    base = toy.make_spec("toysched")
    SEEN.clear()
    return dataclasses.replace(
        base, build_datasets=_datasets, compute=_compute, train_schedule=_schedule
    )


def _expected(seed: int, epochs: range) -> list[int]:
    order = [*range(0, 200, 2), *range(1, 200, 2)]
    out = []
    for e in epochs:
        sub = order[: COUNTS[e]]
        g = torch.Generator().manual_seed(derive_seed(seed, 1, e))
        out += [sub[i] for i in torch.randperm(len(sub), generator=g).tolist()]
    return out


def _strip(history):
    return [{k: v for k, v in e.items() if k != "epoch_s"} for e in history]


def test_each_epoch_sees_exactly_its_subset_once(spec, tmp_path):
    res = fit(spec, resolve_config(spec, "quick", []), tmp_path / "a")
    # Exactly the schedule's examples, each once, in the (seed, epoch) order: nothing is cut off
    # when an epoch is longer than the first one, nothing repeated when it is shorter.
    assert SEEN == _expected(0, range(3))
    assert [h["train_samples"] for h in res["history"]] == [45, 200, 130]
    last = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == sum(-(-n // 32) for n in COUNTS.values())  # batches of 32
    # The lr still decays per epoch, whatever the epoch's length.
    assert [h["lr"] for h in res["history"]] == pytest.approx([0.02, 0.016, 0.0128])


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_continues_the_schedule_exactly(spec, tmp_path, workers):
    # Warm-up crosses the resume point (2 + 7 steps); a loader worker is reseeded per epoch too.
    over = ["optim.warmup_steps=9", f"trainer.num_workers={workers}"]
    straight = fit(spec, resolve_config(spec, "quick", over), tmp_path / "a")
    SEEN.clear()
    fit(spec, resolve_config(spec, "quick", [*over, "trainer.max_epochs=1"]), tmp_path / "b")
    resumed = fit(spec, resolve_config(spec, "quick", over), tmp_path / "b", resume=True)
    assert SEEN == _expected(0, range(3))
    assert _strip(resumed["history"]) == _strip(straight["history"])
    assert resumed["splits"] == straight["splits"]


def test_without_a_schedule_the_batches_are_unchanged(spec, tmp_path):
    plain = dataclasses.replace(spec, train_schedule=None)
    fit(plain, resolve_config(plain, "quick", ["trainer.max_epochs=2"]), tmp_path / "a")
    g = [torch.Generator().manual_seed(derive_seed(0, 1, e)) for e in range(2)]
    assert SEEN == [i for gen in g for i in torch.randperm(200, generator=gen).tolist()]
    # A schedule that returns None is no schedule: same batches, same history.
    SEEN.clear()
    none = dataclasses.replace(spec, train_schedule=lambda config, train: None)
    a = fit(none, resolve_config(none, "quick", ["trainer.max_epochs=2"]), tmp_path / "b")
    b = fit(plain, resolve_config(plain, "quick", ["trainer.max_epochs=2"]), tmp_path / "c")
    assert _strip(a["history"]) == _strip(b["history"])
    assert "train_samples" not in a["history"][0]


def test_sampler_with_indices():
    full = EpochSeededSampler(50, seed=3)
    every = EpochSeededSampler(50, seed=3, indices=lambda e: range(50))
    for e in (0, 4):
        full.set_epoch(e)
        every.set_epoch(e)
        assert list(every) == list(full)  # the whole set: the plain permutation
    sub = EpochSeededSampler(50, seed=3, indices=lambda e: range(10 * (e + 1)))
    sub.set_epoch(1)
    assert len(sub) == 20 and sorted(sub) == list(range(20))
    ordered = EpochSeededSampler(50, seed=3, indices=lambda e: [7, 2, 9], shuffle=False)
    assert list(ordered) == [7, 2, 9]
    with pytest.raises(ValueError, match=r"indices: expected a non-empty list .* got 0 indices"):
        len(EpochSeededSampler(50, seed=3, indices=lambda e: []))
    with pytest.raises(ValueError, match=r"indices in \[0, 50\) .* range \[3, 50\]"):
        list(EpochSeededSampler(50, seed=3, indices=lambda e: [3, 50]))


def test_schedule_of_the_wrong_type_is_refused(spec, tmp_path):
    bad = dataclasses.replace(spec, train_schedule=lambda config, train: [1, 2, 3])
    with pytest.raises(TypeError, match="spec.train_schedule: expected a TrainSchedule or None"):
        fit(bad, resolve_config(bad, "quick", []), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_epoch_line_shows_the_schedule():
    from types import SimpleNamespace

    from neural_attention_memory.training.display import epoch_summary

    module = SimpleNamespace(
        running_loss=lambda: 0.5,
        last_eval={"val": {"acc": 0.75, "loss": 0.4}},
        train_schedule=TrainSchedule(indices=range, describe=lambda e: {"train_samples": 10 * e}),
    )
    assert (
        epoch_summary(2, 3, module)
        == "epoch 3/3 | train loss 0.5 | train_samples 20 | val acc 0.75"
    )
    module.train_schedule = None
    assert epoch_summary(2, 3, module) == "epoch 3/3 | train loss 0.5 | val acc 0.75"


@pytest.mark.slow
def test_schedule_under_two_cpu_processes(tmp_path):
    import json
    import os
    import subprocess
    import textwrap

    here = Path(__file__).resolve().parent
    script = tmp_path / "ddp_schedule.py"
    # DDP's launcher re-executes the script for rank 1, so this must be a plain script.
    script.write_text(
        textwrap.dedent(
            f"""
            import dataclasses, json, sys
            sys.path.insert(0, {str(here)!r})
            import torch
            torch.set_num_threads(1)
            import nam_toy_task as toy
            import test_train_schedule as t
            from neural_attention_memory.training import fit, resolve_config
            spec = dataclasses.replace(toy.make_spec("toysched"), build_datasets=t._datasets,
                                       compute=t._compute, train_schedule=t._schedule)
            over = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
            res = fit(spec, resolve_config(spec, "quick", over), {str(tmp_path / "run")!r})
            rank = torch.distributed.get_rank()
            print("RESULT", json.dumps({{"rank": rank, "seen": t.SEEN}}))
            """
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = [
        json.loads(x.split(" ", 1)[1])["seen"] for x in out.stdout.splitlines() if "RESULT" in x
    ]
    assert len(seen) == 2
    # Each rank takes half of every epoch (padded to equal halves); together exactly the subset.
    expected = _expected(0, range(3))
    ends = [0]
    for e in range(3):
        ends.append(ends[-1] + -(-COUNTS[e] // 2))
    assert len(seen[0]) == len(seen[1]) == ends[-1]
    first = 0
    for e in range(3):
        both = {*seen[0][ends[e] : ends[e + 1]], *seen[1][ends[e] : ends[e + 1]]}
        assert both == set(expected[first : first + COUNTS[e]])
        first += COUNTS[e]
