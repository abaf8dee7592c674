"""Readers for the LRA tasks built on public data sets the user provides (nothing is downloaded).

- **Text** (IMDB sentiment at byte level): the raw ``aclImdb/{train,test}/{pos,neg}/*.txt`` folder,
  or TSV files ``imdb/{train,test}.tsv`` with a ``label<TAB>text`` header.
- **Retrieval** (AAN citation pairs): LRA's ``tsv_data/new_aan_pairs.{train,eval,test}.tsv``, five
  tab-separated columns without header ``label id1 id2 text1 text2``.
- **Image** (CIFAR-10 in grey): the python pickles ``cifar-10-batches-py/{data_batch_1..5,test_batch}``,
  converted to 1,024 grey levels with ITU-R 601 luma weights (as ``tf.image.rgb_to_grayscale``).

Text is tokenised as bytes (UTF-8), shifted by one so that id 0 stays free for padding.
A missing file raises :class:`MissingDataError` naming the files needed and where to put them.
"""

from __future__ import annotations

import csv
import os
import pickle
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "BYTE_VOCAB_SIZE",
    "MissingDataError",
    "encode_bytes",
    "read_aan",
    "read_cifar10_grey",
    "read_imdb",
]

BYTE_VOCAB_SIZE = 257  # 256 byte values + padding id 0

IMDB_HELP = (
    "Put the IMDB reviews (https://ai.stanford.edu/~amaas/data/sentiment/) under {root}: either the "
    "unpacked folder {root}/aclImdb/{{train,test}}/{{pos,neg}}/*.txt, or TSV files "
    "{root}/imdb/{{train,test}}.tsv with a header 'label<TAB>text' (label 0 = negative, 1 = positive)."
)
AAN_HELP = (
    "Put LRA's AAN retrieval files under {root}: {root}/tsv_data/new_aan_pairs.{{train,eval,test}}.tsv "
    "(from LRA's lra_release; five tab-separated columns: label, id1, id2, text1, text2)."
)
CIFAR_HELP = (
    "Put the CIFAR-10 python version (https://www.cs.toronto.edu/~kriz/cifar.html) under {root}: "
    "{root}/cifar-10-batches-py/data_batch_1 ... data_batch_5 and test_batch."
)


class MissingDataError(FileNotFoundError):
    """A user-provided data file is missing; the message says which files and where."""


def encode_bytes(text: str, max_len: int | None = None) -> np.ndarray:
    """UTF-8 bytes + 1 (0 is padding), truncated to ``max_len``: `[T]` int64."""
    data = text.encode("utf-8")
    if max_len is not None:
        data = data[:max_len]
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64) + 1


def _split_name(split: str, allowed: tuple[str, ...]) -> str:
    if split not in allowed:
        raise ValueError(f"split: expected one of {allowed}, got {split!r}")
    return split


def read_imdb(root: str | os.PathLike[str], split: str = "train") -> tuple[list[str], np.ndarray]:
    """IMDB reviews of ``split`` (``"train"`` or ``"test"``): ``(texts, labels [N] int64)``."""
    _split_name(split, ("train", "test"))
    root = Path(root)
    raw = root / "aclImdb" / split
    tsv = root / "imdb" / f"{split}.tsv"
    if (raw / "pos").is_dir() and (raw / "neg").is_dir():
        texts, labels = [], []
        for label, sub in ((0, "neg"), (1, "pos")):
            files = sorted((raw / sub).glob("*.txt"))
            if not files:
                raise MissingDataError(
                    f"{raw / sub}: no *.txt reviews found. " + IMDB_HELP.format(root=root)
                )
            for f in files:
                texts.append(f.read_text(encoding="utf-8", errors="replace"))
                labels.append(label)
        return texts, np.asarray(labels, dtype=np.int64)
    if tsv.is_file():
        csv.field_size_limit(sys.maxsize)
        texts, labels = [], []
        with tsv.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["label", "text"]:
                raise ValueError(f"{tsv}: expected a header 'label<TAB>text', got {header!r}")
            for lineno, rec in enumerate(reader, start=2):
                if len(rec) != 2 or rec[0].strip() not in ("0", "1"):
                    raise ValueError(
                        f"{tsv}:{lineno}: expected '<0|1><TAB><text>', got {rec[:2]!r}"
                    )
                labels.append(int(rec[0]))
                texts.append(rec[1])
        return texts, np.asarray(labels, dtype=np.int64)
    raise MissingDataError(f"IMDB {split} split not found. " + IMDB_HELP.format(root=root))


def read_aan(
    root: str | os.PathLike[str], split: str = "train"
) -> tuple[list[str], list[str], np.ndarray]:
    """AAN document pairs of ``split`` (``"train"``, ``"eval"``, ``"test"``): ``(texts1, texts2, labels)``."""
    _split_name(split, ("train", "eval", "test"))
    root = Path(root)
    path = root / "tsv_data" / f"new_aan_pairs.{split}.tsv"
    if not path.is_file():
        raise MissingDataError(f"AAN file {path} not found. " + AAN_HELP.format(root=root))
    csv.field_size_limit(sys.maxsize)
    t1, t2, labels = [], [], []
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, rec in enumerate(
            csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1
        ):
            if not rec:
                continue
            if len(rec) != 5:
                raise ValueError(
                    f"{path}:{lineno}: expected 5 tab-separated columns (label, id1, id2, text1, text2), "
                    f"got {len(rec)}"
                )
            try:
                label = int(float(rec[0]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: expected a 0/1 label, got {rec[0]!r}") from None
            if label not in (0, 1):
                raise ValueError(f"{path}:{lineno}: expected a 0/1 label, got {rec[0]!r}")
            labels.append(label)
            t1.append(rec[3])
            t2.append(rec[4])
    return t1, t2, np.asarray(labels, dtype=np.int64)


def read_cifar10_grey(
    root: str | os.PathLike[str], split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 as grey images: ``images [N, 32, 32]`` uint8 and ``labels [N]`` int64."""
    _split_name(split, ("train", "test"))
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise MissingDataError(
            f"CIFAR-10 files missing: {', '.join(str(folder / n) for n in missing)}. "
            + CIFAR_HELP.format(root=root)
        )
    images, labels = [], []
    for n in names:
        with (folder / n).open("rb") as fh:
            try:
                d = pickle.load(fh, encoding="bytes")
            except Exception as err:  # a truncated or foreign file
                raise ValueError(f"{folder / n}: not a CIFAR-10 python pickle ({err})") from None
        if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
            raise ValueError(f"{folder / n}: expected a dict with b'data' and b'labels'")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{folder / n}: expected data [N, 3072] uint8, got {data.shape}")
        rgb = data.reshape(-1, 3, 32, 32).astype(np.float64)
        grey = 0.2989 * rgb[:, 0] + 0.5870 * rgb[:, 1] + 0.1140 * rgb[:, 2]
        images.append(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
        labels.append(np.asarray(d[b"labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)
