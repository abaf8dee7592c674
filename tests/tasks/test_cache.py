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


def test_cache_of_user_files_notices_added_changed_and_deleted_files(tmp_path):
    import os

    src = tmp_path / "images" / "class_a"
    src.mkdir(parents=True)
    (src / "1.png").write_bytes(b"one")
    builds = []

    def build(folder):
        files = sorted(p.name for p in src.iterdir())
        builds.append(files)
        (folder / "list.txt").write_text(",".join(files))
        return {"files": len(files)}

    def load():
        return cached_dataset("imgs", "1", {}, build, root=tmp_path / "cache", sources=[src.parent])

    first = load()
    assert load() == first and len(builds) == 1  # unchanged files: reused
    (src / "2.png").write_bytes(b"two")  # added
    assert load() != first and builds[-1] == ["1.png", "2.png"]
    (src / "1.png").write_bytes(b"ONE!")  # changed size
    load()
    st = (src / "2.png").stat()
    os.utime(src / "2.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same size, new mtime
    load()
    (src / "2.png").unlink()  # deleted
    assert (load() / "list.txt").read_text() == "1.png"
    assert len(builds) == 5
    assert read_manifest(load())["params"]["sources_fingerprint"]
    with pytest.raises(FileNotFoundError, match="sources"):
        cached_dataset("imgs", "1", {}, build, root=tmp_path / "cache", sources=[tmp_path / "no"])
