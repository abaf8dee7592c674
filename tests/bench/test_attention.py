"""The attention benchmark: equivalence gate, refusal of a wrong fast path, outputs written."""

import json
import time

import pytest
import torch
from typer.testing import CliRunner

from neural_attention_memory.bench import attention as bench
from neural_attention_memory.bench.common import format_table, min_time_ms, peak_memory_mb, time_fn
from neural_attention_memory.cli import app


def test_every_nam_form_matches_its_twin():
    errors = bench.check_equivalence()
    assert set(errors) == {"nam", "chunk", "chunk-gated", "recurrent", "chunk-gated-bf16"}
    assert all(e < 1e-10 for n, e in errors.items() if n != "chunk-gated-bf16"), errors
    assert errors["chunk-gated-bf16"] < 2e-2  # relative, bfloat16 rounding of the output only


def test_memory_rows_run_in_a_fresh_process():
    rows = bench._memory_in_subprocess("chunk-gated", [128, 256], threads=1, batch=1)
    assert all(r["fwd_bwd_peak_mb"] is None or r["fwd_bwd_peak_mb"] > 0 for r in rows)
    assert [r.get("one_input_mb") for r in rows] == [T * 4 * 64 * 4 / 2**20 for T in (128, 256)]


def test_chunk_flops_counts_the_products():
    # T = C: one chunk per head; without erase 2 C d^2 + 2 C^2 d multiply-adds.
    assert bench.chunk_flops(64, 1, 1, 64, 64, erase=False) == 2 * (2 * 64**3 + 2 * 64**3)
    assert bench.chunk_flops(65, 2, 3, 8, 64, erase=True) == 2 * 2 * 6 * (
        3 * 64 * 64 + 5 * 64**2 * 8
    )


def test_run_writes_json_and_png_and_refuses_a_wrong_form(tmp_path):
    def wrong(q, k, v, gates):  # drops the erase gate: must be caught by the twin check
        return bench.F.chunk_causal_nam_attention(q, k, v, gates[0], None, gates[2])[0]

    forms = {
        "nam": bench.FORMS["nam"],
        "sdpa": bench.FORMS["sdpa"],
        "chunk": bench.FORMS["chunk"],
        "sdpa-causal": bench.FORMS["sdpa-causal"],
        "chunk-gated": bench.Form(
            wrong, causal=True, layout="bthd", gated=True, twin=bench.F.naive_causal_nam_attention
        ),
    }
    res = bench.run(
        out_dir=tmp_path, lengths=(32, 64), forms=forms, reps=1, verbose=False, memory=False
    )
    assert res["refused"] == ["chunk-gated"]
    assert {r["form"] for r in res["rows"]} == {"nam", "sdpa", "chunk", "sdpa-causal"}
    assert all(r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 for r in res["rows"])
    saved = json.loads((tmp_path / "attention.json").read_text())
    assert saved["ratios"]["T=64 non-causal fwd: sdpa / nam"] > 0
    assert saved["ratios"]["T=64 causal fwd: sdpa-causal / chunk"] > 0
    assert saved["rows"][0]["fwd_bwd_peak_mb"] is None  # memory=False
    assert {r["form"] for r in saved["rows"] if "fwd_gflops" in r} == {"chunk"}
    assert (tmp_path / "attention.png").stat().st_size > 1000


def test_helpers():
    # Median milliseconds: a 5 ms sleep measures at least 5 ms (and not seconds).
    assert 5.0 <= time_fn(lambda: time.sleep(0.005), reps=3, clock="wall") < 1000.0
    # Fastest of N: warmup runs are not timed; a bad count is refused.
    calls = []
    assert min_time_ms(lambda: calls.append(1), reps=3, warmup=2) >= 0
    assert len(calls) == 5
    with pytest.raises(ValueError, match="reps: expected >= 1, got 0"):
        min_time_ms(lambda: None, reps=0)
    mb = peak_memory_mb(lambda: bytearray(64 * 1024 * 1024))
    assert mb is None or mb > 40
    assert format_table(["a", "b"], [[1, None]]).splitlines()[2] == "| 1 | - |"


def test_cli_unknown_benchmark_lists_choices():
    result = CliRunner().invoke(app, ["bench", "nope"])
    assert result.exit_code == 2
    assert "unknown benchmark 'nope'" in result.output and "attention" in result.output


def test_device_benchmark_runs_on_the_cpu(tmp_path):
    from neural_attention_memory.bench.attention_device import run_device

    res = run_device(
        "cpu", lengths=(32,), B=1, dtypes=(torch.float32,), reps=1, out=tmp_path / "d.json"
    )
    assert {r["form"] for r in res["rows"]} == {"chunk-gated (pytorch)", "sdpa-causal"}
    assert all(r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 for r in res["rows"])
    assert json.loads((tmp_path / "d.json").read_text())["rows"]
