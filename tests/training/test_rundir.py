"""Atomic writes never corrupt a run directory; meta holds versions and the git state."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from neural_attention_memory.training import rundir
from neural_attention_memory.training.rundir import (
    atomic_write_json,
    atomic_write_yaml,
    collect_meta,
    read_config,
    read_results,
    to_jsonable,
)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"status": "running", "epoch": 1})

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"status": "finished", "epoch": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"status": "running", "epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_serialisation_error_keeps_previous_yaml(tmp_path):
    path = tmp_path / "config.yaml"
    atomic_write_yaml(path, {"seed": 0, "model": {"name": "nam-tm", "sizes": (1, 2)}})
    assert yaml.safe_load(path.read_text()) == {
        "seed": 0,
        "model": {"name": "nam-tm", "sizes": [1, 2]},
    }
    with pytest.raises(TypeError, match="cannot serialise object of type set"):
        atomic_write_yaml(path, {"seed": {1, 2}})
    assert read_config(tmp_path)["seed"] == 0


def test_to_jsonable_and_readers(tmp_path):
    import torch

    assert to_jsonable({"a": torch.tensor(1.5), "b": float("inf"), "c": tmp_path}) == {
        "a": 1.5,
        "b": None,
        "c": str(tmp_path),
    }
    assert read_results(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        read_config(tmp_path)
    (tmp_path / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="config mapping"):
        read_config(tmp_path)


def test_meta_has_versions_and_git(monkeypatch):
    meta = collect_meta(7, {"task": "reduce"})
    assert meta["seed"] == 7 and meta["task"] == "reduce"
    for key in (
        "python",
        "torch",
        "lightning",
        "platform",
        "started",
        "command",
        "git_sha",
        "git_dirty",
    ):
        assert key in meta
    # Inside this checkout the SHA is a 40-hex string; outside a checkout it is None.
    assert meta["git_sha"] is None or len(meta["git_sha"]) == 40
    monkeypatch.setattr(rundir.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    assert rundir.git_sha() is None and rundir.git_dirty() is None
