"""An asyncio transport over a non-blocking file descriptor: a serial port or either side of a pty.

Reads and writes go through ``loop.add_reader``/``loop.add_writer``; ``write`` never blocks (what the fd does
not take now waits in a buffer until it is writable). The peer going away shows up as one of:

* ``read()`` returning 0 bytes (EOF): a pty slave whose master closed, a tty that was hung up, a USB serial
  adapter that was unplugged (the fd then polls readable but has nothing to read);
* ``EIO``: a pty master once *every* fd of its slave is closed (Linux keeps the master alive while any slave
  fd is open), or a device that vanished mid-write;
* ``EBADF``: the fd was closed behind our back.

Each becomes one ``connection_lost(TransportError)``. A local ``close()`` flushes pending bytes (paced by the
throttle, if any), then closes the fd (or the object that owns it, e.g. a ``serial.Serial``) and reports None;
if the other side never reads, that flush never ends, so use ``abort()`` when the peer may be stuck.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from gizdev.errors import TransportError
from gizdev.transport._base import LinkTransport
from gizdev.transport.throttle import BaudThrottle

__all__ = ["FdTransport", "connect_fd", "describe_os_error"]

_LOGGER = logging.getLogger(__name__)

_P = TypeVar("_P", bound=asyncio.Protocol)

# Bigger than a pty's buffer and any UART FIFO, so one wake-up drains what arrived.
MAX_READ_BYTES = 65536

_HINTS = {
    errno.EIO: "the other side closed or the device was unplugged",
    errno.ENXIO: "the device was unplugged",
    errno.ENODEV: "the device was unplugged",
    errno.EBADF: "the file descriptor was closed",
    errno.EACCES: "is the user in the dialout group?",
}


def describe_os_error(exc: OSError) -> str:
    """A short reason for an OSError, with a hint for the errnos a serial port produces."""
    if exc.errno and exc.errno > 0 and not isinstance(exc, socket.gaierror):
        # The errno's own text: asyncio and pyserial put their whole message (with the errno again) in strerror.
        reason = os.strerror(exc.errno)
    else:
        reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _HINTS.get(exc.errno or 0)
    return f"{reason} ({hint})" if hint and hint not in reason else reason


class _Closable(Protocol):
    def close(self) -> None: ...


class FdTransport(LinkTransport):
    """A stream transport over a non-blocking fd; owns the fd (or ``owner``) and closes it when done."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        protocol: asyncio.Protocol,
        *,
        port: str,
        owner: _Closable | None = None,
        throttle_baud: int | None = None,
        bits_per_byte: float = 10.0,
        extra: dict[str, Any] | None = None,
        waiter: asyncio.Future[None] | None = None,
    ) -> None:
        super().__init__(loop, protocol, port=port, extra={"fd": fd, **(extra or {})})
        os.set_blocking(fd, False)
        self._fd = fd
        self._owner = owner
        self._buffer = bytearray()
        self._writing = False
        self._reading = False
        self._read_paused = False
        self._throttle = (
            BaudThrottle(loop, self._send, throttle_baud, bits_per_byte=bits_per_byte) if throttle_baud else None
        )
        # As asyncio's own transports do: the protocol hears connection_made before any data_received, and
        # neither happens inside the constructor.
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_done, waiter)
        _LOGGER.info("%s: opened%s", port, f" (throttled to {throttle_baud} baud)" if throttle_baud else "")

    # -- asyncio.Transport ------------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        """Queue bytes for the fd; never blocks."""
        if not data or not self._accepts_write():
            return
        if self._throttle is not None:
            self._throttle.push(bytes(data))
        else:
            self._send(bytes(data))

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the fd (including those the throttle holds back)."""
        return len(self._buffer) + (self._throttle.pending if self._throttle else 0)

    def close(self) -> None:
        """Stop reading, flush what is pending, then close and report ``connection_lost(None)``."""
        if self.is_closing():
            return
        self._close_requested = True
        self._stop_reading()
        if self._throttle is not None:
            self._throttle.when_drained(self._finish_close_if_flushed)
        else:
            self._finish_close_if_flushed()

    def abort(self) -> None:
        """Close at once, dropping pending bytes; ``connection_lost(None)``."""
        if self._lost:
            return
        self._close_requested = True
        self._shutdown()
        self._connection_lost(None)

    def is_reading(self) -> bool:
        """True while data is being delivered to the protocol."""
        return self._reading

    def pause_reading(self) -> None:
        """Stop delivering data until :meth:`resume_reading` (the kernel buffers meanwhile)."""
        self._read_paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        """Deliver data again after :meth:`pause_reading`."""
        self._read_paused = False
        self._start_reading()

    # -- internals --------------------------------------------------------------------------------------------

    def _start_reading(self) -> None:
        if self._reading or self._read_paused or self.is_closing():
            return
        self._loop.add_reader(self._fd, self._read_ready)
        self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, MAX_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"read failed: {describe_os_error(exc)}", exc)
            return
        if not data:
            # Our ttys run with VMIN=1, so a readable fd with nothing to read means hang-up, not "no data yet".
            self._fail("end of file (the other side closed or the device was unplugged)", None)
            return
        self._protocol.data_received(data)

    def _send(self, data: bytes) -> None:
        """Hand bytes to the fd now if possible, buffer the rest (the throttle's sink, too)."""
        if self._lost:
            return
        if not self._buffer:
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self._fail(f"write failed: {describe_os_error(exc)}", exc)
                return
            data = data[written:]
            if not data:
                return
        self._buffer += data
        if not self._writing:
            self._loop.add_writer(self._fd, self._write_ready)
            self._writing = True

    def _write_ready(self) -> None:
        try:
            written = os.write(self._fd, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(f"write failed: {describe_os_error(exc)}", exc)
            return
        del self._buffer[:written]
        if self._buffer:
            return
        self._loop.remove_writer(self._fd)
        self._writing = False
        if self._close_requested and not (self._throttle and self._throttle.pending):
            self._finish_close_if_flushed()

    def _finish_close_if_flushed(self) -> None:
        if self._buffer or self._lost:
            return  # _write_ready comes back here once the fd took the rest
        self._shutdown()
        self._connection_lost(None)

    def _fail(self, reason: str, cause: OSError | None) -> None:
        error = TransportError(f"{self._port}: {reason}")
        error.__cause__ = cause
        self._shutdown()
        self._connection_lost(error)

    def _shutdown(self) -> None:
        """Stop every callback and drop pending bytes; the fd itself is closed in _release."""
        self._stop_reading()
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._buffer.clear()
        if self._throttle is not None:
            self._throttle.clear()

    def _release(self) -> None:
        # Closed only after connection_lost ran, so the fd number cannot be reused while callbacks still hold it.
        _close_quietly(self._fd, self._owner, self._port)


def _close_quietly(fd: int, owner: _Closable | None, port: str) -> None:
    try:
        if owner is not None:
            owner.close()
        else:
            os.close(fd)
    except OSError as exc:
        _LOGGER.debug("%s: closing the fd failed: %s", port, exc)


def _set_result_unless_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def connect_fd(
    fd: int,
    protocol_factory: Callable[[], _P],
    *,
    throttle_baud: int | None = None,
    bits_per_byte: float = 10.0,
    path: str | None = None,
    owner: _Closable | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[FdTransport, _P]:
    """Attach a new protocol to an open fd; takes ownership of the fd (or of ``owner``), even on failure."""
    port = path if path is not None else f"fd:{fd}"
    try:
        loop = asyncio.get_running_loop()
        protocol = protocol_factory()
    except BaseException:
        _close_quietly(fd, owner, port)
        raise
    waiter: asyncio.Future[None] = loop.create_future()
    transport = FdTransport(
        loop,
        fd,
        protocol,
        port=port,
        owner=owner,
        throttle_baud=throttle_baud,
        bits_per_byte=bits_per_byte,
        extra=extra,
        waiter=waiter,
    )
    try:
        await waiter
    except BaseException:
        transport.abort()
        raise
    return transport, protocol
