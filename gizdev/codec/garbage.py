"""Accounting of bytes a stream deframer skips between frames: one error value per contiguous run."""

from __future__ import annotations

from gizdev.errors import FrameError

__all__ = ["GARBAGE_SAMPLE_LEN", "GarbageRun"]

GARBAGE_SAMPLE_LEN = 64  # bytes of a run kept in the error's `data`; the reason gives the exact count


class GarbageRun:
    """The run of skipped bytes in progress: a bounded sample, its exact length and its stream offset."""

    __slots__ = ("length", "sample", "start")

    def __init__(self) -> None:
        self.sample = bytearray()
        self.length = 0
        self.start = 0

    def add(self, buf: bytes, start: int, end: int, base: int) -> None:
        """Skip ``buf[start:end]``; ``base`` is the stream offset of ``buf[0]``."""
        if end <= start:
            return
        if not self.length:
            self.start = base + start
        room = GARBAGE_SAMPLE_LEN - len(self.sample)
        if room > 0:
            self.sample += buf[start : min(end, start + room)]
        self.length += end - start

    def close(self) -> FrameError | None:
        """The error describing the finished run (None if nothing was skipped); starts a new run."""
        if not self.length:
            return None
        count = self.length
        error = FrameError(
            f"{count} byte{'s' if count != 1 else ''} of garbage skipped", data=bytes(self.sample), offset=self.start
        )
        self.sample.clear()
        self.length = 0
        return error
