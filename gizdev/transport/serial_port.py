"""Serial ports opened with pyserial (``/dev/ttyUSB0``, ``/dev/serial0``, a pty slave ``/dev/pts/N``, ...).

pyserial does the part that differs per platform and device (baud rate, framing, exclusive lock); the bytes then
flow through :class:`~gizdev.transport.fd.FdTransport` on the port's fd. pyserial is imported only when a port is
opened, so that the codec and everything that does not touch a port work without it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import termios
from collections.abc import Callable
from typing import Any, TypeVar

from gizdev.errors import TransportError
from gizdev.transport.fd import FdTransport, connect_fd, describe_os_error
from gizdev.transport.throttle import bits_per_byte

__all__ = ["PARITIES", "connect_serial", "open_serial"]

_LOGGER = logging.getLogger(__name__)

_P = TypeVar("_P", bound=asyncio.Protocol)

# pyserial's own names for the parity settings: none, even, odd, mark, space.
PARITIES = ("N", "E", "O", "M", "S")
BYTESIZES = (5, 6, 7, 8)
STOPBITS = (1, 1.5, 2)


def _check_settings(path: str, bytesize: int, parity: str, stopbits: float) -> None:
    if bytesize not in BYTESIZES:
        raise TransportError(f"{path}: data bits must be one of {BYTESIZES}, not {bytesize!r}")
    if parity not in PARITIES:
        raise TransportError(f"{path}: parity must be one of {', '.join(PARITIES)}, not {parity!r}")
    if stopbits not in STOPBITS:
        raise TransportError(f"{path}: stop bits must be one of {STOPBITS}, not {stopbits!r}")


def _open_reason(exc: OSError) -> str:
    """Why pyserial could not open a port, in words a user can act on."""
    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) and "lock" in str(exc).lower():
        return "port is busy (another program has it open)"
    if exc.errno == errno.EBUSY:
        return "port is busy (another program has it open)"
    if exc.errno == errno.ENOENT:
        return "no such device"
    if exc.errno:
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__


def open_serial(path: str, *, baudrate: int = 9600, bytesize: int = 8, parity: str = "N", stopbits: float = 1) -> Any:
    """Open ``path`` with pyserial, exclusive and non-blocking; returns the ``serial.Serial``."""
    _check_settings(path, bytesize, parity, stopbits)
    try:
        import serial  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415 - optional, see module doc
    except ImportError as exc:
        raise TransportError(f"{path}: pyserial is not installed (pip install 'gizdev[serial]')") from exc
    try:
        port = serial.Serial(
            path,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            timeout=0,
            exclusive=True,
        )
    except ValueError as exc:  # pyserial's verdict on a setting the device or platform refuses
        raise TransportError(f"{path}: {exc}") from exc
    except OSError as exc:  # serial.SerialException is an OSError
        raise TransportError(f"{path}: cannot open: {_open_reason(exc)}") from exc
    try:
        fd = port.fileno()
        # pyserial leaves VMIN=0, with which a non-blocking read of an empty tty returns 0 bytes, the same as a
        # hang-up; VMIN=1 makes it EAGAIN, so that FdTransport can read 0 bytes as "device gone".
        attrs = termios.tcgetattr(fd)
        attrs[6][termios.VMIN] = 1
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        os.set_blocking(fd, False)
    except (OSError, termios.error) as exc:
        port.close()
        reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        raise TransportError(f"{path}: cannot configure: {reason}") from exc
    _LOGGER.debug("%s: opened with pyserial at %d %d%s%s", path, baudrate, bytesize, parity, stopbits)
    return port


async def connect_serial(
    path: str,
    protocol_factory: Callable[[], _P],
    *,
    baudrate: int = 9600,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: float = 1,
    throttle_baud: int | None = None,
) -> tuple[FdTransport, _P]:
    """Open a serial port with pyserial and attach a new protocol to it."""
    port = open_serial(path, baudrate=baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)
    return await connect_fd(
        port.fileno(),
        protocol_factory,
        throttle_baud=throttle_baud,
        bits_per_byte=bits_per_byte(bytesize, parity, stopbits),
        path=path,
        owner=port,
        extra={"serial": port},
    )
