"""Where a virtual MCU meets its module: the master side of a pty, or a TCP port speaking raw serial bytes.

Both endpoints give the MCU one :class:`~gizdev.link.protocol.SerialLink` at a time. The pty pair keeps its slave
fd open, so modules may open and close the slave path as often as they like; over TCP each accepted connection
gets a fresh link and replaces the previous one (one module at a time, as on a UART).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Protocol

from gizdev.errors import TransportError
from gizdev.link.protocol import SerialLink
from gizdev.sim.control import bind_listener, format_address
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import LinkTransport, connect_fd, open_pty_pair
from gizdev.transport.closing import close_within

__all__ = ["Endpoint", "PtyEndpoint", "TcpEndpoint", "close_link"]

_LOGGER = logging.getLogger(__name__)

#: How long a closing link may take to flush before it is cut (a peer that stopped reading never lets it finish).
#: Pause after a failed accept() (e.g. out of file descriptors), so that the loop does not spin.
ACCEPT_RETRY_S = 0.5


class Endpoint(Protocol):
    """What the sim serves on: open it, learn if it fails, close it."""

    async def open(self) -> dict[str, Any]:
        """Start serving; returns what to announce (``{"pty": path}`` or ``{"listen": url}``)."""
        ...

    async def failed(self) -> str:
        """Returns (the reason) only if the endpoint stops serving while the sim runs."""
        ...

    async def close(self) -> None:
        """Stop serving and close the current link."""
        ...


async def close_link(link: SerialLink, transport: LinkTransport) -> None:
    """Close a link, giving it CLOSE_GRACE_S to flush; a peer that stopped reading gets cut off."""
    await close_within(link, transport)


class PtyEndpoint:
    """The virtual MCU on the master side of a pty; the pair keeps a slave fd, so modules may come and go."""

    def __init__(self, mcu: VirtualMcu, baud: int | None = None) -> None:
        self.mcu = mcu
        self.baud = baud
        self._pair = open_pty_pair()
        self._link: SerialLink | None = None
        self._transport: LinkTransport | None = None

    @property
    def path(self) -> str:
        """The slave path a module opens."""
        return self._pair.slave_path

    async def open(self) -> dict[str, Any]:
        self._transport, self._link = await self._pair.connect_master(
            self.mcu.protocol_factory, throttle_baud=self.baud
        )
        _LOGGER.info("sim: on pty %s%s", self._pair.slave_path, f" at {self.baud} baud" if self.baud else "")
        return {"pty": self._pair.slave_path}

    async def failed(self) -> str:
        assert self._link is not None
        reason = await self._link.wait_closed()
        return f"pty {self._pair.slave_path} closed: {reason}"

    async def close(self) -> None:
        if self._link is not None and self._transport is not None:
            await close_link(self._link, self._transport)
        self._pair.close()


class TcpEndpoint:
    """The virtual MCU behind a TCP port: each accepted connection gets a fresh link and replaces the last one."""

    def __init__(
        self, mcu: VirtualMcu, host: str, port: int, baud: int | None = None, *, allow_remote: bool = False
    ) -> None:
        self.mcu = mcu
        self.baud = baud
        self._socket = bind_listener(host, port, allow_remote=allow_remote, what="--listen")
        self.url = f"socket://{format_address(*self._socket.getsockname()[:2])}"
        self._accepting: asyncio.Task[None] | None = None
        self._current: tuple[SerialLink, LinkTransport] | None = None

    async def open(self) -> dict[str, Any]:
        self._accepting = asyncio.get_running_loop().create_task(self._accept(), name="sim-accept")
        _LOGGER.info("sim: listening on %s%s", self.url, f" at {self.baud} baud" if self.baud else "")
        return {"listen": self.url}

    async def failed(self) -> str:
        # A connection that ends is normal here: the next module connects again, so this never returns.
        never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        return await never

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        self._socket.close()
        if self._current is not None:
            await close_link(*self._current)
            self._current = None

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self._socket)
            except OSError as exc:  # e.g. out of file descriptors: wait and try again
                _LOGGER.warning("sim: accept failed: %s", exc)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            name = f"socket://{format_address(*peer[:2])}"
            # Small frames under a 200 ms ACK budget: do not let Nagle hold them back.
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._current is not None:
                _LOGGER.info("sim: %s replaces the previous module connection", name)
                link, transport = self._current
                self._current = None
                transport.abort()
            try:
                # The socket's fd under the same transport as a serial port: EOF or reset ends the link.
                transport, link = await connect_fd(
                    conn.detach(), self.mcu.protocol_factory, throttle_baud=self.baud, path=name
                )
            except (OSError, TransportError) as exc:
                _LOGGER.warning("sim: %s: cannot serve the connection: %s", name, exc)
                continue
            self._current = (link, transport)
            _LOGGER.info("sim: module connected from %s", name)
