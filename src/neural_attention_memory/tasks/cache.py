"""On-disk cache for generated data sets, keyed by a manifest.

A generated data set lives in ``<root>/<name>/<key>/`` where ``key`` hashes the generator version,
its parameters and, for data built from the user's files, a fingerprint of those files (every
file's relative path, size and modification time): adding, changing or deleting a source file
gives a new key, so the cache is rebuilt instead of silently serving stale data. ``manifest.json`` (generator version, seed, parameters, counts) is written last, so a
folder without a manifest is an interrupted build and is rebuilt; a build goes to a temporary sibling
folder and is moved into place atomically, so a failed write never leaves a half-written data set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["cached_dataset", "data_root", "read_manifest", "source_fingerprint"]

MANIFEST = "manifest.json"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where data lives: ``root`` if given, else ``$NAM_DATA_DIR``, else ``~/.cache/neural_attention_memory``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("NAM_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "neural_attention_memory"


def source_fingerprint(sources: Sequence[str | os.PathLike[str]]) -> str:
    """A hash of what ``sources`` hold: for every file (folders are walked, sorted), its path
    relative to the source, its size and its modification time in nanoseconds."""
    h = hashlib.sha256()
    for src in sources:
        src = Path(src)
        h.update(f"source {src.resolve()}\n".encode())
        if src.is_file():
            files = [src]
        elif src.is_dir():
            files = sorted(p for p in src.rglob("*") if p.is_file())
        else:
            raise FileNotFoundError(f"sources: {src} does not exist")
        for f in files:
            st = f.stat()
            rel = f.name if f == src else str(f.relative_to(src))
            h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _key(version: str, params: Mapping[str, Any]) -> str:
    blob = json.dumps({"version": version, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def cached_dataset(
    name: str,
    version: str,
    params: Mapping[str, Any],
    build: Callable[[Path], Mapping[str, int]],
    root: str | os.PathLike[str] | None = None,
    sources: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Return the folder holding data set ``name`` for ``(version, params)``, building it if needed.

    Args:
        name: data set name (a folder under the root).
        version: generator version string; bump it when the generator's output changes.
        params: JSON-serialisable generator parameters, including the seed.
        build: ``build(folder) -> counts`` writes the data into an empty ``folder`` and returns
            counts (e.g. ``{"train": 1000, "test": 200}``) recorded in the manifest.
        root: cache root (see :func:`data_root`).
        sources: files or folders the data set is built from (user-provided data); their
            :func:`source_fingerprint` is part of the key and the manifest.
    """
    if not name or "/" in name:
        raise ValueError(f"name: expected a non-empty folder name without '/', got {name!r}")
    params = json.loads(json.dumps(dict(params), sort_keys=True, default=str))
    if sources:
        params["sources_fingerprint"] = source_fingerprint(sources)
    base = data_root(root) / name
    folder = base / _key(version, params)
    manifest = read_manifest(folder)
    if (
        manifest is not None
        and manifest.get("version") == version
        and manifest.get("params") == params
    ):
        return folder
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=base))
    try:
        counts = dict(build(tmp))
        info = {"name": name, "version": version, "params": params, "counts": counts}
        (tmp / MANIFEST).write_text(json.dumps(info, indent=2, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
