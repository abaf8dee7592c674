"""Python-stdlib byte corpus: fixed list, path-hash split, windows."""

import pytest
import torch

from neural_attention_memory.tasks.pysource import (
    FILES,
    SPLITS,
    ByteWindows,
    corpus_digest,
    load_split,
    split_of,
)


def test_split_is_a_function_of_the_path_and_roughly_80_10_10():
    assert split_of("json/decoder.py") == split_of("json/decoder.py")
    counts = {s: sum(split_of(f) == s for f in FILES) for s in SPLITS}
    assert len(set(FILES)) == len(FILES) > 150
    assert counts["train"] > 0.7 * len(FILES) and counts["val"] >= 8 and counts["test"] >= 8


def test_splits_are_disjoint_and_present_here():
    used = {}
    for s in SPLITS:
        data, files, missing = load_split(s)
        assert len(data) > 100_000 and not missing
        used[s] = set(files)
    assert not (used["train"] & used["val"]) and not (used["train"] & used["test"])
    assert corpus_digest() == corpus_digest()


def test_load_split_errors(tmp_path):
    with pytest.raises(ValueError, match="split: expected one of"):
        load_split("dev")
    with pytest.raises(ValueError, match="root: no train file"):
        load_split("train", tmp_path)
    (tmp_path / "os.py").write_text("x = 1\n")  # a file whose split is known
    data, files, missing = load_split(split_of("os.py"), tmp_path)
    assert files == ["os.py"] and data == b"x = 1\n" and len(missing) > 0


def test_byte_windows_cover_every_target_once():
    data = bytes(range(50))
    ds = ByteWindows(data, 8, offset=1)
    assert len(ds) == (50 - 1 - 1) // 8
    item = ds[0]
    assert item["input_ids"].tolist() == list(range(1, 9))
    assert item["labels"].tolist() == list(range(2, 10))
    targets = torch.cat([ds[i]["labels"] for i in range(len(ds))]).tolist()
    assert targets == list(range(2, 2 + 8 * len(ds)))
    assert len(ByteWindows(data, 4, max_windows=3)) == 3
    with pytest.raises(ValueError, match="length: expected a positive int"):
        ByteWindows(data, 0)
    with pytest.raises(ValueError, match="data: expected more than"):
        ByteWindows(b"abc", 8)
