"""One worker per state directory: an exclusive ``flock`` on ``<state_dir>/worker.lock``.

Two workers on one state dir would process every frame twice and, sharing the worker's MQTT
client id, kick each other off the broker. The lock is held for the worker's lifetime and the
holder's pid is written into the file, so a second worker fails with an error naming both. The
kernel drops the lock when its holder dies (even by SIGKILL): there is never a stale lock to
remove by hand. ``flock`` locks belong to an open file, so a second worker in the same process is
refused too.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

__all__ = ["LOCK_NAME", "StateDirLock", "StateDirLocked"]

LOCK_NAME = "worker.lock"


class StateDirLocked(RuntimeError):
    """Another worker holds the state directory."""


class StateDirLock:
    """The exclusive lock of one state directory; ``acquire`` it, ``release`` it (or use ``with``)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float = 0.0, poll_s: float = 0.2) -> StateDirLock:
        """Take the lock, waiting up to ``wait_s`` for a holder that is exiting; else raise
        :class:`StateDirLocked` naming the directory and the holder's pid."""
        if self._fd is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    raise StateDirLocked(
                        f"state dir {self.state_dir} is in use by another citywatch worker "
                        f"(pid {holder or 'unknown'}, lock file {self.path}); stop it, or give this "
                        "worker its own worker.state_dir and worker.name") from None
                time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (the file stays: removing it would race with the next holder)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the file drops its flock

    def __enter__(self) -> StateDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
