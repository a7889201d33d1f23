"""Work a request starts but does not wait for (a reset mail: waiting would tell, by the time taken, whether the
address has an account). Tasks are kept so that none is lost to the garbage collector, their failures are
logged, and the server waits for them a moment at shutdown before cancelling the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]

_LOGGER = logging.getLogger(__name__)


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None:
            _LOGGER.error("%s failed: %s", task.get_name(), failure, exc_info=failure)

    async def idle(self) -> None:
        """Wait until every task started so far has finished (tests; shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Give running tasks ``timeout_s`` to finish, then cancel what is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle(), timeout_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
