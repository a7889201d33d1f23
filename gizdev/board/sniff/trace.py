"""Capture items in, trace events out: one incremental deframer per direction, frames described by the codec.

:class:`TraceDecoder` is pure (no I/O, no clock): the live relay and ``--replay`` feed it the same
:class:`~gizdev.board.sniff.capture.Chunk` values, so a recorded session replays to the same trace. A frame gets
the time of the chunk that completed it; an error found on an idle mark gets the mark's time.

Frames are described with :func:`~gizdev.codec.describe.describe_frame`, the function behind ``gizdev decode``,
so both commands print the same fields for the same frame. Nothing here raises on bad input: bad bytes, bad
payloads and bad capture lines all become events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gizdev.board.sniff.capture import CaptureError, CaptureItem, Chunk, Direction
from gizdev.codec.commands import Command
from gizdev.codec.describe import describe_frame
from gizdev.codec.frame import Frame
from gizdev.codec.framer import Deframer
from gizdev.codec.p0 import Product
from gizdev.errors import FrameError, GizdevError

__all__ = ["DirectionStats", "TraceDecoder", "TraceEvent", "event_json", "event_text"]

# Keys of describe_frame's output that the text trace shows in its fixed columns.
_HEAD_KEYS = frozenset({"cmd", "cmd_name", "sn", "flags", "action", "action_name"})


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One line of the trace.

    Exactly one of these holds: ``fields`` (a frame and its description), ``frame`` with ``error`` (a good frame
    whose payload does not decode), ``error`` alone (bytes that are not a frame, or a bad capture line).
    """

    time: str | None
    direction: Direction
    frame: Frame | None = None
    fields: dict[str, Any] | None = None
    error: GizdevError | None = None


@dataclass(slots=True)
class DirectionStats:
    """What one direction carried: bytes, good frames, bad stretches, frames whose payload did not decode."""

    bytes: int = 0
    frames: int = 0
    errors: int = 0
    undecodable: int = 0


@dataclass(slots=True)
class _Stream:
    deframer: Deframer = field(default_factory=Deframer)
    stats: DirectionStats = field(default_factory=DirectionStats)


class TraceDecoder:
    """Turns capture items into trace events; P0 bodies are decoded with ``product`` (hex without one)."""

    def __init__(self, product: Product | None = None) -> None:
        self.product = product
        self._streams = {direction: _Stream() for direction in Direction}
        self.bad_lines = 0

    def stats(self, direction: Direction) -> DirectionStats:
        """Counters of one direction so far."""
        return self._streams[direction].stats

    def pending(self, direction: Direction) -> bool:
        """True while bytes of that direction wait for the rest of a frame (an idle mark would report them)."""
        return self._streams[direction].deframer.pending_bytes > 0

    def feed(self, item: CaptureItem | CaptureError) -> list[TraceEvent]:
        """Events completed by one capture item (or the event for a bad capture line)."""
        if isinstance(item, CaptureError):
            self.bad_lines += 1
            return [TraceEvent(None, item.direction or Direction.UNKNOWN, error=item)]
        stream = self._streams[item.direction]
        if isinstance(item, Chunk):
            stream.stats.bytes += len(item.data)
            found = stream.deframer.feed(item.data)
        else:
            found = stream.deframer.flush()
        return [self._event(item.time, item.direction, stream.stats, found_item) for found_item in found]

    def finish(self, time: str | None = None) -> list[TraceEvent]:
        """The end of the input: report what every direction still holds (partial frames, trailing garbage)."""
        events: list[TraceEvent] = []
        for direction, stream in self._streams.items():
            events.extend(self._event(time, direction, stream.stats, found) for found in stream.deframer.flush())
        return events

    def _event(
        self, time: str | None, direction: Direction, stats: DirectionStats, found: Frame | FrameError
    ) -> TraceEvent:
        if isinstance(found, FrameError):
            stats.errors += 1
            return TraceEvent(time, direction, error=found)
        stats.frames += 1
        try:
            fields = describe_frame(found, self.product)
        except GizdevError as exc:
            stats.undecodable += 1
            return TraceEvent(time, direction, frame=found, error=exc)
        return TraceEvent(time, direction, frame=found, fields=fields)


def _command_name(cmd: int) -> str:
    """describe_frame's name for a command, for a frame it could not describe."""
    try:
        return Command(cmd).name.lower()
    except ValueError:
        return "unknown"


def event_json(event: TraceEvent) -> dict[str, Any]:
    """The JSON object of an event: time, dir, then describe_frame's fields or the error."""
    out: dict[str, Any] = {"time": event.time, "dir": str(event.direction)}
    if event.fields is not None:
        out.update(event.fields)
        return out
    error = event.error
    assert error is not None
    if event.frame is not None:
        frame = event.frame
        out.update(
            cmd=frame.cmd,
            cmd_name=_command_name(frame.cmd),
            sn=frame.sn,
            flags=frame.flags,
            payload=frame.payload.hex(),
            error=str(error),
        )
    elif isinstance(error, CaptureError):
        out.update(line=error.line, error=error.reason)
    elif isinstance(error, FrameError):
        out.update(error=error.reason, data=error.data.hex(), offset=error.offset)
    else:  # pragma: no cover - the decoder only makes the kinds above
        out.update(error=str(error))
    return out


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def event_text(event: TraceEvent) -> str:
    """One readable trace line: time, direction, command, sn, then the decoded fields or what went wrong."""
    head = f"{event.time or '-'} {event.direction:<7}"
    fields = event.fields
    if fields is not None:
        parts = [f"{head} {fields['cmd_name']}(0x{fields['cmd']:02x}) sn={fields['sn']}"]
        if fields["flags"]:
            parts.append(f"flags=0x{fields['flags']:04x}")
        if "action_name" in fields:
            parts.append(str(fields["action_name"]))
        for key, value in fields.items():
            if key in _HEAD_KEYS:
                continue
            if key == "attrs" and isinstance(value, dict):
                parts.extend(f"{name}={_value_text(item)}" for name, item in value.items())
            else:
                parts.append(f"{key}={_value_text(value)}")
        return " ".join(parts)
    error = event.error
    assert error is not None
    if event.frame is not None:
        frame = event.frame
        return (
            f"{head} {_command_name(frame.cmd)}(0x{frame.cmd:02x}) sn={frame.sn} "
            f"UNDECODABLE payload={frame.payload.hex()}: {error}"
        )
    if isinstance(error, CaptureError):
        return f"{head} BAD LINE {error.line}: {error.reason}"
    return f"{head} BAD BYTES {error}"
