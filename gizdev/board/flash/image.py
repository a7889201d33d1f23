"""Firmware images: raw ``.bin`` files placed at an address, and Intel HEX files (records 00-05) with gaps.

An image is a sorted tuple of non-overlapping, non-adjacent segments; what lies between segments is not written
(it stays erased). The Intel HEX reader is strict, because a half-understood file would put code at the wrong
address: every malformed, truncated or overlong line, bad checksum, unknown record, overlap or missing end record
is an error naming the line.

Intel HEX, for reference: each line is ``:LLAAAATT<data>CC``; LL = data length, AAAA = 16-bit offset, TT = type
(00 data, 01 end of file, 02 extended segment address = base/16, 03 start segment address, 04 extended linear
address = upper 16 bits, 05 start linear address), CC = two's complement of the sum of all preceding bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gizdev.board.flash.errors import FirmwareFileError

__all__ = ["MAX_IMAGE_BYTES", "FirmwareImage", "Segment", "load_bin", "load_firmware", "parse_intel_hex"]

#: No microcontroller we flash has more than a few MiB; a larger file is a mistake (or hostile), not firmware.
MAX_IMAGE_BYTES = 16 * 1024 * 1024
#: ':' + 2 hex digits per byte of the longest record (1 length + 2 offset + 1 type + 255 data + 1 checksum).
_MAX_LINE_CHARS = 1 + 2 * (1 + 2 + 1 + 255 + 1)
_ADDRESS_SPACE = 1 << 32

REC_DATA = 0x00
REC_EOF = 0x01
REC_EXT_SEGMENT = 0x02
REC_START_SEGMENT = 0x03
REC_EXT_LINEAR = 0x04
REC_START_LINEAR = 0x05
# The payload length each non-data record must have.
_FIXED_LENGTHS = {REC_EOF: 0, REC_EXT_SEGMENT: 2, REC_START_SEGMENT: 4, REC_EXT_LINEAR: 2, REC_START_LINEAR: 4}


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes to be written from ``address`` on."""

    address: int
    data: bytes

    @property
    def end(self) -> int:
        """The first address after the segment."""
        return self.address + len(self.data)


@dataclass(frozen=True, slots=True)
class FirmwareImage:
    """What to write: sorted, disjoint segments; ``entry`` is the start address a HEX file names, if any."""

    segments: tuple[Segment, ...]
    entry: int | None = None
    source: str = ""

    @property
    def start(self) -> int:
        """Lowest address written."""
        return self.segments[0].address

    @property
    def end(self) -> int:
        """First address after the highest one written."""
        return self.segments[-1].end

    @property
    def size(self) -> int:
        """Bytes to be written (gaps not counted)."""
        return sum(len(segment.data) for segment in self.segments)


def load_bin(path: str | os.PathLike[str], address: int) -> FirmwareImage:
    """A raw binary placed at ``address``."""
    name = os.fspath(path)
    data = _read_capped(name)
    if not data:
        raise FirmwareFileError(name, "the file is empty")
    if address < 0 or address + len(data) > _ADDRESS_SPACE:
        raise FirmwareFileError(name, f"{len(data)} bytes at 0x{address:x} do not fit into a 32-bit address space")
    return FirmwareImage((Segment(address, data),), source=name)


def load_firmware(
    path: str | os.PathLike[str], *, address: int | None = None, fmt: str = "auto", default_address: int | None = None
) -> FirmwareImage:
    """Load ``.hex``/``.ihex`` as Intel HEX, anything else as raw binary at ``address`` (or ``default_address``);
    ``fmt`` ("bin", "hex") overrides the extension."""
    name = os.fspath(path)
    if fmt == "auto":
        fmt = "hex" if Path(name).suffix.lower() in (".hex", ".ihex", ".ihx") else "bin"
    if fmt == "hex":
        if address is not None:
            raise FirmwareFileError(name, "an Intel HEX file carries its own addresses; --address is for .bin files")
        return parse_intel_hex(_read_capped(name, hex_text=True), source=name)
    if fmt == "bin":
        address = address if address is not None else default_address
        if address is None:
            raise FirmwareFileError(name, "a raw binary needs an address")
        return load_bin(name, address)
    raise FirmwareFileError(name, f"unknown firmware format {fmt!r} (expected auto, bin or hex)")


