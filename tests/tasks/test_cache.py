import json

import pytest

from neural_attention_memory.tasks.cache import cached_dataset, read_manifest


def test_builds_once_and_reuses(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "data.txt").write_text("x")
        return {"train": 1}

    a = cached_dataset("toy", "1", {"seed": 0}, build, root=tmp_path)
    b = cached_dataset("toy", "1", {"seed": 0}, build, root=tmp_path)
    assert a == b and len(calls) == 1
    assert read_manifest(a)["counts"] == {"train": 1}
    c = cached_dataset("toy", "1", {"seed": 1}, build, root=tmp_path)
    d = cached_dataset("toy", "2", {"seed": 0}, build, root=tmp_path)
    assert len({a, c, d}) == 3 and len(calls) == 3


def test_failed_build_leaves_nothing(tmp_path):
    def build(folder):
        (folder / "partial").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cached_dataset("toy", "1", {"seed": 0}, build, root=tmp_path)
    assert list((tmp_path / "toy").iterdir()) == []


def test_corrupt_manifest_rebuilds(tmp_path):
    n = []

    def build(folder):
        n.append(1)
        return {}

    f = cached_dataset("toy", "1", {}, build, root=tmp_path)
    (f / "manifest.json").write_text("{not json")
    assert cached_dataset("toy", "1", {}, build, root=tmp_path) == f
    assert len(n) == 2 and json.loads((f / "manifest.json").read_text())["version"] == "1"


def test_bad_name(tmp_path):
    with pytest.raises(ValueError, match="name"):
        cached_dataset("a/b", "1", {}, lambda f: {}, root=tmp_path)
