"""What every gizdev transport shares: the protocol, the port name and an exactly-once ``connection_lost``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast

_LOGGER = logging.getLogger(__name__)


class LinkTransport(asyncio.Transport):
    """Base of the gizdev transports; subclasses move bytes, this class keeps the lifecycle rules.

    The rules: ``connection_lost`` is called exactly once, always from the event loop (never from inside the
    caller's ``write``/``close``); ``None`` after a local ``close()``/``abort()``, a :class:`TransportError`
    when the other end went away. Writes after that are dropped, as asyncio's own transports do, because the
    layer above learns about the loss from ``connection_lost`` and must not have to guard every ``write``.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, *, port: str, extra: Mapping[str, Any]
    ) -> None:
        super().__init__({"port": port, **extra})
        self._loop = loop
        self._protocol = protocol
        self._port = port
        # close()/abort() was called: whatever happens afterwards, the protocol hears None.
        self._close_requested = False
        # connection_lost is scheduled (or done); nothing is read or written any more.
        self._lost = False
        self._dropped_writes = 0

    @property
    def port(self) -> str:
        """The name of the port, as given to the opener (also ``get_extra_info("port")``)."""
        return self._port

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol data is delivered to."""
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver further data and events to another protocol."""
        # A stream transport's protocol must have data_received; asyncio's own transports assume it the same way.
        self._protocol = cast(asyncio.Protocol, protocol)

    def is_closing(self) -> bool:
        """True once close()/abort() was called or the connection was lost."""
        return self._close_requested or self._lost

    def can_write_eof(self) -> bool:
        """A serial line has no half-close."""
        return False

    def _accepts_write(self) -> bool:
        """False (and log, rarely) when a write comes after close or loss; the data is dropped."""
        if not self.is_closing():
            return True
        self._dropped_writes += 1
        if self._dropped_writes == 1:
            _LOGGER.debug("%s: write after close dropped", self._port)
        return False

    def _connection_lost(self, exc: Exception | None) -> None:
        """Schedule ``protocol.connection_lost`` once; later calls are ignored."""
        if self._lost:
            return
        self._lost = True
        if self._close_requested:
            # The brief of every gizdev transport: a local close is reported as None, even if the flush failed.
            if exc is not None:
                _LOGGER.debug("%s: error while closing, ignored: %s", self._port, exc)
            exc = None
        if exc is None:
            _LOGGER.info("%s: closed", self._port)
        else:
            _LOGGER.info("%s: connection lost", self._port)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self) -> None:
        """Free the OS resources once the protocol has been told; subclasses override."""
