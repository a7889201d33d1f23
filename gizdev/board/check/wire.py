"""The checker's end of the serial line: every byte and frame the MCU sends, time-stamped, and frames sent as-is.

Why not :class:`~gizdev.link.SerialLink`: the link exists to hide what a conformance check must see (late or
mismatched ACKs, resends, damaged frames, how 0xFF bytes were stuffed) and to never misbehave, while the checker
has to time every answer, withhold ACKs and send damaged frames on purpose. So this is a thin tap over the same
pieces the link uses (:class:`~gizdev.codec.Deframer`, :func:`~gizdev.codec.frame.encode_frame`), playing the
module's part only where the MCU needs an answer to carry on: its requests are acknowledged as GAgent would
(reports with 0x06, the time with 0x18, module info with 0x22, the others with an empty ACK) unless
:attr:`Tap.withhold_reports` says otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gizdev.codec.commands import Command, ack_code, encode_payload, is_reply
from gizdev.codec.frame import MIN_FRAME_LEN, Frame, encode_frame
from gizdev.codec.framer import Deframer
from gizdev.errors import FrameError
from gizdev.link.module import DEFAULT_MODULE_INFO, network_time

__all__ = ["IDLE_FLUSH_S", "Seen", "Sent", "Tap"]

_LOGGER = logging.getLogger(__name__)

#: A line quiet this long lets the deframer settle a frame it holds (a final 0xFF that may or may not be stuffed).
IDLE_FLUSH_S = 0.1
MAX_RAW_BYTES = 4 * 1024 * 1024  # kept for the stuffing check; a conformance run moves far less


@dataclass(frozen=True, slots=True)
class Seen:
    """Something the MCU sent: a frame or a framing error, with the loop time it was complete."""

    t: float
    frame: Frame | None = None
    error: FrameError | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """A frame the checker put on the line (``wire`` exactly as written)."""

    t: float
    wire: bytes
    cmd: int
    sn: int
    auto: bool = False  # an answer the tap gave on its own (not a check's request)


class Tap(asyncio.Protocol):
    """Records everything the MCU sends; sends frames as given; acknowledges the MCU's own requests."""

    def __init__(self, name: str = "check") -> None:
        self.name = name
        self.seen: list[Seen] = []
        self.sent: list[Sent] = []
        self.raw = bytearray()  # every byte received, for the stuffing check
        #: While True, the MCU's reports (0x05) get no ACK (the resend check).
        self.withhold_reports = False
        self.withheld: list[Frame] = []
        self._deframer = Deframer()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._new = asyncio.Event()
        self._last_rx = self._loop.time()
        self._last_byte = -1
        self._sn = 0
        self._closed: asyncio.Future[None] = self._loop.create_future()

    # ---- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._closed.done():
            self._closed.set_result(None)
        self._new.set()

    def data_received(self, data: bytes) -> None:
        self._last_rx = self._loop.time()
        if data:
            self._last_byte = data[-1]
        if len(self.raw) + len(data) <= MAX_RAW_BYTES:
            self.raw += data
        self._take(self._deframer.feed(data))

    # ---- state -----------------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def now(self) -> float:
        return self._loop.time()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ---- sending -------------------------------------------------------------------------------------------

    def next_sn(self) -> int:
        sn = self._sn
        self._sn = (self._sn + 1) & 0xFF
        return sn

    def send(self, cmd: int, payload: bytes = b"", *, sn: int | None = None, flags: int = 0) -> Sent:
        """Encode and send one frame (a new sn unless given)."""
        if sn is None:
            sn = self.next_sn()
        return self.send_wire(encode_frame(cmd, sn, payload, flags), cmd, sn)

    def send_wire(self, wire: bytes, cmd: int, sn: int, *, auto: bool = False) -> Sent:
        """Bytes to the line as given (damaged frames included); ``cmd``/``sn`` say what they claim to be."""
        sent = Sent(self.now(), bytes(wire), cmd, sn, auto)
        self.sent.append(sent)
        if self._transport is not None and not self._transport.is_closing():
            if _LOGGER.isEnabledFor(logging.DEBUG):
                _LOGGER.debug("%s: -> %s", self.name, wire.hex())
            self._transport.write(wire)
        return sent

    # ---- receiving -------------------------------------------------------------------------------------------

    def _take(self, items: list[Frame | FrameError]) -> None:
        if not items:
            return
        now = self.now()
        for item in items:
            if isinstance(item, Frame):
                self.seen.append(Seen(now, frame=item))
                if _LOGGER.isEnabledFor(logging.DEBUG):
                    _LOGGER.debug("%s: <- cmd 0x%02x sn %d %s", self.name, item.cmd, item.sn, item.payload.hex())
                self._answer(item)
            else:
                self.seen.append(Seen(now, error=item))
                _LOGGER.debug("%s: bad frame: %s", self.name, item)
        self._new.set()

    def _answer(self, frame: Frame) -> None:
        """Acknowledge a request the MCU started, as the module would (reports unless withheld)."""
        cmd = frame.cmd
        if is_reply(cmd) or cmd in (Command.ILLEGAL_MESSAGE, Command.ILLEGAL_MESSAGE_REPLY):
            return
        ack = ack_code(cmd)
        if ack is None:
            return  # not a request the module knows; the checker only watches
        if cmd == Command.P0_UP and self.withhold_reports:
            self.withheld.append(frame)
            return
        payload = b""
        if cmd == Command.NETWORK_TIME_REQUEST:
            payload = encode_payload(Command.NETWORK_TIME_REPLY, network_time(time.time()))
        elif cmd == Command.MODULE_INFO_REQUEST:
            payload = encode_payload(Command.MODULE_INFO_REPLY, DEFAULT_MODULE_INFO)
        self.send_wire(encode_frame(ack, frame.sn, payload, frame.flags), ack, frame.sn, auto=True)

    def flush_if_idle(self) -> None:
        """Settle a whole frame whose last byte, 0xFF, may or may not be stuffed, once the line is quiet.

        Only then: a flush while a frame is still arriving (a stalled pty, a USB adapter's chunking) would cut it
        into damaged pieces, so a partial frame is left to the bytes that follow it.
        """
        held = self._deframer.pending_bytes
        if held >= MIN_FRAME_LEN and self._last_byte == 0xFF and self.now() - self._last_rx >= IDLE_FLUSH_S:
            self._take(self._deframer.flush())

    async def wait_for(self, match: Callable[[Seen], bool], timeout: float, start: int = 0) -> Seen | None:
        """The first item from index ``start`` on that matches, waiting up to ``timeout`` seconds for it."""
        deadline = self.now() + timeout
        index = start
        while True:
            while index < len(self.seen):
                item = self.seen[index]
                index += 1
                if match(item):
                    return item
            remaining = deadline - self.now()
            if remaining <= 0 or self._closed.done():
                self.flush_if_idle()
                if index < len(self.seen):
                    continue  # the flush completed something: look at it
                return None
            self._new.clear()
            try:
                async with asyncio.timeout(min(remaining, IDLE_FLUSH_S)):
                    await self._new.wait()
            except TimeoutError:
                self.flush_if_idle()

    async def quiet(self, seconds: float) -> None:
        """Listen (and keep answering) for a while."""
        await asyncio.sleep(seconds)
        self.flush_if_idle()
