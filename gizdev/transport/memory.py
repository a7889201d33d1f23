"""Two connected in-memory transports, with knobs that make the "wire" misbehave, for unit tests.

Each direction has its own :class:`LinkKnobs` and its own ``random.Random(seed)``, so a lossy run is
reproducible byte for byte. Knobs apply per written byte, in this order: loss (the byte vanishes), corruption
(it is replaced by a different random byte); then the surviving bytes are cut into chunks and delivered after
``delay`` seconds. Delivery always goes through the event loop, one chunk per callback, so a protocol never sees
``data_received`` inside its own ``write`` and other tasks (timers, resends) run between chunks, as on a real
line. Order is kept whatever the delay.

``close()`` on one side: its protocol hears ``connection_lost(None)``; the bytes already on the wire still
reach the peer, whose protocol then hears ``connection_lost(TransportError)``. ``abort()`` drops the bytes on
the wire first.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from gizdev.errors import TransportError
from gizdev.transport._base import LinkTransport

__all__ = ["LinkCounters", "LinkKnobs", "MemoryTransport", "memory_pair"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkKnobs:
    """How one direction of a memory pair misbehaves; the defaults make a perfect wire."""

    chunk_size: int | None = None  # deliver in pieces of at most this many bytes (1 = byte by byte)
    loss: float = 0.0  # probability that a byte is dropped
    corruption: float = 0.0  # probability that a (surviving) byte is replaced by a different one
    delay: float = 0.0  # seconds between write() and delivery
    seed: int | None = None  # seed of this direction's random.Random

    def __post_init__(self) -> None:
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {self.chunk_size}")
        for name in ("loss", "corruption"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability, not {value}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, not {self.delay}")


@dataclass(slots=True)
class LinkCounters:
    """What happened to the bytes written into one direction of a memory pair."""

    sent: int = 0  # bytes passed to write()
    dropped: int = 0  # lost on the wire (the loss knob)
    corrupted: int = 0  # delivered, but changed (the corruption knob)
    delivered: int = 0  # handed to the peer's data_received


# A queue entry: (due time, chunk), or (due time, None) for "the writing side closed".
_Entry = tuple[float, bytes | None]


class _Wire:
    """One direction: mangles written bytes per the knobs and delivers them to the receiving transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, knobs: LinkKnobs) -> None:
        self._loop = loop
        self.knobs = knobs
        self.counters = LinkCounters()
        self._random = random.Random(knobs.seed)
        self._queue: deque[_Entry] = deque()
        self._timer: asyncio.Handle | None = None
        self.receiver: MemoryTransport | None = None

    def send(self, data: bytes) -> None:
        self.counters.sent += len(data)
        data = self._mangle(data)
        if not data:
            return
        due = self._loop.time() + self.knobs.delay
        size = self.knobs.chunk_size or len(data)
        for start in range(0, len(data), size):
            self._queue.append((due, data[start : start + size]))
        self._schedule()

    def send_close(self, *, drop_pending: bool) -> None:
        if drop_pending:
            self._queue.clear()
            self._cancel()
        self._queue.append((self._loop.time() + (0.0 if drop_pending else self.knobs.delay), None))
        self._schedule()

    def stop(self) -> None:
        """The receiver is gone: drop everything still on the wire."""
        self._queue.clear()
        self._cancel()

    def kick(self) -> None:
        self._schedule()

    def _mangle(self, data: bytes) -> bytes:
        knobs = self.knobs
        if not knobs.loss and not knobs.corruption:
            return data
        rand = self._random.random
        out = bytearray()
        for byte in data:
            if knobs.loss and rand() < knobs.loss:
                self.counters.dropped += 1
                continue
            if knobs.corruption and rand() < knobs.corruption:
                self.counters.corrupted += 1
                byte = (byte + self._random.randrange(1, 256)) & 0xFF  # noqa: PLW2901 - replaced on purpose
            out.append(byte)
        return bytes(out)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        receiver = self.receiver
        if self._timer is not None or not self._queue or receiver is None or receiver.reading_paused:
            return
        wait = self._queue[0][0] - self._loop.time()
        if wait > 0:
            self._timer = self._loop.call_later(wait, self._deliver_one)
        else:
            self._timer = self._loop.call_soon(self._deliver_one)

    def _deliver_one(self) -> None:
        self._timer = None
        receiver = self.receiver
        if not self._queue or receiver is None or receiver.reading_paused:
            return
        due, chunk = self._queue[0]
        if due > self._loop.time():
            self._schedule()  # a timer may fire a hair early (clock resolution)
            return
        self._queue.popleft()
        if chunk is None:
            receiver._peer_closed()
            return
        self.counters.delivered += len(chunk)
        receiver._deliver(chunk)
        self._schedule()


