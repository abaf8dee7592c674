"""`experiments.lra.diagnostics.attention_scale`: attention output vs residual stream."""

import pytest
import torch

from neural_attention_memory.experiments.lra.diagnostics import attention_scale


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_attention_scale_fresh_encoders():
    rows = attention_scale(
        "lra-listops", presets=("quick",), models=("nam-transformer", "softmax-transformer"),
        batch_size=4,
    )  # fmt: skip
    assert [(r["model"], r["state"], r["preset"]) for r in rows] == [
        ("nam-transformer", "init", "quick"),
        ("softmax-transformer", "init", "quick"),
    ]
    nam, soft = rows
    assert nam["batch_shape"] == soft["batch_shape"] and nam["batch_shape"][0] == 4
    for r in rows:
        assert len(r["blocks"]) == 2  # the quick ListOps encoder has two layers
        assert r["grad_norm"] > 0 and r["loss"] > 0
    # same seed, same embedding: the stream entering block 1 is identical
    assert nam["blocks"][0]["residual_rms"] == pytest.approx(soft["blocks"][0]["residual_rms"])
    # NAM sums over the sequence, softmax averages: its output is far larger
    assert nam["blocks"][0]["attn_rms"] > 5 * soft["blocks"][0]["attn_rms"]
    # the measurement is deterministic (eval mode, fixed seed)
    again = attention_scale("lra-listops", ("quick",), ("nam-transformer",), batch_size=4)
    assert again[0]["blocks"] == nam["blocks"]


def test_attention_scale_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="models: expected names"):
        attention_scale("lra-listops", ("quick",), ("lstm",))
    with pytest.raises(ValueError, match="batch_size: expected >= 1, got 0"):
        attention_scale("lra-listops", ("quick",), batch_size=0)
    with pytest.raises(ValueError, match="checkpoint: expected 'best' or 'last', got 'first'"):
        attention_scale("lra-listops", ("quick",), checkpoint="first")
    with pytest.raises(FileNotFoundError, match="run_dirs: expected a run folder with best.ckpt"):
        attention_scale("lra-listops", ("quick",), (), run_dirs=[tmp_path])


def test_attention_scale_of_a_trained_run(tmp_path):
    from neural_attention_memory.experiments.registry import get_task
    from neural_attention_memory.training import fit, resolve_config

    tiny = [
        "model.d_model=16", "model.num_layers=1", "model.num_heads=2", "model.d_ff=32",
        "trainer.progress_bar=false", "trainer.batch_size=8", "trainer.max_epochs=1",
        "data.min_length=10", "data.max_length=40", "data.train=16", "data.val=8", "data.test=8",
    ]  # fmt: skip
    spec = get_task("lra-listops")
    cfg = resolve_config(spec, "quick", tiny, model="nam-transformer")
    fit(spec, cfg, tmp_path / "run")
    rows = attention_scale(
        "lra-listops", ("quick",), (), run_dirs=[tmp_path / "run"], batch_size=4,
        overrides=["data.min_length=10", "data.max_length=40"],
    )  # fmt: skip
    (row,) = rows
    last = attention_scale(
        "lra-listops", ("quick",), (), run_dirs=[tmp_path / "run"], batch_size=4,
        overrides=["data.min_length=10", "data.max_length=40"], checkpoint="last",
    )  # fmt: skip
    # one epoch: the selected epoch is the last one
    assert last[0]["blocks"] == row["blocks"]
    assert (row["model"], row["state"], row["preset"]) == (
        "nam-transformer", str(tmp_path / "run"), "quick",
    )  # fmt: skip
    assert len(row["blocks"]) == 1 and row["blocks"][0]["attn_rms"] > 0
