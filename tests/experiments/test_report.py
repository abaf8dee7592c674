"""Report writers: Markdown tables, ours-beside-paper cells, PNG plots, atomic writes."""

from __future__ import annotations

import json
import math

import pytest

from neural_attention_memory.experiments.report import (
    comparison_table,
    format_params,
    format_seconds,
    markdown_table,
    results_table,
    save_bar_plot,
    save_line_plot,
    write_markdown,
)
from neural_attention_memory.training import atomic_write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_markdown_table_layout():
    text = markdown_table(["Model", "Acc", "Note"], [["nam", 0.12345, None], ["a|b", 3, "x"]])
    lines = text.strip().split("\n")
    assert lines[0] == "| Model | Acc | Note |"
    assert lines[1] == "|:---|---:|---:|"
    assert lines[2] == "| nam | 0.1 | — |"
    assert lines[3] == "| a\\|b | 3 | x |"
    with pytest.raises(ValueError, match=r"rows\[0\]: expected 3 cells, got 2"):
        markdown_table(["a", "b", "c"], [[1, 2]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a"], [[1]], align=["x"])


def test_comparison_table_ours_beside_paper():
    rows = [("Palin", "ID"), ("Palin", "OD-hard")]
    ours = {("Palin", "ID", "TF"): 1.0, ("Palin", "OD-hard", "TF"): 0.1234}
    paper = {("Palin", "ID", "TF"): 100.0, ("Palin", "OD-hard", "TF"): 19.0}
    text = comparison_table(rows, ["TF", "NAM-TM"], ours, paper)
    assert "| Palin | ID | 100.0 (100.0) | — (—) |" in text
    assert "| Palin | OD-hard | 12.3 (19.0) | — (—) |" in text
    assert "(" not in comparison_table(rows, ["TF"], ours).split("\n", 2)[2]
    with pytest.raises(ValueError, match="row_keys"):
        comparison_table([("Palin",)], ["TF"], ours)


def test_results_table_and_formatters():
    res = {
        "task": "reduce",
        "model": "nam_tm",
        "selected_epoch": 4,
        "num_params": 1_234_567,
        "wall_clock_s": 75.0,
        "splits": {"id": {"seq_acc": 0.5, "loss": 0.25}, "od_hard": {"seq_acc": 1.0, "loss": 0.1}},
    }
    text = results_table([res])
    assert "| Task | Model | Split | seq_acc | loss | Epoch | Params | Time |" in text
    assert "| reduce | nam_tm | id | 50.0 | 0.2500 | 4 | 1.2M | 1m15s |" in text
    assert "| reduce | nam_tm | od_hard | 100.0 |" in text
    running = dict(res, status="running", epochs_completed=3, max_epochs=10)
    assert "| running 3/10 |" in results_table([running], status=True)
    assert format_params(12_345) == "12.3k" and format_params(None) == "—"
    assert format_seconds(4000) == "1h06m" and format_seconds(math.nan) == "—"


def test_plots_are_pngs(tmp_path):
    p = save_line_plot(
        tmp_path / "a" / "line.png",
        {"nam": ([1, 2, 3], [1.0, None, 0.5]), "tf": ([1, 2, 3], [1.0, 0.2, 0.0])},
        xlabel="digits",
        ylabel="sequence accuracy",
        title="t",
        ylim=(0, 1),
        vlines=[2],
    )
    assert p.read_bytes()[:8] == PNG_MAGIC
    b = save_bar_plot(
        tmp_path / "bar.png", ["ID", "OD"], {"nam": [1.0, 0.9], "tf": [1.0, None]}, ylabel="acc"
    )
    assert b.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="2 x values but 1 y values"):
        save_line_plot(tmp_path / "x.png", {"a": ([1, 2], [1])}, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="expected 2 values"):
        save_bar_plot(tmp_path / "y.png", ["a", "b"], {"s": [1]}, ylabel="y")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_atomic_writes_keep_old_file_on_failure(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"a": 1, "nan": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1, "nan": None}
    with pytest.raises(TypeError, match="cannot serialise"):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1, "nan": None}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp files left
    md = write_markdown(tmp_path / "r.md", "# hi\n")
    assert md.read_text() == "# hi\n"