def _read_capped(name: str, *, hex_text: bool = False) -> bytes:
    # Hex text takes a little more than twice the bytes it describes, plus the record overhead.
    cap = MAX_IMAGE_BYTES * 3 if hex_text else MAX_IMAGE_BYTES
    try:
        with open(name, "rb") as file:
            data = file.read(cap + 1)
    except OSError as exc:
        raise FirmwareFileError(name, f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > cap:
        raise FirmwareFileError(name, f"larger than {cap} bytes; no firmware image is that big")
    return data


def parse_intel_hex(text: bytes, *, source: str = "<hex>") -> FirmwareImage:
    """Parse Intel HEX (I8HEX, I16HEX or I32HEX) into an image; every problem names its line."""
    records: list[tuple[int, bytes, int]] = []  # (address, data, line number)
    base = 0
    entry: int | None = None
    seen_eof = False
    total = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if seen_eof:
            raise FirmwareFileError(source, "data after the end-of-file record", line=number)
        kind, offset, payload = _parse_record(line, source, number)
        if kind == REC_DATA:
            if not payload:
                continue  # a zero-length data record writes nothing; some tools emit them
            if offset + len(payload) > 0x10000:
                raise FirmwareFileError(
                    source, f"data record at offset 0x{offset:04x} runs past the 64 KiB segment", line=number
                )
            # With the 64 KiB check above, neither addressing mode can reach past 4 GiB.
            address = base + offset
            total += len(payload)
            if total > MAX_IMAGE_BYTES:
                raise FirmwareFileError(source, f"more than {MAX_IMAGE_BYTES} bytes of data", line=number)
            records.append((address, payload, number))
        elif kind == REC_EOF:
            seen_eof = True
        elif kind == REC_EXT_SEGMENT:
            base = int.from_bytes(payload, "big") << 4
        elif kind == REC_EXT_LINEAR:
            base = int.from_bytes(payload, "big") << 16
        elif kind == REC_START_SEGMENT:
            entry = (int.from_bytes(payload[:2], "big") << 4) + int.from_bytes(payload[2:], "big")
        else:  # REC_START_LINEAR; _parse_record let no other type through
            entry = int.from_bytes(payload, "big")
    if not seen_eof:
        raise FirmwareFileError(source, "no end-of-file record (:00000001FF); the file is truncated")
    if not records:
        raise FirmwareFileError(source, "no data records")
    return FirmwareImage(_merge(records, source), entry=entry, source=source)


def _parse_record(line: bytes, source: str, number: int) -> tuple[int, int, bytes]:
    if not line.startswith(b":"):
        raise FirmwareFileError(source, f"a record starts with ':', not {line[:1]!r}", line=number)
    if len(line) > _MAX_LINE_CHARS:
        raise FirmwareFileError(source, f"line of {len(line)} characters, longer than any record", line=number)
    digits = line[1:]
    try:
        if not digits.isascii() or not digits.isalnum():
            raise ValueError(digits)
        body = bytes.fromhex(digits.decode("ascii"))
    except ValueError:
        raise FirmwareFileError(source, "not a run of hex digit pairs after ':'", line=number) from None
    if len(body) < 5:
        raise FirmwareFileError(source, f"record of {len(body)} bytes is shorter than the minimum 5", line=number)
    length = body[0]
    if len(body) != length + 5:
        raise FirmwareFileError(
            source, f"length byte says {length} data bytes, the line holds {len(body) - 5}", line=number
        )
    if sum(body) & 0xFF:
        expected = (-sum(body[:-1])) & 0xFF
        raise FirmwareFileError(
            source, f"checksum 0x{body[-1]:02x}, expected 0x{expected:02x} [{body.hex()}]", line=number
        )
    offset = int.from_bytes(body[1:3], "big")
    kind = body[3]
    payload = body[4:-1]
    if kind != REC_DATA:
        if kind not in _FIXED_LENGTHS:
            raise FirmwareFileError(source, f"unknown record type 0x{kind:02x}", line=number)
        if len(payload) != _FIXED_LENGTHS[kind]:
            raise FirmwareFileError(
                source,
                f"record type 0x{kind:02x} carries {_FIXED_LENGTHS[kind]} bytes, not {len(payload)}",
                line=number,
            )
    return kind, offset, payload


def _merge(records: list[tuple[int, bytes, int]], source: str) -> tuple[Segment, ...]:
    """Sort records by address, refuse overlaps, join touching ones into segments."""
    records.sort(key=lambda record: record[0])
    segments: list[Segment] = []
    start, chunks, end, last_line = records[0][0], [records[0][1]], records[0][0] + len(records[0][1]), records[0][2]
    for address, data, number in records[1:]:
        if address < end:
            raise FirmwareFileError(
                source, f"data at 0x{address:08x} overlaps data of line {last_line} (up to 0x{end:08x})", line=number
            )
        if address > end:
            segments.append(Segment(start, b"".join(chunks)))
            start, chunks = address, []
        chunks.append(data)
        end, last_line = address + len(data), number
    segments.append(Segment(start, b"".join(chunks)))
    return tuple(segments)
