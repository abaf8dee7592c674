"""`nam probe`: head alignment of a NAM-TM run (experiments/generalization/heads.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from neural_attention_memory.cli import app
from neural_attention_memory.experiments.generalization.heads import (
    format_alignment,
    head_alignment,
)
from neural_attention_memory.experiments.registry import get_task
from neural_attention_memory.training import ConfigError, fit, resolve_config

TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "data.splits.train.count=64",
    "data.splits.id.count=8",
    "data.splits.od_easy.count=8",
    "data.splits.od_hard.count=8",
    "data.splits.test.count=8",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("heads")
    out = {}
    for task, model in (("palin", "nam-tm"), ("palin", "lstm")):
        spec = get_task(task)
        out[(task, model)] = root / task / model
        fit(spec, resolve_config(spec, "quick", TINY, model=model), out[(task, model)])
    return out


def test_probe_measures_every_tape_of_every_layer(runs):
    res = head_alignment(runs[("palin", "nam-tm")], digits=4, count=16)
    assert res["task"] == "palin" and res["digits"] == 4 and res["count"] == 16
    assert 0.0 <= res["seq_acc"] <= 1.0 and 0.0 <= res["tok_acc"] <= 1.0
    assert [layer["layer"] for layer in res["layers"]] == [1, 2]
    for layer in res["layers"]:
        assert len(layer["tapes"]) == 4  # the quick NAM-TM: 4 tapes
        for t in layer["tapes"]:
            assert 0.0 < t["distinct_cells"] <= 1.0
            assert 0.0 <= t["hit_a"] <= 1.0 and 0.0 <= t["hit_b"] <= 1.0
            assert 0.0 < t["write_head_max"] <= 1.0 + 1e-6
            assert 0.0 <= t["p_w"] <= 1.0 and 0.0 <= t["p_r"] <= 1.0
    table = format_alignment(res)
    assert "overlap d_(n-1-j) / d_j" in table and table.count("\n| ") == 9


def test_probe_refuses_what_it_cannot_measure(runs, tmp_path):
    with pytest.raises(ConfigError, match="the probe needs a NAM-TM run, got model 'lstm'"):
        head_alignment(runs[("palin", "lstm")])
    with pytest.raises(ConfigError, match="digits: expected an int >= 1, got 0"):
        head_alignment(runs[("palin", "nam-tm")], digits=0)
    with pytest.raises(ConfigError, match="checkpoint: expected 'best' or 'last'"):
        head_alignment(runs[("palin", "nam-tm")], checkpoint="first")
    res = CliRunner().invoke(app, ["probe", str(runs[("palin", "lstm")])])
    assert res.exit_code == 2 and "the probe needs a NAM-TM run" in res.output
    res = CliRunner().invoke(app, ["probe", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_probe_cli_prints_the_table_and_writes_json(runs, tmp_path):
    out = tmp_path / "probe.json"
    res = CliRunner().invoke(
        app,
        [
            "probe",
            str(runs[("palin", "nam-tm")]),
            "--digits",
            "3",
            "--count",
            "8",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "| layer | tape | distinct cells" in res.output
    assert out.is_file() and '"digits": 3' in out.read_text()


def test_a_hit_needs_the_needed_token_to_stand_out():
    from neural_attention_memory.experiments.generalization.heads import _hits

    n, tokens = 3, 7
    rows, src_a, src_b = np.arange(n), np.array([0, 1, 2]), np.array([4, 5, 6])
    aligned = torch.zeros(2, n, tokens)
    aligned[:, rows, src_a] = 1.0  # each slot reads exactly the cell of its a_j
    res = _hits(aligned, rows, src_a, src_b, "")
    assert res == {"overlap_a": 1.0, "overlap_b": 0.0, "hit_a": 1.0, "hit_b": 0.0}
    piled = torch.ones(2, n, tokens)  # every token written to one cell: all overlaps tie
    assert _hits(piled, rows, src_a, src_b, "")["hit_a"] == 0.0
    assert _hits(None, rows, src_a, src_b, "prev_") == dict.fromkeys(
        ["prev_overlap_a", "prev_overlap_b", "prev_hit_a", "prev_hit_b"]
    )
