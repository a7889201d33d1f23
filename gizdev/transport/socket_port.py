"""``socket://host:port``: a serial line carried over raw TCP, as ser2net and pyserial's socket URLs do.

asyncio's socket transport does the I/O; :class:`SocketTransport` wraps it so that the rules of every gizdev
transport hold: the peer closing (EOF) or resetting the connection reaches the protocol as a
:class:`TransportError` (asyncio itself reports a clean EOF as ``None``), a local close as ``None``, and an
optional throttle paces writes at a UART's rate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from gizdev.errors import TransportError
from gizdev.transport._base import LinkTransport
from gizdev.transport.fd import describe_os_error
from gizdev.transport.throttle import BaudThrottle

__all__ = ["SocketTransport", "connect_socket"]

_LOGGER = logging.getLogger(__name__)

_P = TypeVar("_P", bound=asyncio.Protocol)


class SocketTransport(LinkTransport):
    """A gizdev transport over an asyncio TCP transport; extra info falls through to the socket's."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        inner: asyncio.Transport,
        protocol: asyncio.Protocol,
        *,
        port: str,
        throttle_baud: int | None = None,
        bits_per_byte: float = 10.0,
    ) -> None:
        super().__init__(loop, protocol, port=port, extra={})
        self._inner = inner
        self._throttle = (
            BaudThrottle(loop, self._send, throttle_baud, bits_per_byte=bits_per_byte) if throttle_baud else None
        )

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``port`` is the URL; anything else (``peername``, ``socket``, ...) is the TCP transport's."""
        if name == "port":
            return self._port
        return self._inner.get_extra_info(name, default)

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        """Queue bytes for the socket; never blocks."""
        if not data or not self._accepts_write():
            return
        if self._throttle is not None:
            self._throttle.push(bytes(data))
        else:
            self._inner.write(data)

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet sent (including those the throttle holds back)."""
        return self._inner.get_write_buffer_size() + (self._throttle.pending if self._throttle else 0)

    def close(self) -> None:
        """Flush what is pending, close the socket; ``connection_lost(None)``."""
        if self.is_closing():
            return
        self._close_requested = True
        self._inner.pause_reading()  # no data_received after close(), as with any asyncio transport
        if self._throttle is not None:
            self._throttle.when_drained(self._inner.close)
        else:
            self._inner.close()

    def abort(self) -> None:
        """Close at once, dropping pending bytes; ``connection_lost(None)``."""
        if self._lost:
            return
        self._close_requested = True
        if self._throttle is not None:
            self._throttle.clear()
        self._inner.abort()

    def is_reading(self) -> bool:
        """True while data is being delivered to the protocol."""
        return not self.is_closing() and self._inner.is_reading()

    def pause_reading(self) -> None:
        """Stop delivering data until :meth:`resume_reading`."""
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        """Deliver data again after :meth:`pause_reading`."""
        if not self.is_closing():
            self._inner.resume_reading()

    def _send(self, data: bytes) -> None:
        if not self._inner.is_closing():
            self._inner.write(data)

    def _data_received(self, data: bytes) -> None:
        if not self._close_requested:
            self._protocol.data_received(data)

    def _inner_lost(self, exc: Exception | None) -> None:
        if self._throttle is not None:
            self._throttle.clear()
        if exc is None:
            self._connection_lost(TransportError(f"{self._port}: the peer closed the connection"))
        else:
            reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
            error = TransportError(f"{self._port}: connection lost: {reason}")
            error.__cause__ = exc
            self._connection_lost(error)


class _Bridge(asyncio.Protocol, Generic[_P]):
    """asyncio's protocol for the TCP transport; builds the SocketTransport and forwards to the user protocol."""

    def __init__(self, protocol_factory: Callable[[], _P], port: str, throttle_baud: int | None, bits: float) -> None:
        self._protocol_factory = protocol_factory
        self._port = port
        self._throttle_baud = throttle_baud
        self._bits = bits
        self.outer: SocketTransport | None = None
        self.protocol: _P | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Built here rather than after create_connection returns, because data may arrive before that.
        assert isinstance(transport, asyncio.Transport)
        self.protocol = self._protocol_factory()
        self.outer = SocketTransport(
            asyncio.get_running_loop(),
            transport,
            self.protocol,
            port=self._port,
            throttle_baud=self._throttle_baud,
            bits_per_byte=self._bits,
        )
        _LOGGER.info("%s: connected", self._port)
        self.protocol.connection_made(self.outer)

    def data_received(self, data: bytes) -> None:
        assert self.outer is not None
        self.outer._data_received(data)

    def eof_received(self) -> bool:
        return False  # a serial line has no half-close: let asyncio close, connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.outer is not None:
            self.outer._inner_lost(exc)


async def connect_socket(
    host: str,
    port: int,
    protocol_factory: Callable[[], _P],
    *,
    throttle_baud: int | None = None,
    bits_per_byte: float = 10.0,
) -> tuple[SocketTransport, _P]:
    """Connect to a raw TCP serial server (ser2net-style) and attach a new protocol."""
    loop = asyncio.get_running_loop()
    name = f"socket://[{host}]:{port}" if ":" in host else f"socket://{host}:{port}"
    bridge = _Bridge(protocol_factory, name, throttle_baud, bits_per_byte)
    try:
        await loop.create_connection(lambda: bridge, host, port)
    except OSError as exc:  # refused, unreachable, name not resolved (socket.gaierror), timed out
        raise TransportError(f"{name}: cannot connect: {describe_os_error(exc)}") from exc
    assert bridge.outer is not None and bridge.protocol is not None
    return bridge.outer, bridge.protocol
