"""The LRA experiment family: registration, presets, models per task, training, the reproducer."""

import json
import pickle

import numpy as np
import pytest
import torch

from neural_attention_memory.experiments import lra
from neural_attention_memory.experiments.registry import get_reproducer, get_task, list_tasks
from neural_attention_memory.models.transformer import DualEncoderClassifier, SequenceClassifier
from neural_attention_memory.tasks.lra import MissingDataError
from neural_attention_memory.training import fit, resolve_config

TINY_MODEL = [
    "model.d_model=16",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.d_ff=32",
    "trainer.progress_bar=false",
    "trainer.batch_size=8",
    "trainer.max_epochs=1",
]
TINY_LISTOPS = [
    "data.min_length=10",
    "data.max_length=40",
    "data.train=16",
    "data.val=8",
    "data.test=8",
]


def _cfg(task, model, tmp_path, extra=()):
    cache = (
        [f"data.cache_root={tmp_path / 'cache'}"]
        if task in ("lra-listops", "lra-pathfinder32")
        else []
    )
    return resolve_config(get_task(task), "quick", [*TINY_MODEL, *cache, *extra], model=model)


def test_tasks_models_and_presets_are_registered() -> None:
    assert set(lra.TASKS) == set(list_tasks("lra"))
    for task in lra.TASKS:
        spec = get_task(task)
        assert spec.family == "lra" and spec.selection_metric == "val/acc"
        assert set(spec.models) == {"nam-transformer", "softmax-transformer", "linear-transformer"}
        assert {"quick", "paper"} <= set(spec.presets)
    paper = get_task("lra-listops").presets["paper"]
    assert (
        paper["model"]["num_layers"],
        paper["model"]["d_model"],
        paper["model"]["num_heads"],
    ) == (4, 512, 8)
    assert paper["model"]["d_ff"] == 1024 and paper["data"]["max_length"] == 2000
    assert get_task("lra-text").presets["paper"]["model"]["d_model"] == 256
    assert get_task("lra-image").presets["paper"]["model"]["num_layers"] == 1
    assert get_task("lra-pathfinder32").presets["paper"]["model"]["d_model"] == 32


@pytest.mark.parametrize("model", list(lra.MODELS))
def test_one_training_epoch_per_model_on_tiny_listops(model: str, tmp_path) -> None:
    cfg = _cfg("lra-listops", model, tmp_path, TINY_LISTOPS)
    res = fit(get_task("lra-listops"), cfg, tmp_path / "run")
    assert res["status"] == "finished" and res["epochs_completed"] == 1
    assert 0.0 <= res["splits"]["test"]["acc"] <= 1.0
    assert np.isfinite(res["splits"]["train"]["loss"])


def test_pathfinder_builds_and_steps(tmp_path) -> None:
    extra = ["data.train=8", "data.val=4", "data.test=4"]
    cfg = _cfg("lra-pathfinder32", "nam-transformer", tmp_path, extra)
    spec = get_task("lra-pathfinder32")
    ds = spec.build_datasets(cfg, cfg["seed"])
    model = spec.build_model(cfg)
    assert isinstance(model, SequenceClassifier) and model.encoder.config.max_len == 1025
    batch = spec.collate_fn([ds["train"][i] for i in range(4)])
    assert batch["tokens"].shape == (4, 1024) and not batch["padding_mask"].any()
    out = spec.compute(model, batch)
    out.loss.backward()
    num, den = out.metrics["acc"]
    assert 0 <= float(num) <= float(den) == 4.0


def _write_user_files(root):
    for split in ("train", "test"):
        for sub, label in (("pos", 1), ("neg", 0)):
            d = root / "aclImdb" / split / sub
            d.mkdir(parents=True)
            for i in range(4):
                (d / f"{i}_1.txt").write_text(f"review {i} {'good' if label else 'bad'} " * 3)
    tsv = root / "tsv_data"
    tsv.mkdir()
    for split in ("train", "eval", "test"):
        (tsv / f"new_aan_pairs.{split}.tsv").write_text(
            "".join(f"{i % 2}\ta{i}\tb{i}\tpaper text {i}\tother paper {i * 7}\n" for i in range(6))
        )
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (cifar / name).open("wb") as f:
            pickle.dump(
                {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]},
                f,
            )


