"""The serial frame between the MCU and the WiFi module (serial protocol §1).

Logical frame (before stuffing)::

    FF FF | len (u16 BE) | cmd | sn | flags (u16 BE) | payload (len - 5 bytes) | checksum
    header  `len` counts cmd .. checksum               checksum = sum(len .. payload) mod 256

On the wire every 0xFF after the 2-byte header is followed by an inserted 0x55 (§1.3); `len` and the checksum are
computed on the logical bytes and ignore the inserted bytes.

:data:`LOGICAL_FRAME` is the construct declaration and the reference; the hand-written functions below are the
hot path and are tested against it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from construct import (
    Bytes,
    Check,
    Checksum,
    Const,
    Int8ub,
    Int16ub,
    RawCopy,
    Rebuild,
    Struct,
    len_,
    this,
)

from gizdev.errors import ChecksumError, FrameError, PayloadError

__all__ = [
    "DEFAULT_MAX_FRAME_LEN",
    "HEADER",
    "LOGICAL_FRAME",
    "MAX_FRAME_LEN",
    "MAX_PAYLOAD_LEN",
    "MIN_FRAME_LEN",
    "MIN_LEN_FIELD",
    "STUFF_BYTE",
    "Frame",
    "checksum",
    "encode_frame",
    "encode_logical_frame",
    "parse_frame",
    "parse_logical_frame",
    "stuff",
    "unstuff",
]

HEADER = b"\xff\xff"  # serial protocol §1.1
STUFF_BYTE = 0x55  # inserted after every 0xFF that follows the header, §1.3
HEADER_LEN = 2  # bytes
MIN_LEN_FIELD = 5  # `len` of a frame without payload: cmd + sn + flags(2) + checksum, §1.1 / §1.6
MIN_FRAME_LEN = HEADER_LEN + 2 + MIN_LEN_FIELD  # 9 bytes, logical, §1.6
MAX_PAYLOAD_LEN = 0xFFFF - MIN_LEN_FIELD  # bytes; what the u16 `len` field can describe, §1.1
MAX_FRAME_LEN = MAX_PAYLOAD_LEN + MIN_FRAME_LEN  # 65 539 bytes, logical
# Receiver cap, logical bytes incl. header. GAgent's receive buffer is BUF_LEN = 4096 bytes (§1.6) and the
# largest real payloads (OTA pieces, default 256 B) are far smaller, so a 4096-byte payload plus the 9 framing
# bytes is the largest frame any known peer can take; anything longer on a serial line is noise.
DEFAULT_MAX_FRAME_LEN = 4096 + MIN_FRAME_LEN

_FF = b"\xff"
_FF55 = b"\xff\x55"
_BODY_HEAD = struct.Struct(">HBBH")  # len, cmd, sn, flags


class Frame(NamedTuple):
    """One serial frame, payload unstuffed; `flags` is the 16-bit header flags word."""

    cmd: int
    sn: int
    flags: int
    payload: bytes


# The reference declaration of the logical frame. "body" is everything the checksum covers.
LOGICAL_FRAME = Struct(
    "header" / Const(HEADER),
    "body"
    / RawCopy(
        Struct(
            "len" / Rebuild(Int16ub, len_(this.payload) + MIN_LEN_FIELD),
            Check(this.len >= MIN_LEN_FIELD),
            "cmd" / Int8ub,
            "sn" / Int8ub,
            "flags" / Int16ub,
            "payload" / Bytes(this.len - MIN_LEN_FIELD),
        )
    ),
    "checksum" / Checksum(Int8ub, lambda data: sum(data) & 0xFF, this.body.data),
)


def checksum(logical_body: bytes | bytearray | memoryview) -> int:
    """Checksum of the logical bytes from `len` through the payload (header and checksum excluded)."""
    return sum(logical_body) & 0xFF


def stuff(logical: bytes) -> bytes:
    """Wire bytes of a logical frame: insert 0x55 after every 0xFF that follows the 2-byte header."""
    return logical[:HEADER_LEN] + logical[HEADER_LEN:].replace(_FF, _FF55)


def unstuff(wire: bytes) -> bytes:
    """Logical bytes of a wire frame (strict: every 0xFF after the header must be followed by 0x55)."""
    body = wire[HEADER_LEN:]
    ff_count = body.count(_FF)
    if ff_count:
        # FF55 occurrences cannot overlap, so equal counts mean every FF is followed by 55.
        if body.count(_FF55) != ff_count:
            bad = _first_bad_stuffing(body)
            raise FrameError("0xFF not followed by 0x55 (bad stuffing)", data=bytes(wire), offset=HEADER_LEN + bad)
        body = body.replace(_FF55, _FF)
    return bytes(wire[:HEADER_LEN]) + body


def _first_bad_stuffing(body: bytes) -> int:
    i = body.find(_FF)
    while i >= 0:
        if body[i + 1 : i + 2] != b"\x55":
            return i
        i = body.find(_FF, i + 2)
    return len(body)  # unreachable when called after a count mismatch


def _check_header_fields(cmd: int, sn: int, flags: int, payload: bytes) -> None:
    if not 0 <= cmd <= 0xFF:
        raise PayloadError(f"cmd {cmd} out of range 0..255", path="frame/cmd")
    if not 0 <= sn <= 0xFF:
        raise PayloadError(f"sn {sn} out of range 0..255", path="frame/sn")
    if not 0 <= flags <= 0xFFFF:
        raise PayloadError(f"flags {flags} out of range 0..0xffff", path="frame/flags")
    if len(payload) > MAX_PAYLOAD_LEN:
        raise PayloadError(
            f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_LEN} (u16 len field)", path="frame/payload"
        )


def encode_logical_frame(cmd: int, sn: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """Logical (unstuffed) frame bytes for one command."""
    _check_header_fields(cmd, sn, flags, payload)
    body = _BODY_HEAD.pack(len(payload) + MIN_LEN_FIELD, cmd, sn, flags) + bytes(payload)
    return HEADER + body + bytes((sum(body) & 0xFF,))


def encode_frame(cmd: int, sn: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """Wire (stuffed) frame bytes for one command."""
    _check_header_fields(cmd, sn, flags, payload)
    body = _BODY_HEAD.pack(len(payload) + MIN_LEN_FIELD, cmd, sn, flags) + bytes(payload)
    body += bytes((sum(body) & 0xFF,))
    return HEADER + body.replace(_FF, _FF55)


def parse_logical_frame(logical: bytes, *, wire: bytes | None = None) -> Frame:
    """Parse exactly one logical (unstuffed) frame; `wire` is what error messages show, if given."""
    shown = bytes(logical if wire is None else wire)
    if len(logical) < MIN_FRAME_LEN:
        raise FrameError(f"frame of {len(logical)} bytes is shorter than {MIN_FRAME_LEN}", data=shown)
    if logical[:HEADER_LEN] != HEADER:
        raise FrameError("frame does not start with the ff ff header", data=shown)
    length, cmd, sn, flags = _BODY_HEAD.unpack_from(logical, HEADER_LEN)
    if length < MIN_LEN_FIELD:
        raise FrameError(f"impossible length field {length} (< {MIN_LEN_FIELD})", data=shown, offset=HEADER_LEN)
    if length + 4 != len(logical):
        what = "truncated" if length + 4 > len(logical) else "trailing bytes after"
        raise FrameError(
            f"{what} frame: length field {length} needs {length + 4} bytes, got {len(logical)}",
            data=shown,
            offset=HEADER_LEN,
        )
    expected = sum(logical[HEADER_LEN:-1]) & 0xFF
    actual = logical[-1]
    if actual != expected:
        raise ChecksumError(expected=expected, actual=actual, data=shown)
    return Frame(cmd, sn, flags, bytes(logical[8:-1]))


def parse_frame(wire: bytes) -> Frame:
    """Parse exactly one complete wire (stuffed) frame; raises FrameError or ChecksumError."""
    wire = bytes(wire)
    if len(wire) < MIN_FRAME_LEN:
        raise FrameError(f"frame of {len(wire)} bytes is shorter than {MIN_FRAME_LEN}", data=wire)
    if wire[:HEADER_LEN] != HEADER:
        raise FrameError("frame does not start with the ff ff header", data=wire)
    return parse_logical_frame(unstuff(wire), wire=wire)
