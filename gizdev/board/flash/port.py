"""The byte stream a flasher talks through: blocking reads with a deadline, writes, and the modem lines.

Flashing is a strict request/answer dialogue, one block at a time, so the flashers use plain blocking I/O rather
than the asyncio transports of the serial link: nothing else runs meanwhile, and a deadline per answer is all the
timing there is. :func:`open_stream` opens a device path (``/dev/ttyUSB0``, a pty ``/dev/pts/N``) or any URL
pyserial knows (``socket://host:port``, ``rfc2217://``); pyserial is imported only then.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from typing import Any, Protocol

from gizdev.errors import TransportError

__all__ = ["ByteStream", "LineControl", "SerialStream", "open_stream"]

_LOGGER = logging.getLogger(__name__)

#: Longest a single pyserial read waits; read() loops on it until its own deadline.
POLL_S = 0.05


class ByteStream(Protocol):
    """What a flasher needs of a port."""

    @property
    def name(self) -> str:
        """The port, for messages."""
        ...

    def write(self, data: bytes) -> None:
        """Send bytes (blocks until the OS took them, not until they are on the wire)."""
        ...

    def read(self, size: int, timeout_s: float) -> bytes:
        """Up to ``size`` bytes; fewer only when ``timeout_s`` passed first."""
        ...

    def discard_input(self) -> None:
        """Drop whatever arrived and was not read (noise from a resetting board, a late answer)."""
        ...

    def close(self) -> None:
        """Close the port."""
        ...


class LineControl(Protocol):
    """The modem control lines that USB-serial adapters wire to BOOT0 and RESET."""

    def set_dtr(self, active: bool) -> None:
        """Drive DTR (True = asserted, which is a low level on the adapter's pin)."""
        ...

    def set_rts(self, active: bool) -> None:
        """Drive RTS (True = asserted, a low level on the pin)."""
        ...


class SerialStream:
    """A :class:`ByteStream` and :class:`LineControl` over a pyserial port."""

    def __init__(self, port: Any, name: str) -> None:
        self._port = port
        self._name = name

    @property
    def name(self) -> str:
        """The port as given to :func:`open_stream`."""
        return self._name

    def write(self, data: bytes) -> None:
        """Send bytes (pyserial blocks until the OS took them all)."""
        try:
            # No flush (tcdrain): it waits for the wire to go idle, a scheduler round trip per write on a pty,
            # while the answer we read next cannot arrive before the bytes went out anyway.
            self._port.write(data)
        except OSError as exc:  # serial.SerialException is an OSError
            raise TransportError(f"{self._name}: write failed: {exc}") from exc

    def read(self, size: int, timeout_s: float) -> bytes:
        """Up to ``size`` bytes within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        data = bytearray()
        try:
            while len(data) < size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # The port's own timeout stays at POLL_S: changing it re-applies every termios setting, which
                # some drivers (and ptys) refuse. A read returns as soon as the bytes are there anyway.
                data += self._port.read(size - len(data))
        except OSError as exc:
            raise TransportError(f"{self._name}: read failed: {exc}") from exc
        return bytes(data)

    def discard_input(self) -> None:
        """Drop unread input."""
        try:
            self._port.reset_input_buffer()
        except OSError as exc:
            raise TransportError(f"{self._name}: {exc}") from exc

    def set_dtr(self, active: bool) -> None:
        """Drive DTR."""
        self._set_line("dtr", active)

    def set_rts(self, active: bool) -> None:
        """Drive RTS."""
        self._set_line("rts", active)

    def _set_line(self, line: str, active: bool) -> None:
        try:
            setattr(self._port, line, active)
        except OSError as exc:
            raise TransportError(
                f"{self._name}: cannot drive {line.upper()}: {exc.strerror or exc} "
                "(a pty or a socket has no modem lines; use --reset none)"
            ) from exc

    def close(self) -> None:
        """Close the port; errors while closing are not worth failing a flash for."""
        try:
            self._port.close()
        except OSError as exc:
            _LOGGER.debug("%s: error while closing: %s", self._name, exc)


def _is_pty_slave(path: str) -> bool:
    """True for a Unix98 pty slave (/dev/pts/N): character devices of majors 136..143 on Linux."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(info.st_mode) and 136 <= os.major(info.st_rdev) <= 143


def open_stream(url: str, *, baudrate: int, parity: str = "N") -> SerialStream:
    """Open a device path or a pyserial URL (8 data bits, 1 stop bit, the given parity)."""
    if not url:
        raise TransportError("empty port name")
    try:
        import serial  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise TransportError(f"{url}: pyserial is not installed (pip install 'gizdev[flash]')") from exc
    if parity != "N" and _is_pty_slave(url):
        # The pty driver clears PARENB whatever one asks, and glibc then fails the reopen of a pty that was set
        # to even parity before with EINVAL. A pty carries bytes, not bits: there is no parity to get wrong.
        _LOGGER.debug("%s: a pseudo-terminal has no parity; opening it 8N1", url)
        parity = "N"
    try:
        port = serial.serial_for_url(
            url, baudrate=baudrate, bytesize=8, parity=parity, stopbits=1, timeout=POLL_S, exclusive=True
        )
    except ValueError as exc:
        raise TransportError(f"{url}: {exc}") from exc
    except OSError as exc:
        raise TransportError(f"{url}: cannot open: {exc.strerror or exc}") from exc
    _LOGGER.info("%s: opened at %d baud, 8%s1", url, baudrate, parity)
    return SerialStream(port, url)
