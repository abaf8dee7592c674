"""Checkpoints written atomically in their own folder.

Lightning's default writer goes through an fsspec transaction whose temporary file lives in
``$TMPDIR``; when that is another file system the final move is a copy, and a crash, a kill or a
full disk during the copy leaves a truncated ``last.ckpt`` that cannot be resumed.
:class:`AtomicCheckpointIO` serialises the checkpoint in memory, writes it to a temporary file in
the checkpoint's own folder, ``fsync`` s it and renames it over the old file (``os.replace``: atomic
on POSIX), so the folder always holds either the previous or the new complete checkpoint.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from .rundir import atomic_write_bytes

__all__ = ["AtomicCheckpointIO", "remove_stale_temporaries"]

TMP_SUFFIX = ".tmp"


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose writes are same-folder temporary file + rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("storage_options: not supported by AtomicCheckpointIO")
        buf = io.BytesIO()
        torch.save(checkpoint, buf)  # serialise fully before touching the disk
        atomic_write_bytes(Path(path), buf.getbuffer())


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (call under the run lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
