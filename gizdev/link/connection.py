"""Keeps a module session connected to one port through pulled cables and silent boards.

``ModuleConnection.run`` loops: open the port, handshake, start heartbeats, wait until the link drops, then open
again with exponential backoff (0.1 s doubling to 5 s by default). The session and its queues outlive every
connection, so a caller reading reports or events sees one continuous stream with ``mcu_offline`` /
``mcu_online`` events at the gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gizdev.backoff import Backoff
from gizdev.errors import AckTimeout, HandshakeError, LinkClosed, TransportError
from gizdev.link.module import ModuleSession
from gizdev.link.protocol import SerialLink
from gizdev.transport import open_port

__all__ = ["BACKOFF_INITIAL_S", "BACKOFF_MAX_S", "ModuleConnection"]

_LOGGER = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0

Opener = Callable[..., Awaitable[tuple[asyncio.Transport, Any]]]


class ModuleConnection:
    """A module session kept connected to ``url``; ``ready`` is set while a handshaken link is up."""

    def __init__(
        self,
        session: ModuleSession,
        url: str,
        *,
        opener: Opener | None = None,
        backoff_initial: float = BACKOFF_INITIAL_S,
        backoff_max: float = BACKOFF_MAX_S,
        **port_options: Any,
    ) -> None:
        self.session = session
        self.url = url
        self.opener: Opener = opener or open_port
        self.port_options = port_options
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.ready = asyncio.Event()
        self.connects = 0
        self.last_error: Exception | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the connection loop in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"connection {self.url}")

    async def wait_ready(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self.ready.wait()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.session.close()
        self.ready.clear()

    async def run(self) -> None:
        """Connect, handshake, watch the link; reconnect with backoff. Runs until cancelled."""
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        while True:
            link = await self._connect_once()
            if link is None:
                await backoff.wait()
                continue
            backoff.reset()
            reason = await link.wait_closed()
            self.ready.clear()
            _LOGGER.warning("%s: link lost (%s); reconnecting", self.url, reason or "closed")

    async def _connect_once(self) -> SerialLink | None:
        try:
            await self.opener(self.url, self.session.protocol_factory, **self.port_options)
        except TransportError as exc:
            self._failed(exc, "cannot open")
            return None
        link = self.session.link
        assert link is not None
        try:
            await self.session.handshake()
        except (AckTimeout, LinkClosed, HandshakeError) as exc:
            self._failed(exc, "handshake failed")
            link.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await link.wait_closed()
            return None
        self.connects += 1
        self.last_error = None
        self.ready.set()
        self.session.start_heartbeats()
        _LOGGER.info("%s: connected (connection %d)", self.url, self.connects)
        return link

    def _failed(self, exc: Exception, what: str) -> None:
        # Log a failure once per kind, not at every backoff step.
        if type(exc) is not type(self.last_error) or str(exc) != str(self.last_error):
            level = logging.ERROR if isinstance(exc, HandshakeError) else logging.WARNING
            _LOGGER.log(level, "%s: %s: %s", self.url, what, exc)
        self.last_error = exc
