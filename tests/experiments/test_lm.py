"""The byte-level LM benchmark: task wiring, metrics, a budgeted run, from_run, the report."""

import json

import pytest
import torch

from neural_attention_memory.experiments import lm
from neural_attention_memory.experiments.registry import get_reproducer, get_task
from neural_attention_memory.models.lm import NAMForCausalLM
from neural_attention_memory.training import resolve_config

TINY = [
    "model.hidden_size=16",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.intermediate_size=32",
    "data.train_length=32",
    "data.eval_length=80",
    "data.val_windows=2",
    "data.test_windows=2",
    "trainer.batch_size=2",
    "trainer.limit_train_batches=2",
    "trainer.max_train_cpu_s=0.5",
    "trainer.progress_bar=false",
]


def test_task_and_presets_build_equal_sized_models_for_every_attention():
    spec = get_task("lm-pysource")
    assert spec.models == ("nam", "nam-tied", "linear", "softmax")
    for preset in ("quick", "medium"):
        sizes = {}
        for m in spec.models:
            cfg = resolve_config(spec, preset, [], model=m)
            sizes[m] = sum(p.numel() for p in spec.build_model(cfg).parameters())
        # Only the NAM gate projections differ: within 1% of each other.
        assert max(sizes.values()) / min(sizes.values()) < 1.01, sizes


def test_compute_bits_per_byte_and_position_buckets():
    torch.manual_seed(0)
    cfg = resolve_config(get_task("lm-pysource"), "quick", TINY, model="linear")
    model = lm.build_model(cfg).eval()
    ids = torch.randint(0, 256, (2, 80))
    out = lm.compute(model, {"input_ids": ids, "labels": ids})
    num, den = out.metrics["bpb"]
    torch.testing.assert_close(num / den, out.loss.detach() / torch.log(torch.tensor(2.0)))
    assert out.metrics["bpb@64-256"][1] == 2 * 16  # positions 64..79
    assert "bpb@256-1024" not in out.metrics


def test_budgeted_run_from_run_and_report(tmp_path):
    torch.set_num_threads(1)
    out = get_reproducer("lm")("quick", tmp_path / "rep", models=["nam", "softmax"], overrides=TINY)
    text = out.read_text()
    assert "| nam |" in text and "| softmax |" in text and "Which attention wins" in text
    assert (tmp_path / "rep" / "bpb_vs_cpu_time.png").is_file()
    run = tmp_path / "rep" / "lm-pysource" / "nam"
    res = json.loads((run / "results.json").read_text())
    assert res["status"] == "finished"
    last = res["history"][-1]
    # The CPU budget stopped training; the counters are in the history.
    assert last["train_cpu_s"] >= 0.5 and last["train_batches"] >= 1
    assert res["epochs_completed"] < 100_000
    model = NAMForCausalLM.from_run(run)
    assert model.config.attention == "nam" and model.config.hidden_size == 16
    again = NAMForCausalLM.from_pretrained(run)  # a run folder loads in the same call
    ids = torch.randint(0, 256, (1, 12))
    assert torch.equal(model(ids).logits, again(ids).logits)
    speed = json.loads((run / "generation_speed.json").read_text())["tokens_per_s"]
    assert set(speed) == {"64", "2048"} and all(v > 0 for v in speed.values())


def test_bad_model_name_fails_before_anything_runs(tmp_path):
    from neural_attention_memory.training.config import ConfigError

    with pytest.raises(ConfigError, match="models"):
        get_reproducer("lm")("quick", tmp_path / "x", models=["rnn"])
    assert not (tmp_path / "x").exists()
