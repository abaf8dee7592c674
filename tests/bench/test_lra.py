"""`nam bench lra`: files, rows, ratios and the refusal of a kernel that fails its check."""

import json

import pytest

from neural_attention_memory.bench import lra as bench_lra
from neural_attention_memory.bench.registry import get_benchmark


def test_kernels_match_their_references() -> None:
    errors = bench_lra.check_kernels()
    assert set(errors) == {"nam", "linear"}
    assert all(e < 1e-9 for e in errors.values())


def test_tiny_sweep_writes_json_and_png(tmp_path) -> None:
    assert get_benchmark("lra") is bench_lra.run
    res = bench_lra.run(out_dir=tmp_path, lengths=(32, 64), reps=1, verbose=False)
    data = json.loads((tmp_path / "lra.json").read_text())
    assert (tmp_path / "lra.png").stat().st_size > 1000
    assert {(r["model"], r["T"]) for r in data["rows"]} == {
        (m, t) for m in bench_lra.MODELS for t in (32, 64)
    }
    assert all(r["step_ms"] > 0 for r in data["rows"])
    assert data["ratios"]["T=64 step: softmax / nam"] == pytest.approx(
        next(r["step_ms"] for r in res["rows"] if r["model"] == "softmax" and r["T"] == 64)
        / next(r["step_ms"] for r in res["rows"] if r["model"] == "nam" and r["T"] == 64)
    )
    assert set(data["targets"]) >= {"T=64 step: softmax / nam", "T=64 peak: softmax / nam"}


def test_refuses_a_kernel_that_fails_its_check(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bench_lra, "check_kernels", lambda: {"nam": 0.5, "linear": 0.0})
    res = bench_lra.run(
        out_dir=tmp_path, lengths=(32,), reps=1, models=("nam", "softmax"), verbose=False
    )
    assert res["refused"] == ["nam"]
    assert [r["model"] for r in res["rows"]] == ["softmax"]
    assert res["ratios"]["T=32 step: softmax / nam"] is None


def test_validation(tmp_path) -> None:
    with pytest.raises(ValueError, match="models"):
        bench_lra.run(out_dir=tmp_path, lengths=(32,), models=("performer",))
    with pytest.raises(ValueError, match="lengths"):
        bench_lra.run(out_dir=tmp_path, lengths=(100_000,))
