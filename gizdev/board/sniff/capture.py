"""The capture file of ``gizdev sniff``: serial bytes as hex lines, with optional time and direction.

Format (one line per chunk of bytes; UTF-8 text)::

    [TIME] [DIR] HEX            a chunk of wire bytes (0x55 stuffing included)
    [TIME] DIR idle             the line went idle in that direction (a recorder wrote it: a partial frame ends)
    # comment                   ignored, as are blank lines and anything after a '#'

* TIME is an ISO 8601 timestamp (``2026-11-26T02:30:00.123456Z``; a ``+00:00`` style offset works too) or
  seconds with a decimal point (``0.123``, e.g. since the start of a capture). A plain number without a point
  would read as hex, so it is not a time.
* DIR is ``mcu>mod`` (also ``>``: the MCU sends, the module receives) or ``mod>mcu`` (also ``<``), or ``?``.
  Without DIR the direction is unknown: such bytes are decoded with their own deframer.
* HEX is bytes as pairs of hex digits, contiguous or separated by spaces or colons (``ffff0005``,
  ``ff ff 00 05``, ``ff:ff:00:05``); every group has an even number of digits.

Frames may be split over lines and lines may hold several frames: the bytes of each direction form one stream.
Times are shown, never interpreted: a gap between timestamps does not end a partial frame, an ``idle`` line (or
the end of the capture) does, so a replay reports exactly what the live run reported.
A line that breaks these rules is skipped and reported (:class:`CaptureError` with its line number) and reading
goes on; lines over :data:`MAX_LINE_CHARS` characters are reported the same way without being held in memory.

Example::

    # gizdev sniff capture
    2026-11-26T02:30:00.123456Z mod>mcu ffff000501000006
    2026-11-26T02:30:00.131002Z mcu>mod ffff007102000000 ...
    0.500 < ff ff 00 05 07 01 00 00 0d
    ffff000508010000 0e
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from gizdev.errors import CodecError

__all__ = [
    "IDLE_WORD",
    "MAX_LINE_CHARS",
    "RECORD_BYTES_PER_LINE",
    "CaptureError",
    "CaptureItem",
    "Chunk",
    "Direction",
    "IdleMark",
    "format_item",
    "iso_time",
    "parse_line",
    "read_capture",
]

#: Longest line read; a hex dump of a 64 KiB burst with spaces fits. Longer lines are skipped unread.
MAX_LINE_CHARS = 1 << 20
#: Bytes per line the recorder writes (a longer chunk becomes several lines with the same time).
RECORD_BYTES_PER_LINE = 64
IDLE_WORD = "idle"

_RELATIVE_TIME = re.compile(r"\d+\.\d+")
_DATE_LIKE = re.compile(r"\d{4}-")  # hex never holds '-': such a token was meant as a timestamp
_HEX_GROUP = re.compile(r"[0-9a-fA-F]*")
_SHOWN_CHARS = 40  # of a bad token in an error message


class Direction(enum.StrEnum):
    """Which way bytes travel on the wire; the value is how captures and traces write it."""

    MCU_TO_MODULE = "mcu>mod"
    MODULE_TO_MCU = "mod>mcu"
    UNKNOWN = "?"


_DIRECTIONS = {
    "mcu>mod": Direction.MCU_TO_MODULE,
    "mcu>module": Direction.MCU_TO_MODULE,
    ">": Direction.MCU_TO_MODULE,
    "mod>mcu": Direction.MODULE_TO_MCU,
    "module>mcu": Direction.MODULE_TO_MCU,
    "<": Direction.MODULE_TO_MCU,
    "?": Direction.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes seen on the wire in one direction; ``time`` as the capture wrote it (None if it had none)."""

    direction: Direction
    data: bytes
    time: str | None = None


@dataclass(frozen=True, slots=True)
class IdleMark:
    """The line went quiet in one direction: a frame still incomplete there will not complete."""

    direction: Direction
    time: str | None = None


CaptureItem = Chunk | IdleMark


class CaptureError(CodecError):
    """A capture line that does not follow the format; ``line`` is its number (from 1)."""

    def __init__(self, reason: str, *, line: int, direction: Direction | None = None) -> None:
        self.line = line
        self.direction = direction
        super().__init__(reason, path=f"line {line}")


def iso_time(unix_s: float) -> str:
    """The capture's timestamp text for a Unix time: UTC, microseconds, ``Z``."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shown(token: str) -> str:
    return repr(token if len(token) <= _SHOWN_CHARS else token[:_SHOWN_CHARS] + "...")


def _is_time(token: str) -> bool:
    if _RELATIVE_TIME.fullmatch(token):
        return True
    if not _DATE_LIKE.match(token):
        return False
    try:
        datetime.fromisoformat(token)
    except ValueError:
        return False
    return True


def _hex(tokens: list[str], number: int, direction: Direction | None) -> bytes:
    groups = [group for token in tokens for group in token.split(":") if group]
    for group in groups:
        if not _HEX_GROUP.fullmatch(group):
            raise CaptureError(f"not hex: {_shown(group)}", line=number, direction=direction)
        if len(group) % 2:
            raise CaptureError(
                f"odd number of hex digits in {_shown(group)} (bytes are pairs of digits)",
                line=number,
                direction=direction,
            )
    return bytes.fromhex("".join(groups))


def parse_line(text: str, number: int = 0) -> CaptureItem | None:
    """One capture line: a Chunk, an IdleMark, or None for a blank or comment line; raises CaptureError."""
    text = text.partition("#")[0]
    tokens = text.split()
    if not tokens:
        return None
    time: str | None = None
    if _is_time(tokens[0]):
        time = tokens.pop(0)
    elif _DATE_LIKE.match(tokens[0]):
        raise CaptureError(f"not a timestamp: {_shown(tokens[0])}", line=number)
    direction: Direction | None = None
    if tokens and tokens[0].lower() in _DIRECTIONS:
        direction = _DIRECTIONS[tokens.pop(0).lower()]
    if not tokens:
        raise CaptureError("no bytes on the line (expected [TIME] [DIR] HEX)", line=number, direction=direction)
    if len(tokens) == 1 and tokens[0].lower() == IDLE_WORD:
        if direction is None:
            raise CaptureError("'idle' needs a direction (mcu>mod or mod>mcu)", line=number)
        return IdleMark(direction, time)
    data = _hex(tokens, number, direction)
    return Chunk(direction or Direction.UNKNOWN, data, time)


def read_capture(stream: TextIO) -> Iterator[CaptureItem | CaptureError]:
    """The items of a capture in order; each bad line yields its CaptureError and reading goes on."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            # Skip the rest of the line in bounded pieces: a hostile file cannot make us hold it whole.
            while line and not line.endswith("\n"):
                line = stream.readline(MAX_LINE_CHARS)
            yield CaptureError(f"line longer than {MAX_LINE_CHARS} characters; skipped", line=number)
            continue
        try:
            item = parse_line(line, number)
        except CaptureError as exc:
            yield exc
            continue
        if item is not None:
            yield item


def format_item(item: CaptureItem) -> list[str]:
    """The capture lines (without newline) that :func:`parse_line` reads back as the same item's bytes."""
    prefix = f"{item.time} {item.direction}" if item.time is not None else str(item.direction)
    if isinstance(item, IdleMark):
        return [f"{prefix} {IDLE_WORD}"]
    data = item.data
    return [
        f"{prefix} {data[start : start + RECORD_BYTES_PER_LINE].hex()}"
        for start in range(0, len(data), RECORD_BYTES_PER_LINE)
    ]
