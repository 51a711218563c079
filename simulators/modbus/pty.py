"""A null-modem cable made of two pseudo-terminals: a serial simulator on one end, a client on the other."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty

__all__ = ["PtyPair"]


class PtyPair:
    """`server_path` and `client_path` behave like two serial ports wired to each other.

    Bytes are copied between the two pty masters on the running event loop (`start`/`close`).
    """

    def __init__(self) -> None:
        self._a_master, self._a_slave = os.openpty()
        self._b_master, self._b_slave = os.openpty()
        for fd in (self._a_slave, self._b_slave):
            tty.setraw(fd)
        for fd in (self._a_master, self._b_master):
            os.set_blocking(fd, False)
        self.server_path = os.ttyname(self._a_slave)
        self.client_path = os.ttyname(self._b_slave)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _copy(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the other side is not open yet (EIO)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(dst, data)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._a_master, self._copy, self._a_master, self._b_master)
        self._loop.add_reader(self._b_master, self._copy, self._b_master, self._a_master)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._a_master)
            self._loop.remove_reader(self._b_master)
            self._loop = None
        for fd in (self._a_master, self._b_master, self._a_slave, self._b_slave):
            with contextlib.suppress(OSError):
                os.close(fd)
