"""Readers for user-provided LRA data, on tiny fixture files in each official format."""

import pickle

import numpy as np
import pytest
import torch

from neural_attention_memory.tasks.lra import (
    MissingDataError,
    PairDataset,
    collate_pairs,
    encode_bytes,
    read_aan,
    read_cifar10_grey,
    read_imdb,
)


def test_imdb_raw_folder(tmp_path) -> None:
    for split in ("train", "test"):
        for sub, texts in (("pos", ["great film", "loved it"]), ("neg", ["awful"])):
            d = tmp_path / "aclImdb" / split / sub
            d.mkdir(parents=True)
            for i, t in enumerate(texts):
                (d / f"{i}_7.txt").write_text(t)
    texts, labels = read_imdb(tmp_path, "train")
    assert texts == ["awful", "great film", "loved it"] and labels.tolist() == [0, 1, 1]


def test_imdb_tsv_and_errors(tmp_path) -> None:
    with pytest.raises(MissingDataError, match=r"aclImdb.*imdb/\{train,test\}\.tsv"):
        read_imdb(tmp_path, "train")
    (tmp_path / "imdb").mkdir()
    (tmp_path / "imdb" / "test.tsv").write_text('label\ttext\n1\tnice "quoted" one\n0\tbad\n')
    texts, labels = read_imdb(tmp_path, "test")
    assert texts == ['nice "quoted" one', "bad"] and labels.tolist() == [1, 0]
    (tmp_path / "imdb" / "train.tsv").write_text("label\ttext\n2\tbad label\n")
    with pytest.raises(ValueError, match="train.tsv:2"):
        read_imdb(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        read_imdb(tmp_path, "val")


def test_byte_encoding() -> None:
    ids = encode_bytes("aé", max_len=None)
    assert ids.tolist() == [ord("a") + 1, 0xC3 + 1, 0xA9 + 1]
    assert encode_bytes("abcdef", max_len=3).tolist() == [98, 99, 100]


def test_aan_tsv_and_pairs(tmp_path) -> None:
    with pytest.raises(MissingDataError, match="new_aan_pairs.train.tsv"):
        read_aan(tmp_path, "train")
    d = tmp_path / "tsv_data"
    d.mkdir()
    (d / "new_aan_pairs.eval.tsv").write_text(
        "1.0\tP00-1001\tP01-2002\tfirst paper text\tsecond one\n"
        "0\tP00-1003\tP02-0004\tthird\tfourth text here\n"
    )
    t1, t2, labels = read_aan(tmp_path, "eval")
    assert t1 == ["first paper text", "third"] and t2[1] == "fourth text here"
    assert labels.tolist() == [1, 0]
    ds = PairDataset([encode_bytes(t) for t in t1], [encode_bytes(t) for t in t2], labels)
    batch = collate_pairs([ds[0], ds[1]])
    assert batch["tokens1"].shape == (2, len("first paper text"))
    assert batch["mask2"].sum().item() == len("fourth text here") - len("second one")
    (d / "new_aan_pairs.test.tsv").write_text("1\tonly\tthree\n")
    with pytest.raises(ValueError, match="expected 5 tab-separated columns"):
        read_aan(tmp_path, "test")


def _write_cifar(folder, names, n=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in names:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        with (folder / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": list(range(n)), b"batch_label": b"x"}, f)


def test_cifar_grey(tmp_path) -> None:
    with pytest.raises(MissingDataError, match="data_batch_1"):
        read_cifar10_grey(tmp_path, "train")
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, ["test_batch"])
    images, labels = read_cifar10_grey(tmp_path, "test")
    assert (
        images.shape == (4, 32, 32) and images.dtype == np.uint8 and labels.tolist() == [0, 1, 2, 3]
    )
    with (folder / "test_batch").open("rb") as f:
        raw = pickle.load(f)[b"data"][1].reshape(3, 32, 32).astype(float)
    expect = 0.2989 * raw[0] + 0.5870 * raw[1] + 0.1140 * raw[2]
    assert np.abs(images[1].astype(float) - expect).max() <= 0.5 + 1e-9
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python pickle"):
        read_cifar10_grey(tmp_path, "test")
    assert torch.is_tensor(torch.from_numpy(images))
