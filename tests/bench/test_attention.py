"""The attention benchmark: equivalence gate, refusal of a wrong fast path, outputs written."""

import json

from typer.testing import CliRunner

from neural_attention_memory.bench import attention as bench
from neural_attention_memory.bench.common import format_table, peak_memory_mb, time_fn
from neural_attention_memory.cli import app


def test_every_nam_form_matches_its_twin():
    errors = bench.check_equivalence()
    assert set(errors) == {"nam", "chunk", "chunk-gated", "recurrent"}
    assert all(e < 1e-10 for e in errors.values()), errors


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
    res = bench.run(out_dir=tmp_path, lengths=(32, 64), forms=forms, reps=1, verbose=False)
    assert res["refused"] == ["chunk-gated"]
    assert {r["form"] for r in res["rows"]} == {"nam", "sdpa", "chunk", "sdpa-causal"}
    assert all(r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 for r in res["rows"])
    saved = json.loads((tmp_path / "attention.json").read_text())
    assert saved["ratios"]["T=64 non-causal fwd: sdpa / nam"] > 0
    assert (tmp_path / "attention.png").stat().st_size > 1000


def test_helpers():
    assert time_fn(lambda: sum(range(100)), reps=3) >= 0
    mb = peak_memory_mb(lambda: bytearray(64 * 1024 * 1024))
    assert mb is None or mb > 40
    assert format_table(["a", "b"], [[1, None]]).splitlines()[2] == "| 1 | - |"


def test_cli_unknown_benchmark_lists_choices():
    result = CliRunner().invoke(app, ["bench", "nope"])
    assert result.exit_code == 2
    assert "unknown benchmark 'nope'" in result.output and "attention" in result.output
