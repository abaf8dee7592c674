"""The length curriculum of the algorithmic tasks (``data.curriculum``): subsets, resume, errors."""

from __future__ import annotations

import pytest
import torch
import yaml

from neural_attention_memory.cli import main
from neural_attention_memory.experiments import generalization as gen
from neural_attention_memory.experiments.generalization.data import (
    curriculum_max_size,
    train_schedule,
)
from neural_attention_memory.experiments.registry import get_task
from neural_attention_memory.experiments.reproducer import plan_jobs
from neural_attention_memory.tasks import algorithmic as alg
from neural_attention_memory.training import ConfigError, fit, read_config, resolve_config

from ._helpers import TINY_SPLITS

torch.set_num_threads(1)

TINY = [
    *TINY_SPLITS,
    "+model.d_embed=8",
    "+model.hidden=16",
    "+model.num_heads=2",
    "trainer.progress_bar=false",
    "trainer.batch_size=16",
    "trainer.eval_batch_size=64",
]
CURRICULUM = ["data.curriculum.start=3", "data.curriculum.step=2"]


def _config(task: str = "palin", extra: tuple[str, ...] = (), preset: str = "quick") -> dict:
    return resolve_config(get_task(task), preset, [*TINY, *extra], model="lstm")


@pytest.mark.parametrize("task", ["fib", "dyck4"])
def test_each_epoch_holds_exactly_the_sizes_up_to_start_plus_step_times_epoch(task) -> None:
    cfg = _config(task, ("data.splits.train.count=400", *CURRICULUM))
    train = gen.build_datasets(cfg, 0)["train"]
    sizes = train.sizes()
    schedule = train_schedule(cfg, train)
    assert schedule is not None
    for epoch, limit in enumerate([3, 5, 7, 9, 10, 10]):  # capped at the train range's top, 10
        assert curriculum_max_size(3, 2, epoch, 10) == limit
        assert list(schedule.indices(epoch)) == [i for i, n in enumerate(sizes) if n <= limit]
        assert schedule.describe(epoch) == {
            "train_max_size": limit,
            "train_samples": sum(n <= limit for n in sizes),
        }
    assert len(schedule.indices(5)) == 400  # from epoch 4 on: the whole training set


def test_no_curriculum_is_todays_config_and_data() -> None:
    cfg = _config()
    assert "curriculum" not in cfg["data"]  # presets leave it out: old runs resolve unchanged
    assert train_schedule(cfg, gen.build_datasets(cfg, 0)["train"]) is None
    assert train_schedule({**cfg, "data": {**cfg["data"], "curriculum": None}}, None) is None
    with_it = _config(extra=tuple(CURRICULUM))
    assert with_it["data"]["curriculum"] == {"start": 3, "step": 2}
    # The training set and the evaluation sets are the same problems with or without it.
    a, b = gen.build_datasets(cfg, 0), gen.build_datasets(with_it, 0)
    assert {k: v.examples for k, v in a.items()} == {k: v.examples for k, v in b.items()}
    # The medium preset takes it the same way, for every model of the grid.
    for model in gen.presets.MEDIUM_GRID["fib"]:
        cfg = resolve_config(get_task("fib"), "medium", CURRICULUM, model=model)
        assert cfg["data"]["curriculum"] == {"start": 3, "step": 2}


def test_tiny_run_records_the_schedule_and_resumes_exactly(tmp_path) -> None:
    spec = get_task("palin")
    cfg = _config(extra=(*CURRICULUM, "trainer.max_epochs=3"))
    straight = fit(spec, cfg, tmp_path / "a")
    hist = straight["history"]
    sizes = gen.build_datasets(cfg, 0)["train"].sizes()
    assert [h["train_max_size"] for h in hist] == [3, 5, 7]
    assert [h["train_samples"] for h in hist] == [sum(n <= m for n in sizes) for m in (3, 5, 7)]
    assert read_config(tmp_path / "a")["data"]["curriculum"] == {"start": 3, "step": 2}
    # Interrupted after epoch 1, resumed to 3: the same schedule and the same results.
    fit(spec, {**cfg, "trainer": {**cfg["trainer"], "max_epochs": 1}}, tmp_path / "b")
    resumed = fit(spec, cfg, tmp_path / "b", resume=True)

    def strip(history):
        return [{k: v for k, v in e.items() if k != "epoch_s"} for e in history]

    assert strip(resumed["history"]) == strip(hist)
    assert resumed["splits"] == straight["splits"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["data.curriculum.start=0", "data.curriculum.step=1"], "data.curriculum.start: expected "
         "an integer >= 1 (largest training size of epoch 0), got 0"),
        (["data.curriculum.start=2", "data.curriculum.step=0"], "data.curriculum.step: expected "
         "an integer >= 1 (sizes added per epoch), got 0"),
        (["data.curriculum.start=abc", "data.curriculum.step=1"],
         "data.curriculum.start: expected an integer >= 1"),
        (["data.curriculum.start=2", "data.curriculum.step=1.5"],
         "data.curriculum.step: expected an integer >= 1"),
        (["data.curriculum.start=2"], "data.curriculum: expected both 'start' and 'step'"),
        (["data.curriculum.start=2", "data.curriculum.step=1", "data.curriculum.every=2"],
         "data.curriculum.every: unknown key; valid keys under data.curriculum: start, step"),
        (["data.curriculum=3"], "data.curriculum: expected a mapping or null, got 3"),
        (["data.splits.train.digits=[4, 10]", "data.curriculum={start: 3, step: 1}"],
         "data.curriculum.start: expected an integer >= 4, the smallest training size"),
    ],
)  # fmt: skip
def test_bad_curriculum_names_key_expected_and_given(extra, message) -> None:
    with pytest.raises(ConfigError) as err:
        _config(extra=tuple(extra))
    assert message in str(err.value)


