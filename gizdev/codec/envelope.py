"""The business frame used over MQTT and the LAN (cloud protocol §1.6), and the short service header (§1.5).

Envelope::

    00 00 00 03 | len (1-4 bytes) | flag (1) | cmd (u16 BE) | sn (u32 BE, only 0x0093/0x0094) | payload
    protocol    | MQTT remaining-length varint: 7 bits a byte, least significant group first, bit 7 = "more";
                  counts flag + cmd + [sn] + payload

Service frame (topics ``cli2ser_req`` / ``ser2cli_res``): ``00 00 00 03 | cmd (u16 BE) | body``, no length, no flag.

The envelope has no checksum, so on a TCP stream (LAN port 12416) :class:`EnvelopeDeframer` can only resync by
searching for the next ``00 00 00 03`` and bounding the length. Garbage that itself contains ``00 00 00 03``
followed by a plausible length can swallow the bytes after it; TCP delivers no garbage, so in practice this only
matters after a peer bug, and the length cap limits the damage.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from construct import (
    Byte,
    Const,
    GreedyBytes,
    If,
    Int16ub,
    Int32ub,
    Prefixed,
    Struct,
    VarInt,
)

from gizdev.codec.garbage import GarbageRun
from gizdev.errors import CodecError, FrameError, PayloadError

__all__ = [
    "CMDS_WITH_SN",
    "DEFAULT_MAX_ENVELOPE_LEN",
    "ENVELOPE",
    "MAX_VARINT",
    "PROTOCOL_VERSION",
    "SERVICE",
    "BusinessCmd",
    "Envelope",
    "EnvelopeDeframer",
    "ServiceCmd",
    "ServiceFrame",
    "decode_envelope",
    "decode_service",
    "decode_varint",
    "encode_envelope",
    "encode_service",
    "encode_varint",
]

PROTOCOL_VERSION = b"\x00\x00\x00\x03"  # cloud protocol §1.6


class BusinessCmd(IntEnum):
    """Commands of the business frame that carry P0, on MQTT and the LAN alike (cloud protocol §1.6)."""

    TRANSMIT = 0x0090  # app/cloud -> device, no ACK; answered with TRANSMIT_REPLY
    TRANSMIT_REPLY = 0x0091  # device -> app/cloud: replies and every report
    CONTROL = 0x0093  # with sn: answered with CONTROL_REPLY carrying the same sn
    CONTROL_REPLY = 0x0094


class ServiceCmd(IntEnum):
    """Commands of the short service frames on ``cli2ser_req`` / ``ser2cli_res`` (cloud protocol §1.5)."""

    ONLINE_QUERY = 0x020F  # device: how many apps are online?
    ONLINE_COUNT = 0x0210  # cloud: u16 count
    OTA_PUSH = 0x0211


CMDS_WITH_SN = frozenset({0x0093, 0x0094})  # the only commands carrying a u32 sn, §1.6
MAX_VARINT_BYTES = 4  # MQTT remaining length, §1.6 (GA-util Tran2varc)
MAX_VARINT = 0x0FFF_FFFF  # 268 435 455, the largest 4-byte value
MIN_BODY_LEN = 3  # flag + cmd
MIN_BODY_LEN_WITH_SN = 7  # flag + cmd + sn
# Stream cap on `len` (bytes after the length field). GAgent's buffers are 4 KiB and large MCU uploads are sent
# in ~1 KiB pieces (§1.8); 64 KiB leaves ample room while bounding what a corrupt length can make us buffer.
DEFAULT_MAX_ENVELOPE_LEN = 65_536

# Reference declaration. construct's VarInt is the same LEB128 scheme as the MQTT remaining length (but not
# limited to 4 bytes, which the hand-written functions enforce).
ENVELOPE = Struct(
    "protocol" / Const(PROTOCOL_VERSION),
    "body"
    / Prefixed(
        VarInt,
        Struct(
            "flag" / Byte,
            "cmd" / Int16ub,
            "sn" / If(lambda ctx: ctx.cmd in CMDS_WITH_SN, Int32ub),
            "payload" / GreedyBytes,
        ),
    ),
)
SERVICE = Struct("protocol" / Const(PROTOCOL_VERSION), "cmd" / Int16ub, "body" / GreedyBytes)


class Envelope(NamedTuple):
    """One business frame; `sn` is set exactly for cmd 0x0093/0x0094."""

    cmd: int
    payload: bytes
    sn: int | None = None
    flag: int = 0


class ServiceFrame(NamedTuple):
    """One short-header service frame (``cli2ser_req`` / ``ser2cli_res``)."""

    cmd: int
    body: bytes


def encode_varint(value: int) -> bytes:
    """MQTT remaining-length encoding of `value` (0 .. 268 435 455)."""
    if not 0 <= value <= MAX_VARINT:
        raise PayloadError(f"length {value} out of range 0..{MAX_VARINT}", path="envelope/len")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int] | None:
    """Decode a remaining length at `offset`: (value, offset after it), or None if more bytes are needed.

    Raises FrameError when a fourth byte still has its continuation bit set. Non-minimal encodings (``80 00``)
    are accepted, as GAgent's decoder accepts them.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(data):
            return None
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, offset + i + 1
    raise FrameError(
        "length field longer than 4 bytes",
        data=bytes(data[offset : offset + MAX_VARINT_BYTES]),
        offset=offset,
    )


