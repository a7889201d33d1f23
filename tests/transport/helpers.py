"""A protocol that records what a transport did to it (and the guarded ``run``, re-exported)."""

from __future__ import annotations

import asyncio

from tests.guards import run

__all__ = ["Recorder", "run"]  # run: the guarded runner (tests/guards.py), re-exported for the tests here


class Recorder(asyncio.Protocol):
    """Records every callback; fails loudly if a transport breaks the asyncio call order."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.chunks: list[tuple[float, bytes]] = []
        self.lost_calls: list[Exception | None] = []
        self.lost: asyncio.Future[Exception | None] = self.loop.create_future()
        self.violations: list[str] = []
        self._changed = asyncio.Event()
        self.in_write = False  # set by tests around write() to catch re-entrant delivery

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            self.violations.append("connection_made twice")
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            self.violations.append("data before connection_made")
        if self.lost_calls:
            self.violations.append("data after connection_lost")
        self.data += data
        self.chunks.append((self.loop.time(), bytes(data)))
        self._changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)
        self._changed.set()

    async def wait_bytes(self, count: int) -> bytes:
        """Wait until at least `count` bytes arrived; fail if the connection is lost first."""
        while len(self.data) < count:
            assert not self.lost_calls, f"connection lost after {len(self.data)} of {count} bytes"
            self._changed.clear()
            await self._changed.wait()
        return bytes(self.data)

    async def wait_lost(self) -> Exception | None:
        """Wait for connection_lost, then make sure it is not called a second time."""
        exc = await self.lost
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(self.lost_calls) == 1, f"connection_lost called {len(self.lost_calls)} times"
        assert self.violations == []
        return exc
