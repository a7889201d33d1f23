"""Reconnect delays shared by every loop that retries (the serial link, the device bus, the managed broker's
supervisor, the bridge's uplinks): start small, double after each failure up to a ceiling, start over after a
success. Standard library only, so that any layer may use it."""

from __future__ import annotations

import asyncio
import contextlib
import math

__all__ = ["Backoff"]


class Backoff:
    """``await backoff.wait()`` after a failure; ``backoff.reset()`` after a success."""

    def __init__(self, initial_s: float, max_s: float, factor: float = 2.0) -> None:
        if not (math.isfinite(initial_s) and initial_s > 0):
            raise ValueError(f"the first delay must be a positive number of seconds, not {initial_s!r}")
        if not (math.isfinite(max_s) and max_s > 0):
            raise ValueError(f"the longest delay must be a positive number of seconds, not {max_s!r}")
        if not (math.isfinite(factor) and factor >= 1):
            raise ValueError(f"the growth factor must be at least 1, not {factor!r}")
        self.initial_s = min(initial_s, max_s)  # the ceiling caps every delay, the first one too
        self.max_s = max_s
        self.factor = factor
        self._delay = self.initial_s

    @property
    def delay(self) -> float:
        """The delay the next :meth:`wait` (or :meth:`step`) will use."""
        return self._delay

    def reset(self) -> None:
        self._delay = self.initial_s

    def step(self) -> float:
        """The delay to wait now; the one after it grows by ``factor`` up to ``max_s``."""
        delay = self._delay
        self._delay = min(delay * self.factor, self.max_s)
        return delay

    async def wait(self, interrupt: asyncio.Event | None = None) -> None:
        """Sleep for the current delay (ended early when ``interrupt`` is set), then grow it."""
        delay = self.step()
        if interrupt is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await interrupt.wait()
