"""Run directories: atomic writes and the files that describe a run.

A run directory holds::

    config.yaml              resolved configuration (what the run actually used)
    meta.json                seed, versions, git SHA, command line, start time
    results.json             per-split metrics at the selected epoch, history, status
    checkpoints/last.ckpt    written every epoch (resume point)
    checkpoints/best.ckpt    best epoch by ``TaskSpec.selection_metric``
    logs/csv/metrics.csv     Lightning CSV log
    logs/tensorboard/        TensorBoard events (when tensorboard is installed)

Every JSON/YAML file is written to a temporary file in the same folder and moved into place with
:func:`os.replace`, so a failed or interrupted write leaves the previous version intact.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CONFIG_FILE",
    "META_FILE",
    "RESULTS_FILE",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_yaml",
    "collect_meta",
    "git_dirty",
    "git_sha",
    "read_config",
    "read_results",
    "to_jsonable",
]

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
RESULTS_FILE = "results.json"


def _write_all(fh: Any, data: bytes | memoryview) -> None:
    fh.write(data)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and
    :func:`os.replace` (atomic on POSIX): readers see the old or the new file, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a normal file's mode, not mkstemp's 0600
        with os.fdopen(fd, "wb") as fh:
            _write_all(fh, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data: tensor/numpy scalars become numbers, NaN/inf ``None``, paths strings."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"to_jsonable: cannot serialise object of type {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    # Serialise fully before touching the file system: a TypeError leaves the old file untouched.
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    text = yaml.safe_dump(to_jsonable(obj), sort_keys=False)
    return atomic_write_text(path, text)


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"run_dir: expected a run directory holding {CONFIG_FILE}, got {run_dir}"
        )
    with open(path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    if not isinstance(cfg, dict):
        raise ValueError(f"run_dir: {path} does not hold a config mapping")
    return cfg


def read_results(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``results.json`` of a run, or ``None`` when there is none (yet)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def git_sha(cwd: str | os.PathLike | None = None) -> str | None:
    """Commit of the source tree this package is imported from (``None`` outside a git checkout)."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha or None


def git_dirty(cwd: str | os.PathLike | None = None) -> bool | None:
    """Whether tracked files differ from ``HEAD`` (``None`` outside a git checkout)."""
    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def collect_meta(seed: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Seed, library versions, git SHA, command line and start time of a run."""
    import lightning
    import torch

    meta: dict[str, Any] = {
        "seed": int(seed),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [sys.argv[0].rsplit("/", 1)[-1], *sys.argv[1:]],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "torch_threads": torch.get_num_threads(),
    }
    if extra:
        meta.update(extra)
    return meta