def _check_envelope_args(cmd: int, payload: bytes, sn: int | None, flag: int) -> None:
    if not 0 <= cmd <= 0xFFFF:
        raise PayloadError(f"cmd {cmd} out of range 0..0xffff", path="envelope/cmd")
    if not 0 <= flag <= 0xFF:
        raise PayloadError(f"flag {flag} out of range 0..255", path="envelope/flag")
    if cmd in CMDS_WITH_SN:
        if sn is None:
            raise PayloadError(f"cmd 0x{cmd:04x} needs an sn", path="envelope/sn")
        if not 0 <= sn <= 0xFFFF_FFFF:
            raise PayloadError(f"sn {sn} out of range 0..0xffffffff", path="envelope/sn")
    elif sn is not None:
        raise PayloadError(f"cmd 0x{cmd:04x} carries no sn (only 0x0093/0x0094 do)", path="envelope/sn")


def encode_envelope(cmd: int, payload: bytes = b"", *, sn: int | None = None, flag: int = 0) -> bytes:
    """Bytes of one business frame; `sn` must be given exactly for cmd 0x0093/0x0094."""
    _check_envelope_args(cmd, payload, sn, flag)
    head = bytes((flag, cmd >> 8, cmd & 0xFF))
    if sn is not None:
        head += sn.to_bytes(4, "big")
    body = head + bytes(payload)
    return PROTOCOL_VERSION + encode_varint(len(body)) + body


def _envelope_from_body(body: bytes, *, data: bytes, offset: int) -> Envelope:
    """Envelope from the bytes counted by `len`; `data`/`offset` are what errors report."""
    if len(body) < MIN_BODY_LEN:
        raise FrameError(f"length {len(body)} too short for flag and cmd", data=data, offset=offset)
    flag = body[0]
    cmd = body[1] << 8 | body[2]
    if cmd in CMDS_WITH_SN:
        if len(body) < MIN_BODY_LEN_WITH_SN:
            raise FrameError(
                f"length {len(body)} too short for cmd 0x{cmd:04x} with its 4-byte sn", data=data, offset=offset
            )
        return Envelope(cmd, body[7:], int.from_bytes(body[3:7], "big"), flag)
    return Envelope(cmd, body[3:], None, flag)


def decode_envelope(data: bytes) -> Envelope:
    """Parse exactly one business frame (strict: a short, long or malformed input raises FrameError)."""
    data = bytes(data)
    if data[:4] != PROTOCOL_VERSION:
        raise FrameError("does not start with 00 00 00 03", data=data)
    decoded = decode_varint(data, 4)
    if decoded is None:
        raise FrameError("truncated length field", data=data, offset=4)
    length, start = decoded
    if start + length != len(data):
        what = "truncated envelope" if start + length > len(data) else "trailing bytes after envelope"
        raise FrameError(f"{what}: length {length} needs {start + length} bytes, got {len(data)}", data=data)
    return _envelope_from_body(data[start:], data=data, offset=0)


def encode_service(cmd: int, body: bytes = b"") -> bytes:
    """Bytes of one short-header service frame."""
    if not 0 <= cmd <= 0xFFFF:
        raise PayloadError(f"cmd {cmd} out of range 0..0xffff", path="service/cmd")
    return PROTOCOL_VERSION + cmd.to_bytes(2, "big") + bytes(body)


