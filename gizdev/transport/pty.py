"""Pseudo-terminal pairs: a virtual serial cable inside one machine.

The master fd plays one end (typically the virtual MCU or a test), the slave path ``/dev/pts/N`` is opened by
the program under test exactly like a USB serial port. Both sides are set raw (no echo, no canonical mode, no
CR/LF translation, no flow-control characters), so every byte arrives unchanged.

Linux semantics worth knowing: the master sees EIO on read (and HUP on poll) only once *every* fd of the slave
is closed, and again whenever no slave fd is open. :class:`PtyPair` therefore keeps its own slave fd open until
:meth:`PtyPair.close_slave`, so that the master side works before the program under test has opened the path.
The master still reads whatever the slave wrote before closing, then gets EIO.

The other way round is lossy: closing the master hangs the slave up, and the slave reads EOF at once, even if
bytes the master wrote are still in its input queue; those are discarded. A master that must be sure its last
bytes were read has to wait for an answer (as the serial protocol's ACKs do) before it closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import termios
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from gizdev.transport.fd import FdTransport, connect_fd

__all__ = ["PtyPair", "make_raw", "open_pty_pair"]

_LOGGER = logging.getLogger(__name__)

_P = TypeVar("_P", bound=asyncio.Protocol)

# termios attribute list indices (POSIX order as returned by tcgetattr).
_IFLAG, _OFLAG, _CFLAG, _LFLAG, _CC = 0, 1, 2, 3, 6


def make_raw(fd: int) -> None:
    """Put a tty fd in raw 8-bit mode (the settings of cfmakeraw, plus no software flow control)."""
    attrs = termios.tcgetattr(fd)
    attrs[_IFLAG] &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
    )
    attrs[_OFLAG] &= ~termios.OPOST
    attrs[_LFLAG] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    attrs[_CFLAG] &= ~(termios.CSIZE | termios.PARENB)
    attrs[_CFLAG] |= termios.CS8 | termios.CREAD
    # VMIN=1/VTIME=0: a non-blocking read with nothing buffered fails with EAGAIN instead of returning 0 bytes,
    # so 0 bytes can only mean hang-up.
    cc = list(attrs[_CC])
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    attrs[_CC] = cc
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class PtyPair:
    """A master fd and its slave (path and one open fd); closes whatever it still owns."""

    __slots__ = ("_master_fd", "_slave_fd", "slave_path")

    def __init__(self, master_fd: int, slave_fd: int, slave_path: str) -> None:
        self._master_fd: int | None = master_fd
        self._slave_fd: int | None = slave_fd
        self.slave_path = slave_path

    @property
    def master_fd(self) -> int:
        """The master fd; raises if it was handed to a transport or closed."""
        if self._master_fd is None:
            raise ValueError(f"{self.slave_path}: the master fd was handed off or closed")
        return self._master_fd

    @property
    def slave_fd(self) -> int:
        """The pair's own slave fd; raises if it was handed to a transport or closed."""
        if self._slave_fd is None:
            raise ValueError(f"{self.slave_path}: the slave fd was handed off or closed")
        return self._slave_fd

    def detach_master(self) -> int:
        """Give up ownership of the master fd (the caller closes it from now on)."""
        fd, self._master_fd = self.master_fd, None
        return fd

    def detach_slave(self) -> int:
        """Give up ownership of the pair's slave fd (the caller closes it from now on)."""
        fd, self._slave_fd = self.slave_fd, None
        return fd

    async def connect_master(
        self, protocol_factory: Callable[[], _P], *, throttle_baud: int | None = None
    ) -> tuple[FdTransport, _P]:
        """Attach a protocol to the master side; the transport takes the master fd over."""
        return await connect_fd(
            self.detach_master(), protocol_factory, throttle_baud=throttle_baud, path=f"{self.slave_path} (master)"
        )

    async def connect_slave(
        self, protocol_factory: Callable[[], _P], *, throttle_baud: int | None = None
    ) -> tuple[FdTransport, _P]:
        """Attach a protocol to the pair's own slave fd; the transport takes that fd over."""
        return await connect_fd(
            self.detach_slave(), protocol_factory, throttle_baud=throttle_baud, path=self.slave_path
        )

    def close_slave(self) -> None:
        """Close the pair's own slave fd (the master hears EIO once no other slave fd is open)."""
        if self._slave_fd is not None:
            fd, self._slave_fd = self._slave_fd, None
            os.close(fd)

    def close(self) -> None:
        """Close every fd the pair still owns."""
        self.close_slave()
        if self._master_fd is not None:
            fd, self._master_fd = self._master_fd, None
            os.close(fd)

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PtyPair(master_fd={self._master_fd}, slave_fd={self._slave_fd}, slave_path={self.slave_path!r})"


def open_pty_pair() -> PtyPair:
    """Open a raw, non-blocking pseudo-terminal pair."""
    master_fd, slave_fd = os.openpty()  # both close-on-exec, as every fd Python opens
    try:
        slave_path = os.ttyname(slave_fd)
        for fd in (master_fd, slave_fd):
            make_raw(fd)
            os.set_blocking(fd, False)
    except BaseException:
        os.close(master_fd)
        os.close(slave_fd)
        raise
    _LOGGER.debug("opened pty pair %s (master fd %d)", slave_path, master_fd)
    return PtyPair(master_fd, slave_fd, slave_path)
