"""Incremental deframer for the serial line: bytes in, frames and error values out.

Design note
-----------
Wire format (serial protocol §1)::

    FF FF | len hi | len lo | cmd | sn | flags hi | flags lo | payload ... | checksum
    `---´   `------------------ every 0xFF here is sent as FF 55 ------------------´

`len` counts cmd .. checksum (logical bytes, >= 5); the checksum is the sum of the logical bytes from `len`
through the payload, mod 256.

:meth:`Deframer.feed` accepts chunks of any size and returns, in stream order, :class:`~gizdev.codec.frame.Frame`
values and :class:`~gizdev.errors.FrameError` values (never raised). It never raises on input and never holds
more than about two maximum-size frames of wire bytes, whatever it is fed.

Resync rules, in the order the parser applies them:

1. Hunting. A header is the *last two* bytes of a run of 0xFF, so garbage that ends in FF (or a stray FF before
   a real header) cannot steal the real header's first byte. Everything skipped while hunting is garbage; one
   error is reported per contiguous run of garbage, when the run ends (a header is found) or on :meth:`flush`.
2. Inside a frame, after the header:

   * ``FF 55`` is one data byte 0xFF.
   * ``FF FF`` is a new header: the frame so far is reported as truncated and parsing restarts at that FF
     (rule 1 applies, so the last two FF of the run become the header).
   * ``FF x`` (x not 55/FF) is bad stuffing, except for the GAgent quirk of §1.3 (its plain ACKs are sent
     unstuffed): the FF is accepted as data when it is the `sn` of a frame with ``len == 5`` or when it is the
     checksum byte. ``x`` then belongs to what follows.
   * A checksum byte FF that is the last byte seen so far is ambiguous until the next byte arrives (55: stuffing,
     consumed; FF: a new header, so the frame is truncated; other: the unstuffed quirk). The frame is held until
     then, or until :meth:`flush` (the line went idle) accepts it.
   * `len` outside 5 .. ``max_frame_len - 4`` is reported as soon as the two length bytes are in; hunting
     resumes right after them.
   * A checksum mismatch is reported with the whole frame; hunting resumes after it.

   None of these can lose a later good frame: a frame body never contains ``FF FF`` (it would have been cut
   there), so every byte skipped after an error is one that could not start a header.

Fast path: when the two length bytes are plain and the whole frame is already buffered with no 0xFF in it, the
frame is sliced out in one step; only frames with 0xFF bytes or frames split across feeds go through the
byte-level walker, which resumes where it stopped.
"""

from __future__ import annotations

import re

from gizdev.codec.frame import (
    DEFAULT_MAX_FRAME_LEN,
    MIN_FRAME_LEN,
    MIN_LEN_FIELD,
    Frame,
)
from gizdev.codec.garbage import GARBAGE_SAMPLE_LEN, GarbageRun
from gizdev.errors import ChecksumError, FrameError

__all__ = ["GARBAGE_SAMPLE_LEN", "MAX_ALLOWED_FRAME_LEN", "Deframer"]

# A `len` whose high byte is 0xFF would put a run of three 0xFF right after the header, which rule 1 reads as a
# header starting one byte later; such lengths (>= 0xFF00) can never be received, so the cap stays below them.
MAX_ALLOWED_FRAME_LEN = 0xFEFF + 4  # logical bytes incl. header

_FF = 0xFF
_STUFF = 0x55
_FF_BYTE = b"\xff"
_FF_RUN = re.compile(rb"\xff+")
# Rounds of _unstuff_whole's fixed point; the FF count converges geometrically (about log2(len) rounds for a
# body that is all FF 55), and giving up only means the byte-level walker takes the frame.
_MAX_STUFF_ROUNDS = 16


