"""The serial link: one asyncio protocol per wire, in either role (module or MCU).

Design note
-----------
Below: any ``asyncio.Transport`` (serial port, pty, socket, in-memory pair). Above: a session that owns the link
and gives it a *handler* for the peer's requests. Frames are cut by the pure :class:`~gizdev.codec.Deframer`.

Requests we start (:meth:`SerialLink.request`)::

    take the per-direction lock (one outstanding request per direction, serial protocol §3 "pending slots")
    sn = next sequence number (wraps 255 -> 0)
    send; wait ACK_TIMEOUT_S for cmd+1 with the same sn; resend the identical bytes up to `resends` times
    -> the ACK frame (its payload is the reply: device info, read reply, time...) or AckTimeout

An ACK must echo the request's sn (GAgent and GoKit firmware require it, §3); ``lenient_ack_sn`` also accepts a
cmd-only match, with a warning, for firmware that gets sn wrong (the vendor SDK itself ignores sn, §8.3).

Requests the peer starts: the handler returns the ACK payload (``bytes``; the ACK is cmd+1, same sn, flags copied
as the SDK does), or ``None`` / an error code when it cannot serve the command (we answer with an illegal-message
notice: code 0x02 for None).
The ACK goes out before any follow-up work, within the 200 ms the peer waits. A request whose (cmd, sn, payload)
equals one of the last few is a resend whose ACK got lost: we send the same ACK again and do not hand it to the
handler twice.

Bad input never kills the link: checksum errors are counted and answered with an illegal-message notice (0x12 from
the MCU role as the SDK does; 0x11 from the module role as GAgent does, §2.5); garbage is counted; unknown commands
get code 0x02. A notice from the peer is counted and logged, never answered (the SDK ignores 0x11, GAgent 0x12).
Only a broken transport ends the link: every pending request then fails with LinkClosed.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from gizdev.codec.commands import Command, IllegalMessageCode, is_reply
from gizdev.codec.frame import Frame, encode_frame
from gizdev.codec.framer import Deframer
from gizdev.errors import AckTimeout, ChecksumError, FrameError, LinkClosed, LinkError

__all__ = ["ACK_TIMEOUT_S", "DEFAULT_RESENDS", "LinkStats", "Role", "SerialLink"]

_LOGGER = logging.getLogger(__name__)

ACK_TIMEOUT_S = 0.2  # serial protocol §3: SEND_MAX_TIME / MCU_ACK_TIME_MS
DEFAULT_RESENDS = 2  # serial protocol §3: SDK V03030000 and GAgent both transmit 3 times in all
DUPLICATE_MEMORY = 8  # recent peer requests remembered for resend detection
# A peer resends at most DEFAULT_RESENDS times 200 ms apart (§3): its last resend comes ~400 ms after the first
# transmission. One more timeout of slack; beyond that an identical request is a new one (e.g. a restarted module).
DUPLICATE_WINDOW_S = ACK_TIMEOUT_S * (DEFAULT_RESENDS + 2)
_NOTICES = frozenset({Command.ILLEGAL_MESSAGE, Command.ILLEGAL_MESSAGE_REPLY})

#: Returns the ACK payload, or None / an IllegalMessageCode to answer with an illegal-message notice instead.
Handler = Callable[[Frame], bytes | IllegalMessageCode | None]


class Role(enum.Enum):
    MODULE = "module"
    MCU = "mcu"


#: Upper bounds (s) of the ACK round-trip histogram: a 9600-baud frame takes ~10-30 ms each way, 0.2 s is a resend.
ACK_RTT_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 1.0)


@dataclass(slots=True)
class Histogram:
    """Counts of observations at or below each bound (the last count: above every bound), and their sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(slots=True)
