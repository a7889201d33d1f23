"""An asyncio loop on a daemon thread, for servers that tests drive from synchronous code or another loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tests.guards import LeftoverTasks, LoopErrors, record_loop_errors, wind_down

T = TypeVar("T")


class LoopThread:
    """Run ``start()`` (a coroutine factory) on the thread's loop; ``close`` runs ``stop()`` and ends the loop.

    ``close`` fails (``LeftoverTasks``) if tasks are still running on the loop after ``stop()`` (what the server
    started, its stop must end), and (``LoopErrors``) if the loop reported errors to its exception handler.
    """

    def __init__(
        self,
        name: str,
        start: Callable[[], Coroutine[Any, Any, object]],
        stop: Callable[[], Coroutine[Any, Any, object]],
    ) -> None:
        self.name = name
        self._start = start
        self._stop = stop
        self._loop = asyncio.new_event_loop()
        self._reported: list[dict[str, Any]] = []
        record_loop_errors(self._loop, self._reported)
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run ``coro`` on the thread's loop and wait for it (from code that is not on an event loop)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread's loop and await it from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def start(self) -> None:
        self._thread.start()
        try:
            self.call(self._start())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the server (if started) and the loop; nothing of either is left afterwards."""
        left: LeftoverTasks | None = None
        try:
            if self._thread.is_alive():
                self.call(self._stop())
        finally:
            if self._thread.is_alive():
                left = self.call(wind_down(f"{self.name}'s loop"))
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
            self._loop.close()
        if left is not None:
            raise left
        if self._reported:
            raise LoopErrors(self._reported, f"{self.name}'s loop")
