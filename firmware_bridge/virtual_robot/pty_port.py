"""The firmware end of a pseudo-terminal: what a USB-serial cable is to a real motor board.

Why a pty: the host opens the slave path (e.g. /dev/pts/7, or the /tmp/ttyRobot symlink) with
pyserial exactly as it opens /dev/ttyUSB0, so the host code under test is the production code.
The firmware keeps the slave end open too, so the master never sees EIO while no host is
attached and a host can come and go. Both ends are raw (no echo, no line discipline).

The master is non-blocking: like a UART without flow control, a frame that does not fit in the
kernel buffer (no host reading) is dropped and counted instead of stalling the firmware tick.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import tty
from dataclasses import dataclass

log = logging.getLogger(__name__)

READ_CHUNK = 4096


@dataclass
class PtyCounters:
    bytes_read: int = 0
    bytes_written: int = 0
    bytes_dropped: int = 0  # host not reading and the kernel buffer full
    read_errors: int = 0


class PtyPort:
    """Opens a raw pty pair; `device` is the path a host opens; optional stable symlink."""

    def __init__(self, link_path: str | None = None) -> None:
        self.master_fd, self.slave_fd = os.openpty()
        tty.setraw(self.master_fd)
        tty.setraw(self.slave_fd)
        os.set_blocking(self.master_fd, False)
        self.device = os.ttyname(self.slave_fd)
        self.link_path = link_path
        self.counters = PtyCounters()
        if link_path:
            tmp = f"{link_path}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.device, tmp)
            os.replace(tmp, link_path)  # atomic: a host never sees a missing or stale link
        self._closed = False

    def wait_readable(self, timeout_s: float) -> bool:
        if self._closed:
            return False
        ready, _, _ = select.select([self.master_fd], [], [], max(0.0, timeout_s))
        return bool(ready)

    def read(self, timeout_s: float = 0.0) -> bytes:
        """Whatever the host has sent, waiting at most `timeout_s` for the first byte."""
        if timeout_s > 0 and not self.wait_readable(timeout_s):
            return b""
        try:
            data = os.read(self.master_fd, READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open at this instant; we hold one, but be safe
                return b""
            self.counters.read_errors += 1
            raise
        self.counters.bytes_read += len(data)
        return data

    def write(self, data: bytes) -> int:
        """Write without blocking; the part that does not fit is dropped (and counted)."""
        if not data or self._closed:
            return 0
        try:
            n = os.write(self.master_fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            n = 0
        self.counters.bytes_written += n
        self.counters.bytes_dropped += len(data) - n
        return n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.link_path:
            try:
                if os.path.islink(self.link_path) and os.readlink(self.link_path) == self.device:
                    os.unlink(self.link_path)
            except OSError:
                log.warning("could not remove symlink %s", self.link_path)
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "PtyPort":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
