"""Byte-level language-modelling data from the Python standard library's own source files.

Nothing is downloaded: the text is the ``.py`` files that ship with the running interpreter
(:func:`stdlib_root`). The file list is fixed (:data:`FILES`, modules present in CPython 3.10
to 3.13) and each file's split is a function of its path alone (:func:`split_of`: SHA-256 of the
relative path), so every machine with the same Python version builds byte-identical data;
:func:`corpus_digest` fingerprints it (recorded with every result). Files absent from an
interpreter are skipped and listed by :func:`load_split`.

Tokens are bytes (vocabulary 256). Files of a split are joined with a blank line between them.
"""

from __future__ import annotations

import hashlib
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "FILES",
    "SPLITS",
    "VOCAB_SIZE",
    "ByteWindows",
    "corpus_digest",
    "load_split",
    "split_of",
    "stdlib_root",
]

VOCAB_SIZE = 256
SPLITS = ("train", "val", "test")
#: Share of files per split, by the first 8 hex digits of SHA-256(path) scaled to [0, 1).
SPLIT_BOUNDS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
_SEPARATOR = b"\n\n"

_TOP = """
abc argparse ast base64 bdb bisect calendar cmd code codecs codeop colorsys compileall
configparser contextlib contextvars copy copyreg csv dataclasses datetime decimal difflib dis
doctest enum filecmp fileinput fnmatch fractions ftplib functools genericpath getopt getpass
gettext glob graphlib gzip hashlib heapq hmac imaplib inspect io ipaddress keyword linecache
locale lzma mailbox mimetypes modulefinder netrc ntpath numbers opcode operator optparse os pdb
pickle pickletools pkgutil platform plistlib poplib posixpath pprint profile pstats pty
py_compile pyclbr pydoc queue quopri random reprlib rlcompleter runpy sched secrets selectors
shelve shlex shutil signal site smtplib socket socketserver ssl stat statistics string
stringprep struct subprocess symtable tabnanny tarfile tempfile textwrap threading timeit token
tokenize trace traceback tracemalloc tty turtle types typing uuid warnings wave weakref
webbrowser zipapp zipimport
""".split()
_PACKAGES = """
asyncio/base_events asyncio/events asyncio/futures asyncio/locks asyncio/queues
asyncio/runners asyncio/selector_events asyncio/streams asyncio/subprocess asyncio/tasks
asyncio/transports asyncio/unix_events collections/__init__ concurrent/futures/_base
concurrent/futures/process concurrent/futures/thread email/_header_value_parser email/charset
email/feedparser email/generator email/header email/message email/utils encodings/idna
html/__init__ html/parser http/client http/cookiejar http/cookies http/server
importlib/__init__ importlib/_bootstrap importlib/_bootstrap_external importlib/metadata/__init__
json/__init__ json/decoder json/encoder logging/__init__ logging/config logging/handlers
multiprocessing/connection multiprocessing/managers multiprocessing/pool
multiprocessing/process multiprocessing/queues multiprocessing/synchronize sqlite3/__init__
unittest/case unittest/loader unittest/main unittest/mock unittest/result unittest/runner
unittest/suite urllib/parse urllib/request urllib/robotparser xml/dom/minidom
xml/etree/ElementTree xml/sax/saxutils xmlrpc/client xmlrpc/server
""".split()
#: Relative paths (under :func:`stdlib_root`) of the corpus, in a fixed order.
FILES: tuple[str, ...] = tuple([f"{m}.py" for m in _TOP] + [f"{p}.py" for p in _PACKAGES])


def stdlib_root() -> Path:
    """The folder of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(path: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` from SHA-256 of the relative ``path`` (80/10/10)."""
    u = int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) / 16**8
    for name, (lo, hi) in SPLIT_BOUNDS.items():
        if lo <= u < hi:
            return name
    raise AssertionError(u)  # pragma: no cover - the bounds cover [0, 1)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")


def load_split(
    split: str, root: str | Path | None = None, files: Sequence[str] = FILES
) -> tuple[bytes, list[str], list[str]]:
    """Bytes of one split, the files used and the files missing from ``root``.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        root: standard-library folder (default :func:`stdlib_root`).
        files: the file list (default :data:`FILES`).
    Raises:
        ValueError: unknown split, or no file of the split exists under ``root``.
    """
    _check_split(split)
    root = stdlib_root() if root is None else Path(root)
    used, missing, parts = [], [], []
    for rel in files:
        if split_of(rel) != split:
            continue
        p = root / rel
        if p.is_file():
            used.append(rel)
            parts.append(p.read_bytes())
        else:
            missing.append(rel)
    if not parts:
        raise ValueError(f"root: no {split} file of the corpus found under {root}")
    return _SEPARATOR.join(parts), used, missing


def corpus_digest(root: str | Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) over every split's bytes: equal digests, equal data."""
    h = hashlib.sha256()
    for split in SPLITS:
        data, used, _ = load_split(split, root)
        h.update(split.encode() + b"\0" + "\n".join(used).encode() + b"\0" + data)
    return h.hexdigest()[:16]


class ByteWindows(Dataset):
    """Windows of ``length + 1`` bytes: ``input_ids`` = the first ``length``, ``labels`` = the
    last ``length`` (the next byte of each input).

    Windows start every ``length`` bytes from ``offset`` (so every byte after the first is a
    target once); the last partial window is dropped, and ``max_windows`` keeps the first ones
    (evenly spread over the text when fewer are kept).

    Items: ``{"input_ids": [length] int64, "labels": [length] int64}``.
    """

    def __init__(
        self, data: bytes, length: int, offset: int = 0, max_windows: int | None = None
    ) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length: expected a positive int, got {length!r}")
        if not 0 <= offset < max(1, len(data) - length):
            raise ValueError(f"offset: expected an int in [0, {len(data) - length}), got {offset}")
        self.data = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        self.length = length
        n = (len(data) - offset - 1) // length
        if n < 1:
            raise ValueError(
                f"data: expected more than length + 1 = {length + 1} bytes, got {len(data)}"
            )
        starts = offset + length * torch.arange(n)
        if max_windows is not None and max_windows < n:
            keep = torch.linspace(0, n - 1, max_windows).round().long()
            starts = starts[keep]
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        s = int(self.starts[i])
        w = self.data[s : s + self.length + 1].long()
        return {"input_ids": w[:-1], "labels": w[1:]}
