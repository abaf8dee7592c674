"""The length-generalisation experiment: task specs, the step, tiny runs, curves and the report."""

from __future__ import annotations

import json

import pytest
import torch

from neural_attention_memory.experiments import generalization as gen
from neural_attention_memory.experiments.registry import get_reproducer, get_task, list_tasks
from neural_attention_memory.tasks import algorithmic as alg
from neural_attention_memory.training import ConfigError, evaluate, fit, resolve_config

from .generalization._helpers import TINY_SPLITS, FixedLogits

TINY_DATA = TINY_SPLITS
TINY_LSTM = ["+model.d_embed=8", "+model.hidden=16", "+model.num_heads=2"]
QUIET = ["trainer.progress_bar=false", "trainer.batch_size=32", "trainer.eval_batch_size=64"]


def tiny_config(task: str = "reduce", model: str = "lstm", epochs: int = 1) -> dict:
    spec = get_task(task)
    extra = TINY_LSTM if model == "lstm" else []
    return resolve_config(
        spec, "quick", [*TINY_DATA, *extra, *QUIET, f"trainer.max_epochs={epochs}"], model=model
    )


def test_every_task_is_registered_with_the_papers_rule() -> None:
    assert set(gen.TASKS) <= set(list_tasks("generalization"))
    for task in gen.TASKS:
        spec = get_task(task)
        assert spec.family == "generalization"
        assert {"quick", "paper"} <= set(spec.presets)
        assert spec.selection_metric == ("id/select" if task == "scan" else "od_easy/select")
        for model in ("nam-tm", "lsam", "transformer", "lstm", "ut", "dnc", "stack-rnn"):
            assert model in spec.models
    paper = get_task("fib").presets["paper"]
    assert paper["optim"]["lr"] == 1e-4 and paper["trainer"]["batch_size"] == 128
    assert paper["data"]["splits"]["train"]["count"] == 25_600


def test_compute_scores_only_target_positions() -> None:
    C = alg.VOCAB_SIZE
    targets = torch.tensor([[-100, -100, 5, 6], [-100, 7, 8, -100]])
    tokens = torch.ones(2, 4, dtype=torch.long)
    mask = torch.tensor([[False] * 4, [False, False, False, True]])
    pred = torch.tensor([[0, 0, 5, 6], [9, 7, 0, 0]])  # row 0 right (junk elsewhere), row 1 half
    logits = torch.nn.functional.one_hot(pred, C).float() * 10
    out = gen.compute(
        FixedLogits(logits), {"tokens": tokens, "targets": targets, "padding_mask": mask}
    )
    (sn, sd), (tn, td) = out.metrics["seq_acc"], out.metrics["tok_acc"]
    assert (float(sn), float(sd)) == (1.0, 2.0)
    assert (float(tn), float(td)) == (3.0, 4.0)
    num, den = out.metrics["select"]  # seq_acc, ties broken by per-sample token accuracy
    assert float(den) == 2.0 and abs(float(num) - (1.0 + gen.TIE_BREAK * 1.5)) < 1e-7
    valid = targets != -100
    ref = torch.nn.functional.cross_entropy(logits[valid], targets[valid])
    torch.testing.assert_close(out.loss, ref)
    out.loss.backward()


@pytest.mark.parametrize("task", gen.TASKS)
def test_datasets_deterministic_and_disjoint(task: str) -> None:
    spec = get_task(task)
    over = (
        ["data.train_count=64", "data.id_count=16", "data.test_count=16"]
        if task == "scan"
        else TINY_DATA
    )
    cfg = resolve_config(spec, "quick", over, model="lstm")
    a, b = gen.build_datasets(cfg, 0), gen.build_datasets(cfg, 0)
    assert list(a) == (["train", "id", "test"] if task == "scan" else list(alg.default_splits()))
    train = {e.tokens for e in a["train"].examples}
    for name, ds in a.items():
        assert [e.tokens for e in ds.examples] == [e.tokens for e in b[name].examples]
        if name != "train":
            assert not train & {e.tokens for e in ds.examples}
    extra = gen.build_eval_dataset(cfg, 0, {"digits": "3-4", "count": 8})
    assert len(extra) == 8 and not train & {e.tokens for e in extra.examples}
    with pytest.raises(ValueError, match="options"):
        gen.build_eval_dataset(cfg, 0, {"length": "3-4"})


