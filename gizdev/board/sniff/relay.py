"""The sniffer in the middle of the wire: two ports, every byte forwarded at once, then shown to an observer.

Wiring::

    MCU UART ──► adapter (--mcu-side) ──► Relay ──► adapter (--module-side) ──► module UART
             ◄──                      ◄──       ◄──                         ◄──

Rules, in order of importance:

1. Bytes go out unchanged, in order, none dropped: each chunk a port delivers is written to the other port
   *before* anything else looks at it, so a slow or failing observer cannot delay or lose a byte. An observer
   that raises is logged and the relay goes on.
2. The observer sees every chunk with the wall-clock time it arrived, and an ``idle`` call once a direction has
   been quiet for ``idle_s`` after data: a frame still incomplete then will not complete (a board reset or a
   dropped byte), so the trace can say so without waiting for the next frame.
3. If either port goes away (adapter unplugged, socket closed) the relay stops and closes the other one;
   :meth:`Relay.wait_closed` returns the reason.

The relay adds one read and one write per chunk; nothing else runs between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gizdev.board.sniff.capture import Direction
from gizdev.errors import TransportError
from gizdev.transport import open_port

__all__ = ["CLOSE_GRACE_S", "DEFAULT_IDLE_S", "Relay", "RelayObserver", "RelayStats"]

_LOGGER = logging.getLogger(__name__)

#: Silence that ends a burst. A 9600-baud UART sends a byte every ~1 ms and a frame without pauses (serial
#: protocol §1), so 30 ms of nothing means the sender stopped, even with a USB adapter's ~16 ms latency timer.
DEFAULT_IDLE_S = 0.03
#: How long a closing port may take to flush before it is cut (a peer that stopped reading never lets it finish).
CLOSE_GRACE_S = 1.0


class RelayObserver(Protocol):
    """What the relay reports to: every chunk after it was forwarded, and the end of each burst."""

    def relayed(self, direction: Direction, data: bytes, when: float) -> None:
        """``data`` arrived at ``when`` (Unix time) travelling ``direction``, and is already forwarded."""

    def idle(self, direction: Direction, when: float) -> None:
        """``direction`` has been quiet for the idle time since its last chunk."""


@dataclass(slots=True)
class RelayStats:
    """Bytes and chunks forwarded each way; observer calls that raised."""

    mcu_to_module_bytes: int = 0
    module_to_mcu_bytes: int = 0
    mcu_to_module_chunks: int = 0
    module_to_mcu_chunks: int = 0
    observer_failures: int = 0

    def bytes(self, direction: Direction) -> int:
        """Bytes forwarded in one direction."""
        return self.mcu_to_module_bytes if direction is Direction.MCU_TO_MODULE else self.module_to_mcu_bytes


class _Side(asyncio.Protocol):
    """One port of the relay; ``direction`` is the way the bytes it receives travel."""

    def __init__(self, relay: Relay, direction: Direction) -> None:
        self.relay = relay
        self.direction = direction
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.relay._received(self, data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        self.relay._side_lost(self, exc)


class Relay:
    """Forward bytes between an MCU-side and a module-side port, reporting them to an observer."""

    def __init__(
        self, observer: RelayObserver, *, idle_s: float = DEFAULT_IDLE_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.observer = observer
        self.idle_s = idle_s
        self.clock = clock
        self.stats = RelayStats()
        self._loop = asyncio.get_running_loop()
        self._mcu = _Side(self, Direction.MCU_TO_MODULE)
        self._module = _Side(self, Direction.MODULE_TO_MCU)
        self._mcu_name = ""
        self._module_name = ""
        self._started = False
        # Bytes that arrived on one port before the other was open; forwarded as soon as it is.
        self._early: dict[Direction, list[bytes]] = {Direction.MCU_TO_MODULE: [], Direction.MODULE_TO_MCU: []}
        self._last: dict[Direction, float] = {}
        self._timers: dict[Direction, asyncio.TimerHandle] = {}
        self._done: asyncio.Future[Exception | None] = self._loop.create_future()
        self._failures_logged = False

    async def open(self, mcu_side: str, module_side: str, *, baudrate: int = 9600) -> None:
        """Open both ports (serial device, pty path or socket://HOST:PORT) and start relaying."""
        self._mcu_name, self._module_name = mcu_side, module_side
        await open_port(mcu_side, lambda: self._mcu, baudrate=baudrate)
        try:
            await open_port(module_side, lambda: self._module, baudrate=baudrate)
        except BaseException:
            await self._close_side(self._mcu)
            raise
        self._started = True
        for side in (self._mcu, self._module):
            early, self._early[side.direction] = self._early[side.direction], []
            for data in early:
                self._received(side, data)
        _LOGGER.info("sniff: relaying %s (MCU side) <-> %s (module side)", mcu_side, module_side)

    async def wait_closed(self) -> Exception | None:
        """Until a port goes away (its reason) or :meth:`close` was called (None)."""
        return await asyncio.shield(self._done)

    async def close(self) -> None:
        """Stop relaying; both ports flush what they still have to write (up to CLOSE_GRACE_S), then close."""
        if not self._done.done():
            self._done.set_result(None)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await asyncio.gather(self._close_side(self._mcu), self._close_side(self._module))

    @property
    def stopped(self) -> bool:
        """True once a port went away or close() was called."""
        return self._done.done()

    # ---- the hot path ----------------------------------------------------------------------------------------

    def _received(self, side: _Side, data: bytes) -> None:
        direction = side.direction
        peer = self._module if side is self._mcu else self._mcu
        if not self._started:
            self._early[direction].append(data)
            return
        if peer.transport is not None:
            peer.transport.write(data)  # first, before anything can go wrong
        when = self.clock()
        stats = self.stats
        if direction is Direction.MCU_TO_MODULE:
            stats.mcu_to_module_bytes += len(data)
            stats.mcu_to_module_chunks += 1
        else:
            stats.module_to_mcu_bytes += len(data)
            stats.module_to_mcu_chunks += 1
        self._last[direction] = self._loop.time()
        if direction not in self._timers and not self._done.done():
            self._timers[direction] = self._loop.call_later(self.idle_s, self._check_idle, direction)
        self._observe(self.observer.relayed, direction, data, when)

    def _check_idle(self, direction: Direction) -> None:
        quiet = self._loop.time() - self._last[direction]
        if quiet < self.idle_s:
            # One timer per burst, pushed back rather than re-armed per chunk.
            self._timers[direction] = self._loop.call_later(self.idle_s - quiet, self._check_idle, direction)
            return
        del self._timers[direction]
        self._observe(self.observer.idle, direction, self.clock())

    def _observe(self, call: Callable[..., None], *args: object) -> None:
        try:
            call(*args)
        except Exception:  # the observer's trouble must never reach the relay: bytes keep flowing
            self.stats.observer_failures += 1
            if not self._failures_logged:
                self._failures_logged = True
                _LOGGER.exception("sniff: the trace observer failed (relaying goes on; further failures counted)")

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def _side_lost(self, side: _Side, exc: Exception | None) -> None:
        if self._done.done():
            return
        name = self._mcu_name if side is self._mcu else self._module_name
        reason = exc if exc is not None else TransportError(f"{name}: closed")
        _LOGGER.warning("sniff: %s side lost: %s", "MCU" if side is self._mcu else "module", reason)
        self._done.set_result(reason)
        other = self._module if side is self._mcu else self._mcu
        if other.transport is not None:
            other.transport.close()

    async def _close_side(self, side: _Side) -> None:
        transport = side.transport
        if transport is None:
            return
        transport.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE_S):
                await side.lost
        except TimeoutError:
            transport.abort()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_GRACE_S):
                    await side.lost