class MemoryTransport(LinkTransport):
    """One end of a :func:`memory_pair`; ``counters`` count the bytes this end wrote."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.Protocol,
        *,
        port: str,
        outbound: _Wire,
        inbound: _Wire,
    ) -> None:
        super().__init__(loop, protocol, port=port, extra={"knobs": outbound.knobs})
        self._outbound = outbound
        self._inbound = inbound
        self.reading_paused = False

    @property
    def counters(self) -> LinkCounters:
        """Counters of the direction from this end to its peer."""
        return self._outbound.counters

    @property
    def knobs(self) -> LinkKnobs:
        """Knobs of the direction from this end to its peer."""
        return self._outbound.knobs

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        """Put bytes on the wire; they arrive later, through the event loop."""
        if not data or not self._accepts_write():
            return
        self._outbound.send(bytes(data))

    def get_write_buffer_size(self) -> int:
        """Always 0: the wire takes everything at once."""
        return 0

    def close(self) -> None:
        """Close this end; bytes on the wire still reach the peer, then the peer hears the close."""
        self._close(drop_pending=False)

    def abort(self) -> None:
        """Close this end, dropping the bytes still on the wire; the peer hears the close at once."""
        self._close(drop_pending=True)

    def is_reading(self) -> bool:
        """True while data is being delivered to the protocol."""
        return not self.is_closing() and not self.reading_paused

    def pause_reading(self) -> None:
        """Hold incoming chunks (they wait on the wire) until :meth:`resume_reading`."""
        self.reading_paused = True

    def resume_reading(self) -> None:
        """Deliver the held chunks and what follows."""
        self.reading_paused = False
        self._inbound.kick()

    def _close(self, *, drop_pending: bool) -> None:
        if self.is_closing():
            return
        self._close_requested = True
        self._inbound.stop()
        self._outbound.send_close(drop_pending=drop_pending)
        self._connection_lost(None)

    def _deliver(self, chunk: bytes) -> None:
        if not self.is_closing():
            self._protocol.data_received(chunk)

    def _peer_closed(self) -> None:
        if self.is_closing():
            return
        self._inbound.stop()
        self._outbound.stop()
        self._connection_lost(TransportError(f"{self._port}: peer closed"))


def memory_pair(
    protocol_a: asyncio.Protocol,
    protocol_b: asyncio.Protocol,
    *,
    knobs_a_to_b: LinkKnobs | None = None,
    knobs_b_to_a: LinkKnobs | None = None,
    names: tuple[str, str] = ("a", "b"),
) -> tuple[MemoryTransport, MemoryTransport]:
    """Connect two protocols back to back; both hear ``connection_made`` before this returns (needs a running loop)."""
    loop = asyncio.get_running_loop()
    a_to_b = _Wire(loop, knobs_a_to_b or LinkKnobs())
    b_to_a = _Wire(loop, knobs_b_to_a or LinkKnobs())
    transport_a = MemoryTransport(loop, protocol_a, port=f"memory://{names[0]}", outbound=a_to_b, inbound=b_to_a)
    transport_b = MemoryTransport(loop, protocol_b, port=f"memory://{names[1]}", outbound=b_to_a, inbound=a_to_b)
    a_to_b.receiver = transport_b
    b_to_a.receiver = transport_a
    _LOGGER.debug("memory pair %s <-> %s: %s / %s", names[0], names[1], a_to_b.knobs, b_to_a.knobs)
    protocol_a.connection_made(transport_a)
    protocol_b.connection_made(transport_b)
    return transport_a, transport_b
