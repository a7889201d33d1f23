"""Transports under a serial link: serial ports, ``socket://host:port``, pty pairs and in-memory pairs.

Every transport is an :class:`asyncio.Transport` and drives an :class:`asyncio.Protocol`. Shared rules:
``connection_lost`` is called exactly once, from the event loop; with ``None`` after a local ``close()`` or
``abort()``, with a :class:`~gizdev.errors.TransportError` when the other end went away (pty peer closed, socket
reset or closed, USB adapter unplugged). :func:`open_port` picks the transport from a URL.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from typing import TypeVar

from gizdev.errors import TransportError
from gizdev.transport._base import LinkTransport
from gizdev.transport.fd import FdTransport, connect_fd
from gizdev.transport.memory import LinkCounters, LinkKnobs, MemoryTransport, memory_pair
from gizdev.transport.pty import PtyPair, make_raw, open_pty_pair
from gizdev.transport.serial_port import connect_serial, open_serial
from gizdev.transport.socket_port import SocketTransport, connect_socket
from gizdev.transport.throttle import BaudThrottle, bits_per_byte

__all__ = [
    "BaudThrottle",
    "FdTransport",
    "LinkCounters",
    "LinkKnobs",
    "LinkTransport",
    "MemoryTransport",
    "PtyPair",
    "SocketTransport",
    "bits_per_byte",
    "connect_fd",
    "connect_serial",
    "connect_socket",
    "make_raw",
    "memory_pair",
    "open_port",
    "open_pty_pair",
    "open_serial",
    "parse_socket_url",
]

_P = TypeVar("_P", bound=asyncio.Protocol)

SOCKET_SCHEME = "socket"


def parse_socket_url(url: str) -> tuple[str, int]:
    """Split ``socket://host:port`` (``socket://[::1]:port`` for IPv6) into host and port."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != SOCKET_SCHEME:
        raise TransportError(f"{url}: not a socket:// URL")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise TransportError(f"{url}: a socket URL is socket://host:port, nothing more")
    try:
        port = parts.port
    except ValueError as exc:  # not a number, or out of range
        raise TransportError(f"{url}: bad port: {exc}") from exc
    if not parts.hostname:
        raise TransportError(f"{url}: no host (expected socket://host:port)")
    if port is None:
        raise TransportError(f"{url}: no port (expected socket://host:port)")
    if port == 0:
        raise TransportError(f"{url}: bad port: 0")
    return parts.hostname, port


async def open_port(
    url: str,
    protocol_factory: Callable[[], _P],
    *,
    baudrate: int = 9600,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: float = 1,
    throttle_baud: int | None = None,
) -> tuple[asyncio.Transport, _P]:
    """Open a port by URL (``socket://host:port`` or a device path) and attach a new protocol to it."""
    if not url:
        raise TransportError("empty port name")
    scheme, sep, _ = url.partition("://")
    if not sep:
        return await connect_serial(
            url,
            protocol_factory,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            throttle_baud=throttle_baud,
        )
    if scheme.lower() == SOCKET_SCHEME:
        host, port = parse_socket_url(url)
        # Framing settings mean nothing to TCP, but they do set the pace of a throttled socket.
        return await connect_socket(
            host,
            port,
            protocol_factory,
            throttle_baud=throttle_baud,
            bits_per_byte=bits_per_byte(bytesize, parity, stopbits),
        )
    raise TransportError(f"{url}: unknown URL scheme {scheme!r} (expected socket://host:port or a device path)")