class Deframer:
    """Pure incremental deframer: :meth:`feed` returns frames and error values in stream order."""

    __slots__ = (
        "_base",
        "_garbage",
        "_logical",
        "_max_len_field",
        "_rest",
        "_scan",
        "bytes_discarded",
        "errors",
        "frames",
        "max_frame_len",
    )

    def __init__(self, max_frame_len: int = DEFAULT_MAX_FRAME_LEN) -> None:
        if not MIN_FRAME_LEN <= max_frame_len <= MAX_ALLOWED_FRAME_LEN:
            raise ValueError(f"max_frame_len must be within {MIN_FRAME_LEN}..{MAX_ALLOWED_FRAME_LEN}")
        self.max_frame_len = max_frame_len
        self._max_len_field = max_frame_len - 4
        self.frames = 0
        self.errors = 0
        self.bytes_discarded = 0
        self._rest = b""  # unconsumed bytes: a partial header while hunting, else the frame from its header on
        self._base = 0  # stream offset of _rest[0]
        self._logical: bytearray | None = None  # logical bytes after the header of the frame in progress
        self._scan = 0  # index in _rest where the walker resumes
        self._garbage = GarbageRun()

    @property
    def pending_bytes(self) -> int:
        """Bytes held between feeds (a partial frame or header); bounded by about twice the frame cap."""
        return len(self._rest) + len(self._garbage.sample)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        """Consume a chunk of wire bytes; return the frames and errors it completed, in stream order."""
        out: list[Frame | FrameError] = []
        if not data:
            return out
        buf = self._rest + bytes(data) if self._rest else bytes(data)
        pos = 0
        logical = self._logical
        if logical is not None:
            pos = self._walk(buf, 0, self._scan, logical, out)
            if pos < 0:
                self._keep(buf, 0)
                return out
            self._logical = None
        self._hunt(buf, pos, out)
        return out

    def flush(self) -> list[Frame | FrameError]:
        """The line went idle: release a held frame, report a partial one as truncated, and start afresh."""
        out: list[Frame | FrameError] = []
        rest = self._rest
        logical = self._logical
        if logical is None:
            self._flush_hunting(rest, out)
        else:
            length = (logical[0] << 8 | logical[1]) if len(logical) >= 2 else -1
            if length >= 0 and self._scan == len(rest) - 1 and rest[-1] == _FF and len(logical) == length + 1:
                # Checksum byte FF with nothing after it: GAgent's unstuffed ACK (§1.3 quirk).
                logical.append(_FF)
                self._finish(rest, 0, len(rest), logical, out)
            else:
                self._error(out, "truncated frame (line idle before it completed)", rest, self._base)
        self._base += len(rest)
        self._rest = b""
        self._logical = None
        self._scan = 0
        return out

    # -- internals ---------------------------------------------------------------------------------------

    def _keep(self, buf: bytes, start: int) -> None:
        """Retain buf[start:] for the next feed."""
        self._base += start
        self._rest = buf[start:]

    def _hunt(self, buf: bytes, pos: int, out: list[Frame | FrameError]) -> None:
        # Hot loop: constants are literals and attributes are locals, since global and attribute lookups are a
        # measurable share of the per-frame cost (0xff = header/stuffing byte, 5 = MIN_LEN_FIELD).
        n = len(buf)
        find = buf.find
        max_len_field = self._max_len_field
        append = out.append
        frame = Frame
        frames = 0
        garbage = self._garbage.length > 0
        while True:
            j = find(b"\xff\xff", pos)
            if j < 0:
                # A final FF may be the first half of a header.
                end = n - 1 if n > pos and buf[n - 1] == 0xFF else n
                if end > pos:
                    self._add_garbage(buf, pos, end)
                self._keep(buf, end)
                break
            if j + 2 >= n:
                # Cannot tell yet whether the FF run goes on.
                if j > pos:
                    self._add_garbage(buf, pos, j)
                self._keep(buf, j)
                break
            if buf[j + 2] == 0xFF:
                run = _FF_RUN.match(buf, j)
                assert run is not None  # buf[j] is FF
                run_end = run.end()
                if run_end == n:
                    if n - 2 > pos:
                        self._add_garbage(buf, pos, n - 2)
                    self._keep(buf, n - 2)
                    break
                j = run_end - 2
            if j > pos:
                self._add_garbage(buf, pos, j)
                garbage = True
            if garbage:
                self._end_garbage(out)
                garbage = False
            # Fast path: plain length bytes and the whole frame buffered. With no 0xFF in it the frame is sliced
            # out as is; with 0xFF bytes that are all properly stuffed it is unstuffed with one replace().
            if j + 4 <= n:
                lo = buf[j + 3]
                if lo != 0xFF:  # buf[j + 2] is not FF: the header is the end of its FF run
                    length = buf[j + 2] << 8 | lo
                    end = j + 4 + length
                    if 5 <= length <= max_len_field and end <= n:
                        if find(b"\xff", j + 4, end) < 0:
                            expected = sum(buf[j + 2 : end - 1]) & 0xFF
                            actual = buf[end - 1]
                            if actual == expected:
                                append(
                                    frame(buf[j + 4], buf[j + 5], buf[j + 6] << 8 | buf[j + 7], buf[j + 8 : end - 1])
                                )
                                frames += 1
                                pos = end
                                continue
                            self._checksum_error(out, expected, actual, buf[j:end], j)
                            pos = end
                            continue
                        stuffed = _unstuff_whole(buf, j + 4, length)
                        if stuffed is not None:
                            body, end = stuffed
                            expected = (buf[j + 2] + lo + sum(body[:-1])) & 0xFF
                            actual = body[-1]
                            if actual == expected:
                                append(frame(body[0], body[1], body[2] << 8 | body[3], body[4:-1]))
                                frames += 1
                            else:
                                self._checksum_error(out, expected, actual, buf[j:end], j)
                            pos = end
                            continue
            logical = bytearray()
            pos = self._walk(buf, j, j + 2, logical, out)
            if pos < 0:
                self._logical = logical
                self._keep(buf, j)
                self._scan -= j
                break
        self.frames += frames

    def _walk(self, buf: bytes, h: int, j: int, logical: bytearray, out: list[Frame | FrameError]) -> int:
        """Unstuff the frame whose header is at buf[h] from wire index j on.

        Returns the index where hunting resumes, or -1 when more bytes are needed (then ``self._scan`` is the
        index to resume from and `logical` holds what was collected).
        """
        n = len(buf)
        find = buf.find
        length = (logical[0] << 8 | logical[1]) if len(logical) >= 2 else -1
        while True:
            have = len(logical)
            if length < 0 and have >= 2:
                length = logical[0] << 8 | logical[1]
                if not MIN_LEN_FIELD <= length <= self._max_len_field:
                    self._error(
                        out,
                        f"impossible length field {length} (allowed {MIN_LEN_FIELD}..{self._max_len_field})",
                        buf[h:j],
                        self._base + h,
                    )
                    return j
            need = 2 if length < 0 else length + 2
            if have == need:
                self._finish(buf, h, j, logical, out)
                return j
            if j >= n:
                self._scan = j
                return -1
            stop = min(n, j + need - have)
            k = find(_FF_BYTE, j, stop)
            if k < 0:
                logical += buf[j:stop]
                j = stop
                continue
            if k > j:
                logical += buf[j:k]
                j = k
                continue
            # buf[j] is 0xFF
            if j + 1 >= n:
                self._scan = j
                return -1
            nxt = buf[j + 1]
            if nxt == _STUFF:
                logical.append(_FF)
                j += 2
            elif nxt == _FF:
                self._error(out, "truncated frame (a new ff ff header arrived)", buf[h:j], self._base + h)
                return j
            elif length >= 0 and (have == length + 1 or (length == MIN_LEN_FIELD and have == 3)):
                # GAgent sends some ACKs unstuffed: FF as the checksum, or as the sn of an empty frame (§1.3).
                logical.append(_FF)
                j += 1
            else:
                # The byte after the FF goes with the bad frame: it is not FF, so it cannot start a header.
                self._error(out, f"0xff followed by 0x{nxt:02x} (bad stuffing)", buf[h : j + 2], self._base + h)
                return j + 2

    def _finish(self, buf: bytes, h: int, end: int, logical: bytearray, out: list[Frame | FrameError]) -> None:
        expected = sum(logical[:-1]) & 0xFF
        actual = logical[-1]
        if actual == expected:
            self.frames += 1
            out.append(Frame(logical[2], logical[3], logical[4] << 8 | logical[5], bytes(logical[6:-1])))
        else:
            self._checksum_error(out, expected, actual, buf[h:end], h)

    def _checksum_error(
        self, out: list[Frame | FrameError], expected: int, actual: int, data: bytes, index: int
    ) -> None:
        self.errors += 1
        self.bytes_discarded += len(data)
        out.append(ChecksumError(expected=expected, actual=actual, data=data, offset=self._base + index))

    def _error(self, out: list[Frame | FrameError], reason: str, data: bytes, offset: int) -> None:
        self.errors += 1
        self.bytes_discarded += len(data)
        out.append(FrameError(reason, data=data, offset=offset))

    def _add_garbage(self, buf: bytes, start: int, end: int) -> None:
        self._garbage.add(buf, start, end, self._base)

    def _end_garbage(self, out: list[Frame | FrameError]) -> None:
        count = self._garbage.length
        error = self._garbage.close()
        if error is not None:
            self.errors += 1
            self.bytes_discarded += count
            out.append(error)

    def _flush_hunting(self, rest: bytes, out: list[Frame | FrameError]) -> None:
        # While hunting, _rest is empty, a lone FF, or the tail of an FF run ending in a header.
        if len(rest) >= 2:
            self._add_garbage(rest, 0, len(rest) - 2)
            if self._garbage.length:
                self._end_garbage(out)
            self._error(out, "truncated frame (header only)", rest[-2:], self._base + len(rest) - 2)
            return
        if rest:
            self._add_garbage(rest, 0, len(rest))
        if self._garbage.length:
            self._end_garbage(out)


def _unstuff_whole(buf: bytes, start: int, length: int) -> tuple[bytes, int] | None:
    """Logical bytes (cmd .. checksum) and wire end of a frame whose 0xFF bytes are all stuffed, else None.

    Each stuffed 0xFF adds one wire byte, so the wire end is found by counting 0xFF up to a fixed point. Anything
    unusual (unbuffered end, FF FF, FF not followed by 55, the GAgent quirks) returns None and is left to the
    byte-level walker.
    """
    n = len(buf)
    k = buf.count(b"\xff", start, start + length)
    for _ in range(_MAX_STUFF_ROUNDS):
        end = start + length + k
        if end > n:
            return None
        k2 = buf.count(b"\xff", start, end)
        if k2 == k:
            region = buf[start:end]
            if region.count(b"\xff\x55") != k:
                return None
            return region.replace(b"\xff\x55", b"\xff"), end
        k = k2
    return None
