"""An exclusive lock on a run folder: two processes never train into the same folder at once."""

from __future__ import annotations

import datetime as _dt
import errno
import os
from pathlib import Path
from types import TracebackType

from .config import ConfigError

__all__ = ["LOCK_FILE", "RunLock", "RunLockedError"]

LOCK_FILE = ".lock"


class RunLockedError(ConfigError):
    """The run folder is in use by another process."""


class RunLock:
    """``with RunLock(run_dir):`` holds an exclusive ``flock`` on ``run_dir/.lock``.

    The lock belongs to the open file, so the operating system releases it when the process ends,
    however it ends (a killed run never leaves a stale lock). The file records the holder's pid and
    start time for the error message of a second run.

    Raises:
        RunLockedError: another process holds the lock (``blocking=False``, the default).
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = self.path.read_text(encoding="utf-8", errors="replace").strip() or "?"
            raise RunLockedError(
                f"run_dir: {self.path.parent} is in use by another run ({holder}); wait for it "
                "to finish or choose another folder"
            ) from None
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {stamp}".encode())
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