class LinkStats:
    """Counters of one link, or of a session's links across reconnections (read them; they only grow)."""

    frames_in: int = 0
    frames_out: int = 0
    bad_frames: int = 0
    checksum_errors: int = 0
    resends: int = 0
    duplicates: int = 0
    ack_timeouts: int = 0
    stray_acks: int = 0
    notices_in: int = 0
    frames_in_by_cmd: collections.Counter[int] = field(default_factory=collections.Counter)
    frames_out_by_cmd: collections.Counter[int] = field(default_factory=collections.Counter)
    bad_frames_by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    ack_rtt: Histogram = field(default_factory=lambda: Histogram(ACK_RTT_BUCKETS_S))

    def to_json(self) -> dict[str, object]:
        """JSON-ready counters (commands as 0xNN strings; dataclasses.asdict would mangle the Counters)."""
        plain = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if isinstance(getattr(self, name), int)
        }
        return {
            **plain,
            "frames_in_by_cmd": {f"0x{cmd:02x}": n for cmd, n in sorted(self.frames_in_by_cmd.items())},
            "frames_out_by_cmd": {f"0x{cmd:02x}": n for cmd, n in sorted(self.frames_out_by_cmd.items())},
            "bad_frames_by_reason": dict(self.bad_frames_by_reason),
            "ack_rtt": {"bounds_s": list(self.ack_rtt.bounds), "counts": list(self.ack_rtt.counts)},
        }


def bad_frame_reason(error: FrameError) -> str:
    """A short label for a bad frame: checksum, garbage or malformed."""
    if isinstance(error, ChecksumError):
        return "checksum"
    return "garbage" if "garbage" in error.reason else "malformed"


@dataclass(slots=True)
class _Pending:
    cmd: int
    sn: int
    ack: int
    future: asyncio.Future[Frame]


