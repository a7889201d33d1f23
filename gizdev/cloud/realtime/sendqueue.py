"""A client's bounded send queue and the one task that writes it out.

Everything for one WebSocket client (answers and pushes) goes through its send queue, so that sends never interleave
and a client that stops reading costs at most ``size`` queued messages: the message after that drops the client
(``on_overflow``), and whoever pushed it moves on at once. The device bus and the other clients never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["SendQueue"]

_LOGGER = logging.getLogger(__name__)

_CLOSE = None  # the end-of-queue marker


class SendQueue:
    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        on_overflow: Callable[[], None],
        size: int,
        *,
        name: str = "ws-send-queue",
    ) -> None:
        self._send = send
        self._on_overflow = on_overflow
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=size)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)
        self.overflowed = False
        self.sent = 0

    @property
    def alive(self) -> bool:
        return not self.overflowed and not self._task.done()

    def put(self, text: str) -> bool:
        """Queue one message; False (and the client dropped, once) if its queue is full or it is gone."""
        if not self.alive:
            return False
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True
            self._on_overflow()
            return False
        return True

    async def _run(self) -> None:
        while True:
            text = await self._queue.get()
            if text is _CLOSE:
                return
            try:
                await self._send(text)
            except (ConnectionError, RuntimeError) as exc:  # the peer went away (aiohttp raises either)
                _LOGGER.debug("websocket send failed: %s", exc)
                return
            except Exception:  # a bug, not the peer: log it; the client is gone either way
                _LOGGER.exception("websocket send failed")
                return
            self.sent += 1

    async def flush(self, timeout_s: float) -> None:
        """Let what is queued go out (at most ``timeout_s``), then stop; stops at once after an overflow."""
        if not self.overflowed:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_CLOSE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        await self.stop()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