@pytest.mark.parametrize("model", gen.MODEL_LABELS)
def test_every_model_trains_one_step_through_the_spec(model: str) -> None:
    spec = get_task("palin")
    cfg = resolve_config(spec, "quick", TINY_DATA, model=model)
    torch.manual_seed(0)
    net = spec.build_model(cfg)
    ds = gen.build_datasets(cfg, 0)["od_easy"]
    batch = alg.collate([ds[i] for i in range(4)])
    out = spec.compute(net, batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_tiny_run_results_eval_and_curve(tmp_path) -> None:
    cfg = tiny_config(epochs=2)
    res = fit(get_task("reduce"), cfg, tmp_path / "run")
    assert res["status"] == "finished" and res["selection"]["metric"] == "od_easy/select"
    for split in ("id", "od_easy", "od_hard", "test"):
        assert {"seq_acc", "tok_acc"} <= set(res["splits"][split])
        assert 0.0 <= res["splits"][split]["seq_acc"] <= res["splits"][split]["tok_acc"] <= 1.0
    scores = evaluate(
        tmp_path / "run", options={"digits": "14-15", "count": 16}, spec=get_task("reduce")
    )
    ((name, custom),) = scores.items()  # one extra set, named by the engine
    assert "14-15" in name and 0.0 <= custom["seq_acc"] <= custom["tok_acc"] <= 1.0
    curve = gen.length_curve(tmp_path / "run", count=8)
    assert curve["sizes"] == list(range(1, 14)) and curve["train_max"] == 10
    assert curve["seq_acc"][0] is None  # every 1-digit problem is in the training set
    assert all(v is not None for v in curve["seq_acc"][3:])
    assert json.loads((tmp_path / "run" / gen.CURVE_FILE).read_text())["count"] == 8
    png = gen.plot_length_curves([tmp_path / "run"], tmp_path / "curve.png", count=8)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="run_dirs"):
        gen.plot_length_curves([tmp_path], tmp_path / "x.png")


def test_resume_equals_uninterrupted(tmp_path) -> None:
    full = fit(get_task("reduce"), tiny_config(epochs=2), tmp_path / "full")
    fit(get_task("reduce"), tiny_config(epochs=1), tmp_path / "part")
    resumed = fit(get_task("reduce"), tiny_config(epochs=2), tmp_path / "part", resume=True)
    assert resumed["splits"] == full["splits"]
    assert resumed["selected_epoch"] == full["selected_epoch"]


def test_reproduce_writes_the_report(tmp_path) -> None:
    fn = get_reproducer("generalization")
    over = [*TINY_DATA, *TINY_LSTM, *QUIET, "trainer.max_epochs=1"]
    path = fn("quick", tmp_path, tasks=["reduce"], models=["lstm"], overrides=over, curve_count=4)
    text = path.read_text()
    assert "| Reduce | OD-hard |" in text and "(63.6)" in text  # ours beside the paper's LSTM
    assert "Wall-clock" in text and (tmp_path / "length_reduce.png").is_file()
    # a second invocation skips the finished run and rewrites the same table
    again = fn("quick", tmp_path, tasks=["reduce"], models=["lstm"], overrides=over, curve_count=4)
    assert again.read_text().split("## Quality")[0] == text.split("## Quality")[0]


def test_errors_list_the_choices() -> None:
    with pytest.raises(ValueError, match="valid choices"):
        get_task("sorting")
    with pytest.raises(ConfigError, match="valid choices"):
        resolve_config(get_task("reduce"), "quick", model="gpt")
    with pytest.raises(ConfigError, match="valid choices: medium, paper, quick"):
        resolve_config(get_task("reduce"), "huge", model="lstm")
    with pytest.raises(ConfigError, match="unknown key"):
        resolve_config(get_task("reduce"), "quick", ["optim.lrr=1"], model="lstm")
    with pytest.raises(ValueError, match="tasks"):
        gen.reproduce("quick", "/nonexistent", tasks=["sorting"])
    with pytest.raises(ValueError, match="preset"):
        gen.reproduce("huge", "/nonexistent")


def test_paper_table_is_complete() -> None:
    assert len(gen.PAPER_TABLE2) == 11 * 7
    assert gen.PAPER_TABLE2[("Fib", "OD-hard", "NAM-TM")] == 71.5
    assert gen.PAPER_TABLE2[("Palin", "OD-hard", "TF")] == 19.0


def test_demo_runs_end_to_end_on_tiny_data(tmp_path, monkeypatch, capsys) -> None:
    from neural_attention_memory.experiments import demo

    tiny = (*TINY_DATA, "data.splits.train.count=64", *QUIET, "trainer.max_epochs=1")
    monkeypatch.setattr(demo, "DEMO_OVERRIDES", tiny)
    report = demo.run_demo(tmp_path, curve_count=4)
    out = capsys.readouterr().out
    for label in ("NAM-TM", "LSTM", "TF"):
        assert f"| {label} |" in out
    assert report.is_file() and (tmp_path / "demo_reduce.png").is_file()


def test_cli_plot_and_errors(tmp_path) -> None:
    from typer.testing import CliRunner

    from neural_attention_memory.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["plot", str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "run_dirs" in res.output
    res = runner.invoke(app, ["train", "sorting"])
    assert res.exit_code == 2 and "valid choices" in res.output and "reduce" in res.output
    res = runner.invoke(app, ["train", "reduce", "--model", "gpt"])
    assert res.exit_code == 2 and "nam-tm" in res.output
    fit(get_task("reduce"), tiny_config(), tmp_path / "run")
    out = tmp_path / "plot.png"
    res = runner.invoke(app, ["plot", str(tmp_path / "run"), "--out", str(out), "--count", "4"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:4] == b"\x89PNG"
