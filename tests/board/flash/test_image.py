"""Intel HEX and raw images: known answers from the format's definition, intelhex as an independent writer,
and every kind of malformed or hostile file."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from intelhex import IntelHex  # type: ignore[import-untyped]

from gizdev.board.flash.errors import FirmwareFileError
from gizdev.board.flash.image import MAX_IMAGE_BYTES, load_firmware, parse_intel_hex


def record(kind: int, offset: int, payload: bytes) -> str:
    """One record built from the format's definition: the checksum is the two's complement of the byte sum."""
    body = bytes([len(payload), offset >> 8, offset & 0xFF, kind]) + payload
    return ":" + (body + bytes([(-sum(body)) & 0xFF])).hex().upper()


EOF_LINE = ":00000001FF"


def test_known_record() -> None:
    # The classic example record: 16 bytes at 0x0100, checksum 0x40.
    image = parse_intel_hex(b":10010000214601360121470136007EFE09D2190140\n:00000001FF\n")
    assert [(s.address, s.data.hex()) for s in image.segments] == [(0x100, "214601360121470136007efe09d21901")]


def test_linear_address_gaps_and_entry() -> None:
    text = "\n".join(
        [
            record(0x04, 0, b"\x08\x00"),
            record(0x00, 0x0000, b"\x01\x02\x03\x04"),
            record(0x00, 0x0004, b"\x05\x06"),  # touching: same segment
            record(0x00, 0x1000, b"\xaa\xbb"),  # gap: new segment
            record(0x04, 0, b"\x08\x01"),
            record(0x00, 0x0010, b"\xcc"),
            record(0x05, 0, b"\x08\x00\x01\x01"),
            EOF_LINE,
        ]
    )
    image = parse_intel_hex(text.encode())
    assert [(hex(s.address), s.data) for s in image.segments] == [
        ("0x8000000", b"\x01\x02\x03\x04\x05\x06"),
        ("0x8001000", b"\xaa\xbb"),
        ("0x8010010", b"\xcc"),
    ]
    assert image.entry == 0x08000101
    assert image.size == 9 and image.start == 0x08000000 and image.end == 0x08010011


def test_segment_address_record_and_crlf_and_blank_lines() -> None:
    text = "\r\n".join([record(0x02, 0, b"\x10\x00"), "", record(0x00, 0x0010, b"\x55"), EOF_LINE, ""])
    image = parse_intel_hex(text.encode())
    assert [(s.address, s.data) for s in image.segments] == [(0x10000 + 0x10, b"\x55")]


def test_records_out_of_order_are_sorted() -> None:
    text = "\n".join([record(0x00, 0x0010, b"\x02"), record(0x00, 0x0000, b"\x01"), EOF_LINE])
    assert [s.address for s in parse_intel_hex(text.encode()).segments] == [0x0, 0x10]


@given(
    st.dictionaries(
        st.integers(0x08000000, 0x08000000 + 0x30000).map(lambda a: a - a % 16),
        st.binary(min_size=1, max_size=16),
        min_size=1,
        max_size=30,
    )
)
def test_agrees_with_intelhex(chunks: dict[int, bytes]) -> None:
    """Files written by the intelhex package (an independent implementation) read back as the same bytes."""
    writer = IntelHex()
    expected: dict[int, int] = {}
    for address, data in chunks.items():
        for i, byte in enumerate(data):
            writer[address + i] = byte
            expected[address + i] = byte
    text = io.StringIO()
    writer.write_hex_file(text)
    image = parse_intel_hex(text.getvalue().encode())
    got = {s.address + i: byte for s in image.segments for i, byte in enumerate(s.data)}
    assert got == expected
    # Segments are disjoint and not touching (otherwise they would have been merged).
    for left, right in zip(image.segments, image.segments[1:], strict=False):
        assert left.end < right.address


HOSTILE = [
    ("no colon", "10010000214601360121470136007EFE09D2190140\n" + EOF_LINE, 1, "starts with ':'"),
    ("bad checksum", ":10010000214601360121470136007EFE09D2190141\n" + EOF_LINE, 1, "checksum 0x41, expected 0x40"),
    ("odd digits", ":100100002146013601214701360\n" + EOF_LINE, 1, "hex digit pairs"),
    ("not hex", ":10010000ZZ4601360121470136007EFE09D2190140\n" + EOF_LINE, 1, "hex digit pairs"),
    ("length lies", record(0, 0, b"\x01\x02")[:1] + "05" + record(0, 0, b"\x01\x02")[3:] + "\n" + EOF_LINE, 1,
     "length byte says 5"),
    ("too short", ":0000\n" + EOF_LINE, 1, "shorter than the minimum"),
    ("unknown type", record(0x07, 0, b"") + "\n" + EOF_LINE, 1, "unknown record type 0x07"),
    ("ext linear wrong size", record(0x04, 0, b"\x08") + "\n" + EOF_LINE, 1, "carries 2 bytes, not 1"),
    ("eof with data", record(0x00, 0, b"\x01") + "\n" + record(0x01, 0, b"\x00"), 2, "carries 0 bytes, not 1"),
    ("truncated, no eof", record(0x00, 0, b"\x01\x02"), None, "no end-of-file record"),
    ("after eof", EOF_LINE + "\n" + record(0x00, 0, b"\x01"), 2, "after the end-of-file record"),
    ("overlap", record(0, 0, b"\x01\x02\x03\x04") + "\n" + record(0, 2, b"\x09") + "\n" + EOF_LINE, 2,
     "overlaps data of line 1"),
    ("crosses 64K", record(0, 0xFFFF, b"\x01\x02") + "\n" + EOF_LINE, 1, "runs past the 64 KiB segment"),
    ("only eof", EOF_LINE, None, "no data records"),
    ("overlong line", ":" + "00" * 300 + "\n" + EOF_LINE, 1, "longer than any record"),
    ("binary junk", "\x00\xff\xfe:\x80", 1, "starts with ':'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_malformed_files_name_the_line(text: str, line: int | None, reason: str) -> None:
    data = text.encode("latin-1")
    with pytest.raises(FirmwareFileError) as caught:
        parse_intel_hex(data, source="fw.hex")
    assert caught.value.line == line
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"fw.hex:{line}: " if line else "fw.hex: ")


def test_highest_addresses() -> None:
    # Up to the very last byte of the 32-bit space (linear) and of the 20-bit space (segment) is fine.
    text = "\n".join([record(0x04, 0, b"\xff\xff"), record(0x00, 0xFFF0, b"\x00" * 16), EOF_LINE])
    assert parse_intel_hex(text.encode()).end == 1 << 32
    text = "\n".join([record(0x02, 0, b"\xff\xff"), record(0x00, 0xFFFF, b"\x01"), EOF_LINE])
    assert parse_intel_hex(text.encode()).start == 0xFFFF0 + 0xFFFF


@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_another_exception(data: bytes) -> None:
    with contextlib.suppress(FirmwareFileError):
        parse_intel_hex(data)


def test_load_bin_and_hex_files(tmp_path: Path) -> None:
    binary = tmp_path / "fw.bin"
    binary.write_bytes(b"\x01\x02\x03")
    image = load_firmware(binary, default_address=0x08000000)
    assert (image.start, image.segments[0].data) == (0x08000000, b"\x01\x02\x03")
    assert load_firmware(binary, address=0x08004000).start == 0x08004000
    hexfile = tmp_path / "fw.HEX"
    hexfile.write_text(record(0, 0x10, b"\x07") + "\n" + EOF_LINE + "\n")
    assert load_firmware(hexfile).start == 0x10
    # Forced format: the .hex text as raw bytes.
    assert load_firmware(hexfile, fmt="bin", address=0).segments[0].data.startswith(b":01001000")


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "reason"),
    [
        ("empty.bin", b"", {"default_address": 0}, "the file is empty"),
        ("missing.bin", None, {"default_address": 0}, "cannot read"),
        ("fw.hex", b":00000001FF\n", {"address": 0x100}, "--address is for .bin files"),
        ("fw.bin", b"\x00", {}, "needs an address"),
        ("fw.bin", b"\x00\x00", {"address": 0xFFFFFFFF}, "32-bit address space"),
        ("fw.bin", b"\x00", {"fmt": "elf", "address": 0}, "unknown firmware format"),
    ],
)
def test_unusable_files(tmp_path: Path, name: str, content: bytes | None, kwargs: dict[str, int], reason: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FirmwareFileError, match=reason):
        load_firmware(path, **kwargs)  # type: ignore[arg-type]


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.bin"
    with path.open("wb") as file:
        file.truncate(MAX_IMAGE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(FirmwareFileError, match="no firmware image is that big"):
        load_firmware(path, default_address=0)