class SerialLink(asyncio.Protocol):
    """Sequence numbers, ACK matching, resends, duplicate suppression and illegal-message notices."""

    def __init__(
        self,
        role: Role,
        handler: Handler,
        *,
        ack_timeout: float = ACK_TIMEOUT_S,
        resends: int = DEFAULT_RESENDS,
        name: str = "",
        on_frame: Callable[[Frame], None] | None = None,
        on_lost: Callable[[Exception | None], None] | None = None,
        lenient_ack_sn: bool = False,
        stats: LinkStats | None = None,
    ) -> None:
        self.role = role
        self.handler = handler
        self.ack_timeout = ack_timeout
        self.resends = resends
        self.name = name or role.value
        self.lenient_ack_sn = lenient_ack_sn
        #: How long a request counts as a possible resend: the peer's whole resend cycle, with slack for a slow line.
        self.duplicate_window = DUPLICATE_WINDOW_S
        self.stats = stats if stats is not None else LinkStats()  # a session passes one that outlives its links
        self._on_frame = on_frame  # sees every good frame from the peer (heartbeat liveness, sniffing)
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._deframer = Deframer()
        self._sn = 0
        self._send_lock = asyncio.Lock()
        self._pending: _Pending | None = None
        # (cmd, sn, payload) -> (ACK bytes, loop time of the ACK); a match within the peer's resend window is a
        # resend, a later one a new request (a restarted peer counts sn from 0 again).
        self._recent: collections.OrderedDict[tuple[int, int, bytes], tuple[bytes, float]] = collections.OrderedDict()
        self._closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        #: Hook for fault injection (the virtual MCU): transforms or drops outgoing wire bytes.
        self.outgoing_filter: Callable[[bytes, bool], bytes | None] | None = None

    # ---- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        _LOGGER.debug("%s: link up", self.name)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = exc or LinkClosed(f"{self.name}: link closed")
        if self._pending is not None and not self._pending.future.done():
            self._pending.future.set_exception(LinkClosed(f"{self.name}: link closed: {reason}"))
        self._transport = None
        if not self._closed.done():
            self._closed.set_result(exc)
        _LOGGER.info("%s: link down (%s)", self.name, reason)
        if self._on_lost is not None:
            self._on_lost(exc)

    def data_received(self, data: bytes) -> None:
        for item in self._deframer.feed(data):
            if isinstance(item, Frame):
                self._frame_received(item)
            else:
                self._bad_frame(item)

    def eof_received(self) -> bool | None:
        return None

    def set_lost_callback(self, callback: Callable[[Exception | None], None] | None) -> None:
        """Called once when the transport goes away, with the reason (None for a local close)."""
        self._on_lost = callback

    # ---- state -----------------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def wait_closed(self) -> Exception | None:
        """Until the transport is gone; returns the reason (None for a local close)."""
        return await asyncio.shield(self._closed)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def flush_idle(self) -> None:
        """The line went idle: let the deframer complete a frame it was holding (a trailing unstuffed FF)."""
        for item in self._deframer.flush():
            if isinstance(item, Frame):
                self._frame_received(item)
            else:
                self._bad_frame(item)

    # ---- sending ---------------------------------------------------------------------------------------------

    def next_sn(self) -> int:
        sn = self._sn
        self._sn = (self._sn + 1) & 0xFF
        return sn

    def send(self, cmd: int, payload: bytes = b"", *, sn: int | None = None, flags: int = 0) -> int:
        """Send one frame without waiting for anything; returns its sn."""
        if sn is None:
            sn = self.next_sn()
        self._write(encode_frame(cmd, sn, payload, flags), cmd, is_ack=False)
        return sn

    async def request(
        self,
        cmd: int,
        payload: bytes = b"",
        *,
        flags: int = 0,
        resends: int | None = None,
        timeout: float | None = None,
    ) -> Frame:
        """Send a request and return its ACK frame, resending on silence; raises AckTimeout or LinkClosed."""
        resends = self.resends if resends is None else resends
        timeout = self.ack_timeout if timeout is None else timeout
        ack = cmd + 1
        async with self._send_lock:
            if not self.is_open:
                raise LinkClosed(f"{self.name}: link is not open")
            sn = self.next_sn()
            wire = encode_frame(cmd, sn, payload, flags)
            future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            self._pending = _Pending(cmd, sn, ack, future)
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            try:
                for attempt in range(resends + 1):
                    if attempt:
                        self.stats.resends += 1
                        _LOGGER.debug("%s: resend %d of cmd 0x%02x sn %d", self.name, attempt, cmd, sn)
                    self._write(wire, cmd, is_ack=False)
                    try:
                        async with asyncio.timeout(timeout):
                            reply = await asyncio.shield(future)
                        self.stats.ack_rtt.observe(loop.time() - sent_at)  # from the first transmission
                        return reply
                    except TimeoutError:
                        if not self.is_open:
                            raise LinkClosed(f"{self.name}: link closed while waiting for an ACK") from None
                self.stats.ack_timeouts += 1
                raise AckTimeout(cmd, sn, resends + 1, timeout)
            finally:
                self._pending = None
                if not future.done():
                    future.cancel()

    def _write(self, wire: bytes, cmd: int, *, is_ack: bool) -> None:
        if self._transport is None or self._transport.is_closing():
            raise LinkClosed(f"{self.name}: link is not open")
        if self.outgoing_filter is not None:
            filtered = self.outgoing_filter(wire, is_ack)
            if filtered is None:
                return
            wire = filtered
        self.stats.frames_out += 1
        self.stats.frames_out_by_cmd[cmd] += 1
        if _LOGGER.isEnabledFor(logging.DEBUG):  # hex() costs as much as a frame's whole codec work
            _LOGGER.debug("%s: -> %s", self.name, wire.hex())
        self._transport.write(wire)

    def write_raw(self, wire: bytes) -> None:
        """Bytes straight to the wire, past the fault filter (fault injection, tests); dropped if closed."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(wire)

    def _send_ack(self, request: Frame, payload: bytes) -> bytes:
        wire = encode_frame(request.cmd + 1, request.sn, payload, request.flags)
        self._write(wire, request.cmd + 1, is_ack=True)
        return wire

    def send_notice(self, code: IllegalMessageCode, sn: int) -> None:
        """An illegal-message notice about the peer's frame ``sn`` (0x12 from an MCU, 0x11 from a module)."""
        cmd = Command.ILLEGAL_MESSAGE_REPLY if self.role is Role.MCU else Command.ILLEGAL_MESSAGE
        self._write(encode_frame(cmd, sn, bytes((code,))), cmd, is_ack=True)

    # ---- receiving -------------------------------------------------------------------------------------------

    def _bad_frame(self, error: FrameError) -> None:
        self.stats.bad_frames += 1
        self.stats.bad_frames_by_reason[bad_frame_reason(error)] += 1
        _LOGGER.debug("%s: bad frame: %s", self.name, error)
        if isinstance(error, ChecksumError):
            self.stats.checksum_errors += 1
            sn = error.data[5] if len(error.data) > 5 else 0
            cmd = error.data[4] if len(error.data) > 4 else 0
            # Neither side complains about a damaged ACK: the sender's resend covers it (GAgent does the same).
            if not is_reply(cmd) and self.is_open:
                self.send_notice(IllegalMessageCode.CHECKSUM, sn)

    def _frame_received(self, frame: Frame) -> None:
        self.stats.frames_in += 1
        self.stats.frames_in_by_cmd[frame.cmd] += 1
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("%s: <- cmd 0x%02x sn %d %s", self.name, frame.cmd, frame.sn, frame.payload.hex())
        if self._on_frame is not None:
            self._on_frame(frame)
        if frame.cmd in _NOTICES:
            # Answered by neither role: the SDK's MCU drops a 0x11 (gizwitsHandle), GAgent a 0x12 (§2.5).
            self.stats.notices_in += 1
            _LOGGER.warning("%s: peer reports an illegal message: %s", self.name, frame.payload.hex())
            return
        if is_reply(frame.cmd):
            self._ack_received(frame)
            return
        key = (frame.cmd, frame.sn, frame.payload)
        now = asyncio.get_running_loop().time()
        if frame.cmd == Command.DEVICE_INFO_REQUEST:
            # Every module session starts with this request: what came before belongs to an earlier session.
            for old in [k for k in self._recent if k != key]:
                del self._recent[old]
        cached_ack = self._recent.get(key)
        cached = cached_ack[0] if cached_ack and now - cached_ack[1] <= self.duplicate_window else None
        if cached is not None:
            self.stats.duplicates += 1
            _LOGGER.debug("%s: resent request cmd 0x%02x sn %d: ACK again", self.name, frame.cmd, frame.sn)
            if self.is_open:
                self._write(cached, frame.cmd + 1, is_ack=True)
            return
        try:
            reply = self.handler(frame)
        except LinkError:
            raise
        except Exception:  # a handler bug must not kill the stream; the peer will resend
            _LOGGER.exception("%s: handler failed on cmd 0x%02x", self.name, frame.cmd)
            return
        if not self.is_open:
            return
        if reply is None or isinstance(reply, IllegalMessageCode):
            self.send_notice(reply or IllegalMessageCode.COMMAND, frame.sn)
            return
        self._recent.pop(key, None)
        self._recent[key] = (self._send_ack(frame, reply), now)
        while len(self._recent) > DUPLICATE_MEMORY:
            self._recent.popitem(last=False)

    def _ack_received(self, frame: Frame) -> None:
        pending = self._pending
        if pending is None or pending.future.done() or frame.cmd != pending.ack:
            self.stats.stray_acks += 1
            _LOGGER.debug("%s: stray ACK cmd 0x%02x sn %d", self.name, frame.cmd, frame.sn)
            return
        if frame.sn != pending.sn:
            if not self.lenient_ack_sn:
                # Most likely the late ACK of an earlier transmission: taking it could confirm the wrong request.
                self.stats.stray_acks += 1
                _LOGGER.debug("%s: ACK 0x%02x sn %d, expected sn %d", self.name, frame.cmd, frame.sn, pending.sn)
                return
            _LOGGER.warning(
                "%s: ACK 0x%02x carries sn %d, expected %d; accepted", self.name, frame.cmd, frame.sn, pending.sn
            )
        pending.future.set_result(frame)
