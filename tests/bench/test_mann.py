"""``nam bench mann``: output files, rows, ratios, and refusal of a fast path that disagrees."""

import json
import sys

import torch

from neural_attention_memory.bench import mann
from neural_attention_memory.bench.registry import get_benchmark
from neural_attention_memory.models import lsam

TINY = (("quick", 2, 5),)


def test_registered():
    assert get_benchmark("mann") is mann.run


def test_equivalence_check_passes_for_the_real_fast_paths():
    errors = mann.check_equivalence()
    assert set(errors) == {"lsam", "nam-tm-2022", "nam-tm-2023"}
    assert all(e < mann.TOL for e in errors.values()), errors


def test_equivalence_check_catches_a_broken_fast_path(monkeypatch):
    original = lsam._fast_direction

    def broken(*args, **kw):
        out, M, h = original(*args, **kw)
        return out * 1.001, M, h

    monkeypatch.setattr(lsam, "_fast_direction", broken)
    assert mann.check_equivalence(("lsam",))["lsam"] > mann.TOL


def test_equivalence_check_catches_a_broken_lsam_kernel(monkeypatch):
    # Only the kernel path is wrong (the PyTorch loop is right): still refused.
    original = lsam._kernel_forward

    def broken(*args):
        out, M, h, saved = original(*args)
        return out * 1.001, M, h, saved

    monkeypatch.setattr(lsam, "_kernel_forward", broken)
    errors = mann.check_equivalence(("lsam",))
    if lsam._lsam_kernel.get() is not None:
        assert errors["lsam"] > mann.TOL


def test_run_writes_json_png_rows_and_ratios(tmp_path, capsys):
    result = mann.run(quick=True, out_dir=tmp_path, shapes=TINY, reps=1, memory=False)
    saved = json.loads((tmp_path / "mann.json").read_text())
    assert (tmp_path / "mann.png").stat().st_size > 0
    assert saved["rows"] == result["rows"]
    impls = {(r["family"], r["impl"]) for r in result["rows"]}
    want = {(f, i) for f in mann.FAMILIES for i in ("fast", "torch", "reference", "nn.LSTM")}
    assert impls == want
    assert all(r["step_ms"] > 0 for r in result["rows"])
    assert set(result["targets"]) == {
        "quick: lsam fast / nn.LSTM (step)",
        "quick: nam-tm-2022 fast / nn.LSTM (step)",
        "quick: nam-tm-2023 fast / nn.LSTM (step)",
    }
    for family in mann.FAMILIES:
        assert f"quick: {family} torch loop / kernel (step)" in result["ratios"]
    peers = {r["width"] for r in result["rows"] if r["impl"] == "nn.LSTM"}
    assert peers == {256, 128}  # same width as the model, 2 layers
    assert torch.get_num_threads() == 1
    assert "| quick | lsam | fast |" in capsys.readouterr().out


def test_peak_memory_probe_runs_in_a_fresh_process(capsys):
    from neural_attention_memory.bench import common

    row = {"size": "quick", "family": "lsam", "impl": "fast", "B": 2, "T": 4}
    peak = mann._peak_in_subprocess(row, threads=1)
    if not (sys.platform.startswith("linux") and common._CLEAR_REFS.exists()):
        assert peak is None  # the probe says "not measured" where it cannot measure
    else:
        # A training step allocates activations, gradients and Adam's moments, but a tiny one
        # stays far below a GiB.
        assert isinstance(peak, float) and 0.0 < peak < 1024.0
    # A row that cannot be built is reported as not measured, never as a number.
    bad = {**row, "family": "no-such-model"}
    assert mann._peak_in_subprocess(bad, threads=1) is None
    assert "peak memory of no-such-model fast not measured" in capsys.readouterr().out


def test_refuses_to_time_a_failing_fast_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mann, "check_equivalence", lambda names: {"lsam": 0.5, "nam-tm-2023": 0.0})
    result = mann.run(
        quick=True,
        out_dir=tmp_path,
        shapes=TINY,
        reps=1,
        memory=False,
        families=("lsam", "nam-tm-2023"),
    )
    assert result["refused"] == ["lsam"]
    assert {r["family"] for r in result["rows"]} == {"nam-tm-2023"}
    assert "refusing to time 'lsam'" in capsys.readouterr().out
