"""The two front ends of the trace: a relay observer that records and decodes live bytes, and a capture replay.

Both turn what they see into the same capture items and hand them to one
:class:`~gizdev.board.sniff.trace.TraceDecoder`, and the live side records exactly those items; that is why
``--replay`` of a recording prints the trace the live run printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from gizdev.board.sniff.capture import CaptureItem, Chunk, Direction, IdleMark, format_item, iso_time, read_capture
from gizdev.board.sniff.trace import TraceDecoder, TraceEvent

__all__ = ["TraceTap", "replay"]

Emit = Callable[[TraceEvent], None]


class TraceTap:
    """A relay observer: each chunk is written to the capture (if any), decoded, and its events emitted."""

    def __init__(self, decoder: TraceDecoder, emit: Emit, *, record: TextIO | None = None) -> None:
        self.decoder = decoder
        self.emit = emit
        self.record = record

    def relayed(self, direction: Direction, data: bytes, when: float) -> None:
        """A chunk went through the relay."""
        self.handle(Chunk(direction, data, iso_time(when)))

    def idle(self, direction: Direction, when: float) -> None:
        """The end of a burst: report a frame that stopped half way (only then is it worth a capture line)."""
        if self.decoder.pending(direction):
            self.handle(IdleMark(direction, iso_time(when)))
        if self.record is not None:
            # Once per burst, off the relay's path: a crash or a pulled plug loses at most the last burst.
            self.record.flush()

    def finish(self, when: float) -> None:
        """The capture ends: what is still pending is reported as at an idle line, and recorded as one."""
        for direction in Direction:
            self.idle(direction, when)
        if self.record is not None:
            self.record.flush()

    def handle(self, item: CaptureItem) -> None:
        """Record one item, decode it, emit its events."""
        if self.record is not None:
            self.record.write("".join(line + "\n" for line in format_item(item)))
        for event in self.decoder.feed(item):
            self.emit(event)


def replay(stream: TextIO, decoder: TraceDecoder, emit: Emit) -> None:
    """Decode a whole capture; bad lines become events; what is pending at the end is reported."""
    for item in read_capture(stream):
        for event in decoder.feed(item):
            emit(event)
    for event in decoder.finish():
        emit(event)
