"""Pacing of written bytes at a UART's rate, so that a pty or a socket shows real wire timing.

A UART at ``baud`` with 8N1 framing sends 10 bits per byte, so one byte every ``10 / baud`` seconds. The
throttle keeps a virtual wire clock (``_next_start``: when the next byte may start) and hands no byte to the
sink before its start time has come. Two kinds of wake-up do that:

* during a long burst, ticks :data:`TICK_S` apart (or one byte time, if longer) hand over every byte whose time
  has come, so 9600 baud becomes bursts of about ten bytes every 10 ms: smooth at the receiver, cheap for the
  event loop;
* once everything queued fits before the next tick (a small frame, or the end of a burst), one wake-up at the
  start time of the *last* queued byte hands over the rest. A frame is never held back for a tick it does not
  need: its last byte leaves when the wire would start sending it. Event-loop timers may fire up to
  :data:`TIMER_SLACK_S` late (selectors wait whole milliseconds), far more than a byte time at 115200 baud, so
  that timer aims that much early and the loop polls (``call_soon``) for the rest: precise, at the price of a
  busy loop for a few milliseconds per frame.

An idle wire banks no credit (the clock restarts at "now" when the queue was empty): after a pause the first byte
of a long burst leaves at once and the rest follow at the wire rate, and a short write leaves whole when its last
byte may start (at once for a single byte). A late tick during a burst is caught up, so the average rate is
right even when the loop is busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["TICK_S", "TIMER_SLACK_S", "BaudThrottle", "bits_per_byte"]

# Event-loop timers are good to about a millisecond; 10 ms keeps each burst under 1% of a second of traffic
# while costing at most 100 callbacks a second.
TICK_S = 0.01
# How late an event-loop timer may fire: asyncio's selectors round a timeout up to whole milliseconds
# (epoll_wait and poll take milliseconds), Python 3.11's EpollSelector then rounds once more (ceil(8.1 ms) =
# 9 * 1e-3 = 0.009000000000000001 s, which epoll.poll makes 10 ms), and waking an idle loop takes a little more.
# The last stretch before a frame's end is polled instead, so a frame leaves on time.
TIMER_SLACK_S = 0.0025
# Float slack when comparing wire-clock times (a byte due "now" must not wait for another wake-up).
_EPSILON_S = 1e-9


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
        self._window_s = max(TICK_S, self.byte_time_s)  # what a wake-up may hand over at once
        self._buffer = bytearray()
        self._next_start = 0.0
        self._handle: asyncio.Handle | None = None  # the pending wake-up (timer or poll), if any
        self._on_drained: Callable[[], None] | None = None

    @property
    def pending(self) -> int:
        """Bytes queued and not yet handed to the sink."""
        return len(self._buffer)

    def push(self, data: bytes) -> None:
        """Queue bytes; on an idle wire a long burst starts at once, a short one leaves whole when it may end."""
        if not data:
            return
        if not self._buffer:
            self._next_start = max(self._next_start, self._loop.time())
        self._buffer += data
        if self._handle is None:
            self._finish()
        # Otherwise a wake-up is pending; it reads the clock and the queue afresh, so it serves these bytes too.

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
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    # -- internals --------------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Hand over every byte whose start time has come, then plan the next wake-up."""
        self._handle = None
        now = self._loop.time()
        if now + _EPSILON_S >= self._next_start:
            self._release(int((now - self._next_start) / self.byte_time_s + _EPSILON_S) + 1)
        self._plan(now)

    def _finish(self) -> None:
        """The wake-up for the rest of the queue: hand it all over once its last byte may start."""
        self._handle = None
        now = self._loop.time()
        last_start = self._last_start()
        if now + _EPSILON_S >= last_start:
            self._release(len(self._buffer))
        elif last_start - now > self._window_s:
            self._pump()  # more bytes came meanwhile than fit before a tick: back to ticks
            return
        self._plan(now)

    def _last_start(self) -> float:
        return self._next_start + (len(self._buffer) - 1) * self.byte_time_s

    def _release(self, count: int) -> None:
        count = min(count, len(self._buffer))
        if not count:
            return
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        self._next_start += count * self.byte_time_s
        # The sink may fail and call clear() on us; _plan then sees an empty queue.
        self._sink(chunk)

    def _plan(self, now: float) -> None:
        if self._handle is not None:
            return
        if not self._buffer:
            if self._on_drained is not None:
                callback, self._on_drained = self._on_drained, None
                callback()
            return
        last_start = self._last_start()
        wait = last_start - now
        if wait <= TIMER_SLACK_S:
            self._handle = self._loop.call_soon(self._finish)  # poll: a timer could not hit this
        elif wait <= self._window_s:
            # The rest fits before the next tick: one wake-up, aimed early by the timer's slack, then poll.
            self._handle = self._loop.call_at(last_start - TIMER_SLACK_S, self._finish)
        else:
            # A long burst: a tick's worth at a time (a late tick is caught up), never past the end's slack.
            when = max(self._next_start, min(now + TICK_S, last_start - TIMER_SLACK_S))
            self._handle = self._loop.call_at(when, self._pump)