def test_curriculum_is_refused_where_there_are_no_digit_sizes(tmp_path) -> None:
    with pytest.raises(ConfigError, match="data.curriculum: SCAN has no digit sizes"):
        resolve_config(get_task("scan"), "quick", CURRICULUM, model="lstm")
    # Other families have no such key (their data sections are closed).
    with pytest.raises(ConfigError, match="unknown key 'curriculum' under data"):
        resolve_config(get_task("lra-listops"), "quick", CURRICULUM)
    # A training set of other sizes than the schedule's first epoch: refused before any file.
    cfg = _config(extra=("data.splits.train.count=1", *CURRICULUM))
    with pytest.raises(ConfigError, match="no training problem has size <= 3"):
        ds = alg.build_splits("palin", 0, {"train": {"digits": [8, 10], "count": 4}})["train"]
        train_schedule(cfg, ds)
    # ... and at reproduce time for every run of the grid, before anything is written.
    with pytest.raises(ConfigError, match="SCAN has no digit sizes"):
        plan_jobs(gen.FAMILY, "quick", tasks=["fib", "scan"], overrides=CURRICULUM)


def test_reproduce_passes_the_curriculum_to_every_run() -> None:
    jobs = plan_jobs(gen.FAMILY, "medium", tasks=["fib", "palin"], overrides=CURRICULUM)
    assert len(jobs) == 2 * len(gen.presets.MEDIUM_GRID["fib"])
    for job in jobs:
        cfg = resolve_config(get_task(job.task), job.preset, job.overrides, model=job.model)
        assert cfg["data"]["curriculum"] == {"start": 3, "step": 2}


def _nam(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_cli_set_round_trip_and_one_line_errors(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    sets = ["--set", CURRICULUM[0], "--set", CURRICULUM[1]]
    code, out, _ = _nam(["train", "fib", "-m", "lstm", *sets, "--print-config"], capsys)
    assert code == 0 and yaml.safe_load(out)["data"]["curriculum"] == {"start": 3, "step": 2}
    # The YAML form of the whole section is the same.
    code, out2, _ = _nam(
        ["train", "fib", "-m", "lstm", "--set", "data.curriculum={start: 3, step: 2}",
         "--print-config"], capsys,
    )  # fmt: skip
    assert code == 0 and out2 == out
    for args, message in [
        (["train", "fib", "-m", "lstm", "--set", "data.curriculum.start=0", "--set",
          "data.curriculum.step=1"], "data.curriculum.start: expected an integer >= 1"),
        (["train", "scan", "-m", "lstm", *sets], "data.curriculum: SCAN has no digit sizes"),
        (["reproduce", "generalization", "--tasks", "fib,scan", *sets, "--out", "x"],
         "data.curriculum: SCAN has no digit sizes"),
    ]:  # fmt: skip
        code, _, err = _nam(args, capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_report_says_which_runs_used_a_curriculum(tmp_path) -> None:
    from neural_attention_memory.experiments.generalization.report import _params_and_time
    from neural_attention_memory.training.rundir import atomic_write_yaml

    runs = []
    for name, data in [("a", {"curriculum": {"start": 3, "step": 2}}), ("b", {})]:
        atomic_write_yaml(tmp_path / name / "config.yaml", {"task": "fib", "data": data})
        runs.append(
            {"task": "fib", "model": "lstm", "status": "finished", "run_dir": tmp_path / name}
        )
    table = _params_and_time(runs)
    assert "| Curriculum |" in table.splitlines()[0]
    assert "| n <= 3+2e |" in table and "| none |" in table
    missing = {"task": "fib", "model": "lstm", "status": "not run", "run_dir": tmp_path / "x"}
    assert "Curriculum" not in _params_and_time([runs[1], missing])


def test_a_reproduction_folder_does_not_mix_runs_with_and_without(tmp_path) -> None:
    from neural_attention_memory.experiments.registry import get_reproducer

    fn = get_reproducer("generalization")
    over = [*TINY, "trainer.max_epochs=1"]
    fn("quick", tmp_path, tasks=["palin"], models=["lstm"], overrides=over, curve_count=2)
    with pytest.raises(ConfigError, match=r"different configuration \(data.curriculum\)"):
        fn("quick", tmp_path, tasks=["palin"], models=["lstm"], overrides=[*over, *CURRICULUM],
           report_only=True)  # fmt: skip