def decode_service(data: bytes) -> ServiceFrame:
    """Parse one short-header service frame (the body runs to the end of `data`)."""
    data = bytes(data)
    if data[:4] != PROTOCOL_VERSION:
        raise FrameError("does not start with 00 00 00 03", data=data)
    if len(data) < 6:
        raise FrameError(f"service frame of {len(data)} bytes has no 2-byte cmd", data=data)
    return ServiceFrame(data[4] << 8 | data[5], data[6:])


class EnvelopeDeframer:
    """Pure incremental splitter of a TCP byte stream into envelopes and error values."""

    __slots__ = (
        "_base",
        "_garbage",
        "_rest",
        "bytes_discarded",
        "errors",
        "frames",
        "max_length",
    )

    def __init__(self, max_length: int = DEFAULT_MAX_ENVELOPE_LEN) -> None:
        if not MIN_BODY_LEN <= max_length <= MAX_VARINT:
            raise ValueError(f"max_length must be within {MIN_BODY_LEN}..{MAX_VARINT}")
        self.max_length = max_length
        self.frames = 0
        self.errors = 0
        self.bytes_discarded = 0
        self._rest = b""
        self._base = 0
        self._garbage = GarbageRun()

    @property
    def pending_bytes(self) -> int:
        """Bytes held between feeds; at most one envelope of `max_length` plus its header."""
        return len(self._rest) + len(self._garbage.sample)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Envelope | CodecError]:
        """Consume a chunk of the stream; return the envelopes and errors it completed, in stream order."""
        out: list[Envelope | CodecError] = []
        if not data:
            return out
        buf = self._rest + bytes(data) if self._rest else bytes(data)
        n = len(buf)
        pos = 0
        while True:
            j = buf.find(PROTOCOL_VERSION, pos)
            if j < 0:
                keep = _partial_header_len(buf, pos)
                self._add_garbage(buf, pos, n - keep)
                pos = n - keep
                break
            self._add_garbage(buf, pos, j)
            try:
                decoded = decode_varint(buf, j + 4)
            except FrameError:
                self._end_garbage(out)
                self._error(out, "length field longer than 4 bytes", buf[j : j + 8], j)
                pos = j + 1
                continue
            if decoded is None:
                pos = j
                break
            length, start = decoded
            if not MIN_BODY_LEN <= length <= self.max_length:
                self._end_garbage(out)
                self._error(
                    out, f"impossible length {length} (allowed {MIN_BODY_LEN}..{self.max_length})", buf[j:start], j
                )
                pos = j + 1
                continue
            end = start + length
            if end > n:
                pos = j
                break
            self._end_garbage(out)
            try:
                envelope = _envelope_from_body(buf[start:end], data=buf[j:end], offset=self._base + j)
            except FrameError as exc:
                self.errors += 1
                self.bytes_discarded += 1
                out.append(exc)
                # The header may have been garbage; rescan what it claimed rather than trust its length.
                pos = j + 1
                continue
            self.frames += 1
            out.append(envelope)
            pos = end
        self._base += pos
        self._rest = buf[pos:]
        return out

    def flush(self) -> list[Envelope | CodecError]:
        """The stream ended or went idle: report held bytes (partial envelope or garbage) and start afresh."""
        out: list[Envelope | CodecError] = []
        rest = self._rest
        if rest[:4] == PROTOCOL_VERSION:
            self._end_garbage(out)
            self._error(out, "truncated envelope", rest, 0)
            self.bytes_discarded += len(rest) - 1
        elif rest:
            self._add_garbage(rest, 0, len(rest))
        self._end_garbage(out)
        self._base += len(rest)
        self._rest = b""
        return out

    def _error(self, out: list[Envelope | CodecError], reason: str, data: bytes, index: int) -> None:
        # Only the first byte of a rejected header counts as discarded here: scanning resumes right after it,
        # and whatever follows is counted again as garbage or delivered.
        self.errors += 1
        self.bytes_discarded += 1
        out.append(FrameError(reason, data=data, offset=self._base + index))

    def _add_garbage(self, buf: bytes, start: int, end: int) -> None:
        self._garbage.add(buf, start, end, self._base)

    def _end_garbage(self, out: list[Envelope | CodecError]) -> None:
        count = self._garbage.length
        error = self._garbage.close()
        if error is not None:
            self.errors += 1
            self.bytes_discarded += count
            out.append(error)


def _partial_header_len(buf: bytes, pos: int) -> int:
    """Length of the longest suffix of buf[pos:] that is a proper prefix of the protocol header."""
    for keep in (3, 2, 1):
        if len(buf) - pos >= keep and buf.endswith(PROTOCOL_VERSION[:keep]):
            return keep
    return 0
