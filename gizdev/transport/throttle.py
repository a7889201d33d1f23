"""Pacing of written bytes at a UART's rate, so that a pty or a socket shows real wire timing.

A UART at ``baud`` with 8N1 framing sends 10 bits per byte, so one byte every ``10 / baud`` seconds. The
throttle keeps a virtual wire clock (``_next_start``: when the next byte may start) and, on each tick, hands
the sink every byte whose start time has come. Ticks are :data:`TICK_S` apart (or one byte time, if longer), so
9600 baud becomes bursts of about ten bytes every 10 ms: smooth at the receiver, cheap for the event loop.

An idle wire banks no credit (the clock restarts at "now" when the queue was empty), but a late tick during a
burst is caught up, so the average rate is right even when the loop is busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["TICK_S", "BaudThrottle", "bits_per_byte"]

# Event-loop timers are good to about a millisecond; 10 ms keeps each burst under 1% of a second of traffic
# while costing at most 100 callbacks a second.
TICK_S = 0.01


def bits_per_byte(bytesize: int = 8, parity: str = "N", stopbits: float = 1) -> float:
    """Bits on the wire per byte for a UART frame: start bit, data bits, parity bit, stop bits."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


class BaudThrottle:
    """Queues bytes and releases them to ``sink`` no faster than a UART at ``baudrate`` would send them."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: Callable[[bytes], None],
        baudrate: int,
        *,
        bits_per_byte: float = 10.0,
    ) -> None:
        if baudrate <= 0 or bits_per_byte <= 0:
            raise ValueError(f"baud rate and bits per byte must be positive, got {baudrate}, {bits_per_byte}")
        self._loop = loop
        self._sink = sink
        self.baudrate = baudrate
        self.byte_time_s = bits_per_byte / baudrate
        self._buffer = bytearray()
        self._next_start = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._on_drained: Callable[[], None] | None = None

    @property
    def pending(self) -> int:
        """Bytes queued and not yet handed to the sink."""
        return len(self._buffer)

    def push(self, data: bytes) -> None:
        """Queue bytes; the first ones go to the sink at once if the wire is idle."""
        if not data:
            return
        if not self._buffer:
            self._next_start = max(self._next_start, self._loop.time())
        self._buffer += data
        if self._timer is None:
            self._pump()

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once) as soon as the queue is empty; now if it already is."""
        if not self._buffer:
            callback()
        else:
            self._on_drained = callback

    def clear(self) -> None:
        """Drop whatever is queued and stop; used when the transport aborts or fails."""
        self._buffer.clear()
        self._on_drained = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pump(self) -> None:
        self._timer = None
        now = self._loop.time()
        due = int((now - self._next_start) / self.byte_time_s) + 1 if now >= self._next_start else 0
        count = min(due, len(self._buffer))
        if count:
            chunk = bytes(self._buffer[:count])
            del self._buffer[:count]
            self._next_start += count * self.byte_time_s
            # The sink may fail and call clear() on us; the checks below then see an empty queue.
            self._sink(chunk)
        if self._buffer:
            if self._timer is None:
                self._timer = self._loop.call_later(max(self._next_start - now, TICK_S), self._pump)
        elif self._on_drained is not None:
            callback, self._on_drained = self._on_drained, None
            callback()
