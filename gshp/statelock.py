"""One `gshp run` per state directory: an exclusive `flock` on ``<state_dir>/gshp.lock`` holding the PID.

Two processes on one state directory would split the readings between them and raise every alert twice.
The lock is taken before any store is opened and released by the kernel when the process ends, however
it ends (a SIGKILL included), so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from collector.sqlite import secure_dir

__all__ = ["LOCK_NAME", "StateDirBusy", "lock_state_dir"]

LOCK_NAME = "gshp.lock"


class StateDirBusy(Exception):
    """Another live process holds the state directory; `holder` is its PID (None if it wrote none yet)."""

    def __init__(self, state_dir: Path, holder: int | None) -> None:
        self.state_dir = state_dir
        self.holder = holder
        who = f"process {holder}" if holder is not None else "another process"
        super().__init__(f"state_dir {state_dir} is in use by {who} (see {state_dir / LOCK_NAME}): one gshp run "
                         "per state directory — stop that process, or give this one its own state_dir")


def lock_state_dir(state_dir: Path) -> int:
    """Take the lock for the life of this process; returns the open descriptor (keep it open).

    Raises `StateDirBusy` when another process holds it, `OSError` when the directory cannot be used.
    """
    secure_dir(state_dir)
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = None
        with contextlib.suppress(OSError, ValueError):
            holder = int(os.pread(fd, 32, 0).decode().strip() or "x")
        os.close(fd)
        raise StateDirBusy(state_dir, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.fsync(fd)
    return fd