@pytest.mark.parametrize("task", ["lra-text", "lra-retrieval", "lra-image"])
def test_user_data_tasks_on_fixture_files(task: str, tmp_path) -> None:
    root = tmp_path / "lra"
    assert not lra.data_available(task, {"root": str(root)})
    extra = [f"data.root={root}"]
    if task == "lra-text":
        extra += ["data.val_count=2", "data.max_length=20"]
    elif task == "lra-image":
        extra += ["data.val_count=4"]
    cfg = _cfg(task, "linear-transformer", tmp_path, extra)
    spec = get_task(task)
    with pytest.raises(MissingDataError, match="put|Put"):
        spec.build_datasets(cfg, 0)
    _write_user_files(root)
    assert lra.data_available(task, {"root": str(root)})
    ds = spec.build_datasets(cfg, 0)
    assert set(ds) == {"train", "val", "test"}
    model = spec.build_model(cfg)
    batch = spec.collate_fn([ds["train"][i] for i in range(2)])
    if task == "lra-retrieval":
        assert isinstance(model, DualEncoderClassifier)
        assert batch["tokens1"].shape[0] == 2
    if task == "lra-text":
        assert batch["tokens"].shape[1] <= 20 and int(batch["tokens"].max()) < 257
    if task == "lra-image":
        assert batch["tokens"].shape == (2, 1024)
    out = spec.compute(model, batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_model_validation(tmp_path) -> None:
    cfg = _cfg("lra-listops", "nam-transformer", tmp_path, TINY_LISTOPS)
    cfg["model"]["name"] = "performer"
    with pytest.raises(ValueError, match="model.name"):
        lra.build_model(cfg)
    cfg["model"]["name"] = "nam-transformer"
    cfg["model"]["depth"] = 3
    with pytest.raises(ValueError, match="unknown keys"):
        lra.build_model(cfg)
    with pytest.raises(ValueError, match="tasks"):
        lra.reproduce("quick", tmp_path, tasks=["lra-audio"])


def test_reproducer_writes_table1_report_and_plot(tmp_path) -> None:
    over = [*TINY_MODEL, *TINY_LISTOPS, f"data.cache_root={tmp_path / 'cache'}"]
    report = get_reproducer("lra")(
        preset="quick", out_dir=tmp_path / "out", tasks=["lra-listops"], overrides=over
    )
    text = report.read_text()
    assert "| Model | ListOps | speedup |" in text
    assert "(29.75)" in text and "(2.66)" in text  # the paper's numbers beside ours
    nam_row = next(line for line in text.splitlines() if line.startswith("| NAM Transformer"))
    assert "—" not in nam_row.split("|")[2]  # our accuracy is filled in
    assert (tmp_path / "out" / "acc_vs_time_lra-listops.png").stat().st_size > 1000
    assert "ms / step (CPU)" in text
    step = json.loads(
        (tmp_path / "out" / "lra-listops" / "nam-transformer" / "step_time.json").read_text()
    )
    assert step["step_ms"] > 0 and step["batches"] == 2  # 16 training examples at batch 8
    softmax_row = next(line for line in text.splitlines() if line.startswith("| Transformer"))
    assert softmax_row.split("|")[3].strip().startswith("1.00")  # the peer's own speedup
    # Re-running skips the finished runs.
    again = lra.reproduce("quick", tmp_path / "out", tasks=["lra-listops"], overrides=over)
    assert again == report


def test_generated_tasks_can_read_the_lra_release(tmp_path) -> None:
    from neural_attention_memory.tasks.lra import (
        ListOpsConfig,
        PathfinderConfig,
        generate_listops,
        generate_pathfinder,
        write_listops_tsv,
        write_pathfinder_release,
    )

    rel = tmp_path / "lra_release"
    for i, split in enumerate(("train", "val", "test")):
        rows = generate_listops(6, i, ListOpsConfig(min_length=10, max_length=30))
        write_listops_tsv(rel / "listops-1000" / f"basic_{split}.tsv", rows)
    cfg = _cfg("lra-listops", "nam-transformer", tmp_path, [*TINY_LISTOPS, f"data.release={rel}"])
    ds = get_task("lra-listops").build_datasets(cfg, 0)
    assert [len(ds[s]) for s in ("train", "val", "test")] == [6, 6, 6]
    images, labels = generate_pathfinder(20, 0, PathfinderConfig(size=32))
    write_pathfinder_release(rel, images, labels, "easy")
    cfg = _cfg("lra-pathfinder32", "nam-transformer", tmp_path, [f"data.release={rel}"])
    ds = get_task("lra-pathfinder32").build_datasets(cfg, 0)
    assert [len(ds[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert np.array_equal(ds["train"][3]["tokens"].numpy(), images[3].reshape(-1))


def test_reproducer_includes_user_tasks_whose_files_are_present(tmp_path, monkeypatch) -> None:
    root = tmp_path / "lra"
    _write_user_files(root)
    seen = {}

    def fake_grid(jobs, out_dir, keep_going, log, train=True):
        seen["tasks"] = sorted({j.task for j in jobs})
        return []

    monkeypatch.setattr("neural_attention_memory.experiments.runner.run_grid", fake_grid)
    report = lra.reproduce("quick", tmp_path / "out", overrides=[f"data.root={root}"])
    assert seen["tasks"] == sorted(lra.TASKS)
    assert "Not run" not in report.read_text()


@pytest.mark.parametrize("task", list(lra.TASKS))
def test_paper_presets_build_identical_sized_models(task: str) -> None:
    counts = set()
    for model in lra.MODELS:
        cfg = resolve_config(get_task(task), "paper", [], model=model)
        net = lra.build_model(cfg)
        counts.add(sum(p.numel() for p in net.parameters()))
        enc = net.tower.encoder if task == "lra-retrieval" else net.encoder
        assert enc.config.num_layers == get_task(task).presets["paper"]["model"]["num_layers"]
    assert len(counts) == 1  # only the attention kernel differs


WARMUP = ["data.warmup.epochs=2", "data.warmup.min_length=10", "data.warmup.max_length=30"]


def test_listops_warmup_trains_short_expressions_first_and_keeps_eval_splits(tmp_path) -> None:
    """data.warmup: the first epochs see only the short expressions, later ones only the full set;
    validation and test are the full-length splits with or without a warm-up."""
    extra = ["data.min_length=60", "data.max_length=90", "trainer.max_epochs=3"]
    cfg = _cfg(
        "lra-listops",
        "nam-transformer",
        tmp_path,
        [*TINY_LISTOPS, *extra, *WARMUP, "data.warmup.train=24"],
    )
    plain = _cfg("lra-listops", "nam-transformer", tmp_path, [*TINY_LISTOPS, *extra])
    spec = get_task("lra-listops")
    ds, ds_plain = spec.build_datasets(cfg, 0), spec.build_datasets(plain, 0)
    train = ds["train"]
    assert train.warmup_count == 24 and len(train) == 24 + 16
    assert all(10 <= len(s) <= 30 for s in train.sequences[:24])
    assert all(60 <= len(s) <= 90 for s in train.sequences[24:])
    for split in ("val", "test"):
        assert [s.tolist() for s in ds[split].sequences] == [
            s.tolist() for s in ds_plain[split].sequences
        ]
    sched = lra.train_schedule(cfg, train)
    assert list(sched.indices(1)) == list(range(24)) and list(sched.indices(2)) == list(
        range(24, 40)
    )
    res = fit(spec, cfg, tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "results.json").read_text())["history"]
    assert [(h["train_lengths"], h["train_samples"]) for h in hist] == [
        ("10-30", 24),
        ("10-30", 24),
        ("60-90", 16),
    ]
    assert res is not None


@pytest.mark.parametrize(
    ("task", "over", "needle"),
    [
        ("lra-listops", ["data.warmup.epochs=0"], "data.warmup.epochs: expected an integer >= 1"),
        ("lra-listops", ["data.warmup.max_length=3000"], "expected <= data.max_length (300)"),
        (
            "lra-listops",
            ["data.warmup.min_length=200", "data.warmup.max_length=100"],
            "data.warmup.min_length: expected <= data.warmup.max_length (100), got 200",
        ),
        ("lra-pathfinder32", ["data.warmup.epochs=1"], "applies to lra-listops only"),
    ],
)
def test_listops_warmup_bad_config_names_the_key(task, over, needle) -> None:
    from neural_attention_memory.training.config import ConfigError

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(get_task(task), "quick", over)


def test_listops_warmup_defaults_fill_the_config() -> None:
    cfg = resolve_config(get_task("lra-listops"), "medium", ["data.warmup.epochs=6"])
    assert cfg["data"]["warmup"] == {
        "epochs": 6,
        "min_length": 50,
        "max_length": 300,
        "train": 3000,
        "bridge_epochs": 0,
        "bridge_min_length": 150,
        "bridge_max_length": 800,
    }


def test_listops_warmup_bridge_trains_short_then_bridge_then_full_length(tmp_path) -> None:
    """data.warmup.bridge_epochs: the last warm-up epochs train on bridge-length expressions
    (their own seed stream), between the short warm-up and the full-length set; without a
    bridge the warm-up data and schedule are exactly as before."""
    extra = ["data.min_length=60", "data.max_length=90", "trainer.max_epochs=4"]
    bridge = [
        "data.warmup.epochs=3",
        "data.warmup.bridge_epochs=1",
        "data.warmup.bridge_min_length=31",
        "data.warmup.bridge_max_length=59",
    ]
    base = [*TINY_LISTOPS, *extra, *WARMUP, "data.warmup.train=24"]
    cfg = _cfg("lra-listops", "nam-transformer", tmp_path, [*base, *bridge])
    spec = get_task("lra-listops")
    ds = spec.build_datasets(cfg, 0)
    train = ds["train"]
    assert (train.short_count, train.warmup_count, len(train)) == (24, 48, 48 + 16)
    assert all(10 <= len(s) <= 30 for s in train.sequences[:24])
    assert all(31 <= len(s) <= 59 for s in train.sequences[24:48])
    assert all(60 <= len(s) <= 90 for s in train.sequences[48:])
    sched = lra.train_schedule(cfg, train)
    assert [list(sched.indices(e)) for e in range(4)] == [
        list(range(24)),
        list(range(24)),
        list(range(24, 48)),
        list(range(48, 64)),
    ]
    # the short set and the eval splits are those of the warm-up without a bridge
    plain = spec.build_datasets(
        _cfg("lra-listops", "nam-transformer", tmp_path, [*base, "data.warmup.epochs=3"]), 0
    )
    assert plain["train"].warmup_count == plain["train"].short_count == 24
    same = [s.tolist() for s in plain["train"].sequences[:24]]
    assert [s.tolist() for s in train.sequences[:24]] == same
    for split in ("val", "test"):
        assert [s.tolist() for s in ds[split].sequences] == [
            s.tolist() for s in plain[split].sequences
        ]
    fit(spec, cfg, tmp_path / "run")
    hist = json.loads((tmp_path / "run" / "results.json").read_text())["history"]
    assert [(h["train_lengths"], h["train_samples"]) for h in hist] == [
        ("10-30", 24),
        ("10-30", 24),
        ("31-59", 24),
        ("60-90", 16),
    ]


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        (
            ["data.warmup.epochs=2", "data.warmup.bridge_epochs=2"],
            "bridge_epochs: expected < data.warmup.epochs (2",
        ),
        (
            [
                "data.warmup.bridge_epochs=1",
                "data.warmup.epochs=2",
                "data.warmup.bridge_max_length=400",
            ],
            "data.warmup.bridge_max_length: expected <= data.max_length (300), got 400",
        ),
        (
            ["data.warmup.bridge_min_length=90", "data.warmup.bridge_max_length=80"],
            "data.warmup.bridge_min_length: expected <= data.warmup.bridge_max_length (80), got 90",
        ),
        (["data.warmup.bridge_epochs=-1"], "data.warmup.bridge_epochs: expected an integer >= 0"),
    ],
)
def test_listops_warmup_bridge_bad_config_names_the_key(over, needle) -> None:
    from neural_attention_memory.training.config import ConfigError

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(get_task("lra-listops"), "quick", over)


def test_step_timing_and_epoch_seconds_use_the_full_length_epochs(tmp_path) -> None:
    """With a warm-up the speedup is timed on full-length batches and the report's seconds per
    epoch is the median of the full-length epochs, not of the cheap short ones."""
    from neural_attention_memory.experiments.lra.report import _epoch_seconds
    from neural_attention_memory.experiments.lra.timing import timed_batches

    extra = ["data.min_length=60", "data.max_length=90", "trainer.max_epochs=3"]
    cfg = _cfg("lra-listops", "nam-transformer", tmp_path, [*TINY_LISTOPS, *extra, *WARMUP])
    batches = timed_batches(get_task("lra-listops"), cfg, 2)
    for b in batches:
        lengths = (~b["padding_mask"]).sum(1)
        assert int(lengths.min()) >= 60 and int(lengths.max()) <= 90
    hist = [
        {"epoch": 0, "epoch_s": 1.0, "train_lengths": "10-30"},
        {"epoch": 1, "epoch_s": 1.0, "train_lengths": "10-30"},
        {"epoch": 2, "epoch_s": 1.0, "train_lengths": "10-30"},
        {"epoch": 3, "epoch_s": 9.0, "train_lengths": "60-90"},
        {"epoch": 4, "epoch_s": 11.0, "train_lengths": "60-90"},
    ]
    assert _epoch_seconds({"history": hist}) == 10.0
    assert _epoch_seconds({"history": [{"epoch_s": 2.0}, {"epoch_s": 4.0}]}) == 3.0
