"""The incremental deframer: vectors as a stream, every resync rule, the GAgent quirks, and hostile input."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.codec.frame import DEFAULT_MAX_FRAME_LEN, Frame, encode_frame
from gizdev.codec.framer import GARBAGE_SAMPLE_LEN, MAX_ALLOWED_FRAME_LEN, Deframer
from gizdev.errors import ChecksumError, FrameError
from tests.codec.test_frame import SPEC_EXAMPLES, naive_unstuff, wire_frames
from tests.conftest import VECTOR_SETS, load_vectors

Item = Frame | FrameError


def feed_all(data: bytes, chunks: Iterable[int] | None = None, deframer: Deframer | None = None) -> list[Item]:
    """Feed `data` cut at the given chunk sizes (whole if None), then flush."""
    deframer = deframer or Deframer()
    out: list[Item] = []
    if chunks is None:
        out += deframer.feed(data)
    else:
        pos = 0
        for size in chunks:
            out += deframer.feed(data[pos : pos + size])
            pos += size
        out += deframer.feed(data[pos:])
    out += deframer.flush()
    return out


def byte_by_byte(data: bytes, deframer: Deframer | None = None) -> list[Item]:
    return feed_all(data, [1] * len(data), deframer)


def frames_of(items: Sequence[Item]) -> list[Frame]:
    return [item for item in items if isinstance(item, Frame)]


def errors_of(items: Sequence[Item]) -> list[FrameError]:
    return [item for item in items if isinstance(item, FrameError)]


def signature(items: Sequence[Item]) -> list[Any]:
    """Comparable form of a deframer's output (errors by type, reason, offset and data)."""
    return [
        item if isinstance(item, Frame) else (type(item).__name__, item.reason, item.offset, item.data)
        for item in items
    ]


def is_subsequence(needle: Sequence[Any], haystack: Sequence[Any]) -> bool:
    it = iter(haystack)
    return all(any(x == y for y in it) for x in needle)


HB = bytes.fromhex("ffff0005070000000c")  # heartbeat, sn 0
HB_FRAME = Frame(0x07, 0x00, 0, b"")
ACK = bytes.fromhex("ffff00050843000050")  # heartbeat_reply-0596
ACK_FRAME = Frame(0x08, 0x43, 0, b"")


# -- the vectors as one stream -------------------------------------------------------------------------------


def vector_stream() -> tuple[bytes, list[Frame | type[ChecksumError]]]:
    """All wire frames of all vector sets back to back, and what each must yield (read from the logical bytes)."""
    stream = bytearray()
    expected: list[Frame | type[ChecksumError]] = []
    for name in VECTOR_SETS:
        for vector in load_vectors(name):
            for _, wire, given_logical in wire_frames(vector):
                logical = given_logical if given_logical is not None else naive_unstuff(wire)
                stream += wire
                if sum(logical[2:-1]) & 0xFF != logical[-1]:
                    expected.append(ChecksumError)
                else:
                    expected.append(Frame(logical[4], logical[5], logical[6] << 8 | logical[7], logical[8:-1]))
    return bytes(stream), expected


def check_against_vectors(items: list[Item], expected: list[Frame | type[ChecksumError]]) -> None:
    assert len(items) == len(expected)
    for item, want in zip(items, expected, strict=True):
        if want is ChecksumError:
            assert isinstance(item, ChecksumError)
        else:
            assert item == want


def test_vector_stream_whole() -> None:
    stream, expected = vector_stream()
    deframer = Deframer()
    items = feed_all(stream, deframer=deframer)
    check_against_vectors(items, expected)
    assert deframer.frames == len(expected) - 1
    assert deframer.errors == 1  # error_reply-0595's input has a bad checksum on purpose
    assert deframer.bytes_discarded == len(HB)
    assert deframer.pending_bytes == 0


def test_vector_stream_byte_by_byte() -> None:
    stream, expected = vector_stream()
    check_against_vectors(byte_by_byte(stream), expected)


@pytest.mark.parametrize("size", [2, 3, 7, 64, 1000])
def test_vector_stream_in_chunks(size: int) -> None:
    stream, expected = vector_stream()
    check_against_vectors(feed_all(stream, [size] * (len(stream) // size)), expected)


def test_spec_examples_as_a_stream() -> None:
    stream = b"".join(bytes.fromhex(wire) for wire, *_ in SPEC_EXAMPLES)
    expected = [Frame(cmd, sn, 0, bytes.fromhex(payload)) for _, cmd, sn, payload in SPEC_EXAMPLES]
    assert feed_all(stream) == expected
    assert byte_by_byte(stream) == expected


# -- resync rules --------------------------------------------------------------------------------------------


def test_garbage_before_a_frame_is_one_error() -> None:
    items = feed_all(b"\x01\x02\x03" + HB)
    assert signature(items) == [("FrameError", "3 bytes of garbage skipped", 0, b"\x01\x02\x03"), HB_FRAME]


def test_garbage_fed_byte_by_byte_is_still_one_error() -> None:
    deframer = Deframer()
    items = byte_by_byte(bytes(range(0x20, 0x40)) + HB, deframer)
    assert signature(items) == [("FrameError", "32 bytes of garbage skipped", 0, bytes(range(0x20, 0x40))), HB_FRAME]
    assert (deframer.frames, deframer.errors, deframer.bytes_discarded) == (1, 1, 32)


def test_garbage_sample_is_capped_but_counted() -> None:
    junk = bytes(i % 200 for i in range(1000))
    deframer = Deframer()
    (error, frame) = feed_all(junk + HB, deframer=deframer)
    assert isinstance(error, FrameError)
    assert error.data == junk[:GARBAGE_SAMPLE_LEN]
    assert "1000 bytes" in str(error)
    assert frame == HB_FRAME
    assert deframer.bytes_discarded == 1000


def test_garbage_ending_in_ff_does_not_steal_the_header() -> None:
    for junk in (b"\xff", b"\x10\xff", b"\xff\xff\xff", b"\x10\xff\xff\xff\xff"):
        items = feed_all(junk + HB)
        assert frames_of(items) == [HB_FRAME], junk
        assert signature(errors_of(items)) == [
            ("FrameError", f"{len(junk)} byte{'s' if len(junk) > 1 else ''} of garbage skipped", 0, junk)
        ]
        assert signature(byte_by_byte(junk + HB)) == signature(items)


def test_garbage_between_frames_has_its_stream_offset() -> None:
    items = feed_all(HB + b"\x00\x00" + ACK)
    assert signature(items) == [HB_FRAME, ("FrameError", "2 bytes of garbage skipped", 9, b"\x00\x00"), ACK_FRAME]


def test_trailing_garbage_is_reported_on_flush() -> None:
    deframer = Deframer()
    assert deframer.feed(HB + b"\x42") == [HB_FRAME]
    assert signature(deframer.flush()) == [("FrameError", "1 byte of garbage skipped", 9, b"\x42")]


def test_bad_checksum_then_good_frame() -> None:
    bad = bytes.fromhex("ffff00050742000014")  # error_reply-0595 input; 00+05+07+42 = 0x4e
    items = feed_all(bad + ACK)
    assert isinstance(items[0], ChecksumError)
    assert (items[0].expected, items[0].actual, items[0].offset, items[0].data) == (0x4E, 0x14, 0, bad)
    assert items[1:] == [ACK_FRAME]


def test_bad_checksum_of_a_stuffed_frame() -> None:
    wire = bytearray(encode_frame(0x05, 0xFF, b"\x06\xff"))
    wire[-1] ^= 0x01
    items = feed_all(bytes(wire) + ACK)
    assert isinstance(items[0], ChecksumError)
    assert items[0].data == bytes(wire)
    assert items[1:] == [ACK_FRAME]


@pytest.mark.parametrize("length", [0, 1, 4])
def test_impossible_length_then_good_frame(length: int) -> None:
    bad = b"\xff\xff" + length.to_bytes(2, "big")
    items = feed_all(bad + b"\x07\x00" + ACK)
    assert signature(items[:1]) == [
        ("FrameError", f"impossible length field {length} (allowed 5..{DEFAULT_MAX_FRAME_LEN - 4})", 0, bad)
    ]
    assert items[-1] == ACK_FRAME
    assert signature(items[1:-1]) == [("FrameError", "2 bytes of garbage skipped", 4, b"\x07\x00")]


def test_length_above_the_cap() -> None:
    frame = encode_frame(0x05, 1, bytes(20))  # 29 bytes
    items = feed_all(frame + ACK, deframer=Deframer(max_frame_len=28))
    assert isinstance(items[0], FrameError)
    assert "impossible length field 25 (allowed 5..24)" in str(items[0])
    assert items[-1] == ACK_FRAME
    assert feed_all(frame, deframer=Deframer(max_frame_len=29)) == [Frame(0x05, 1, 0, bytes(20))]


def test_default_cap_takes_a_4096_byte_payload() -> None:
    frame = encode_frame(0x1D, 1, b"\xab" * 4096)
    assert feed_all(frame) == [Frame(0x1D, 1, 0, b"\xab" * 4096)]
    assert isinstance(feed_all(encode_frame(0x1D, 1, b"\xab" * 4097))[0], FrameError)


def test_bad_stuffing_then_good_frame() -> None:
    bad = bytes.fromhex("ffff0006030b0000ff02")  # FF followed by 02 in the payload
    deframer = Deframer()
    items = feed_all(bad + b"\x16" + ACK, deframer=deframer)
    assert signature(items) == [
        ("FrameError", "0xff followed by 0x02 (bad stuffing)", 0, bad),
        ("FrameError", "1 byte of garbage skipped", 10, b"\x16"),
        ACK_FRAME,
    ]
    assert deframer.bytes_discarded == len(bad) + 1
    assert signature(byte_by_byte(bad + b"\x16" + ACK)) == signature(items)


def test_ff_ff_inside_a_frame_truncates_it() -> None:
    partial = bytes.fromhex("ffff0010050100000405")
    for cut in (partial, partial + b"\xff"):  # also when the body ends in a lone FF
        items = feed_all(cut + HB)
        assert signature(items) == [
            ("FrameError", "truncated frame (a new ff ff header arrived)", 0, partial),
            *([("FrameError", "1 byte of garbage skipped", len(partial), b"\xff")] if cut != partial else []),
            HB_FRAME,
        ]
        assert signature(byte_by_byte(cut + HB)) == signature(items)


def test_flush_reports_a_partial_frame_and_starts_afresh() -> None:
    deframer = Deframer()
    assert deframer.feed(HB[:6]) == []
    assert deframer.pending_bytes == 6
    assert signature(deframer.flush()) == [("FrameError", "truncated frame (line idle before it completed)", 0, HB[:6])]
    assert deframer.pending_bytes == 0
    assert deframer.flush() == []
    # The rest of the cut frame is now garbage; the frame after it is found.
    assert signature(deframer.feed(HB[6:] + ACK)) == [
        ("FrameError", "3 bytes of garbage skipped", 6, HB[6:]),
        ACK_FRAME,
    ]


def test_flush_after_a_bare_header() -> None:
    deframer = Deframer()
    assert deframer.feed(b"\x00\xff\xff") == []
    assert signature(deframer.flush()) == [
        ("FrameError", "1 byte of garbage skipped", 0, b"\x00"),
        ("FrameError", "truncated frame (header only)", 1, b"\xff\xff"),
    ]


def test_offsets_continue_across_feeds_and_flushes() -> None:
    deframer = Deframer()
    deframer.feed(b"\x01\x02")
    deframer.flush()
    deframer.feed(HB)
    items = deframer.feed(b"\x03" + ACK)
    assert signature(items) == [("FrameError", "1 byte of garbage skipped", 11, b"\x03"), ACK_FRAME]


# -- GAgent's unstuffed ACKs (§1.3) --------------------------------------------------------------------------

# 0x06 ACK with sn 0xFF sent unstuffed: 00+05+06+ff+00+00 = 0x10a -> 0x0a
UNSTUFFED_SN = bytes.fromhex("ffff000506ff00000a")
# 0x06 ACK whose checksum is 0xFF: 05+06+f4 = 0xff
CHECKSUM_FF = bytes.fromhex("ffff000506f40000ff")


def test_unstuffed_sn_of_an_empty_frame_is_accepted() -> None:
    assert feed_all(UNSTUFFED_SN + HB) == [Frame(0x06, 0xFF, 0, b""), HB_FRAME]
    assert byte_by_byte(UNSTUFFED_SN + HB) == [Frame(0x06, 0xFF, 0, b""), HB_FRAME]


def test_unstuffed_ff_elsewhere_is_bad_stuffing() -> None:
    # The same FF as the sn of a frame with a payload is not the quirk.
    bad = bytes.fromhex("ffff000609ff000002")
    items = feed_all(bad + b"\x0e" + HB)
    assert "bad stuffing" in str(items[0])
    assert items[-1] == HB_FRAME


def test_checksum_ff_decided_by_the_next_byte() -> None:
    ack = Frame(0x06, 0xF4, 0, b"")
    # 55: properly stuffed
    assert feed_all(CHECKSUM_FF + b"\x55" + HB) == [ack, HB_FRAME]
    # another byte: the unstuffed quirk; the byte belongs to what follows
    assert signature(feed_all(CHECKSUM_FF + b"\x00" + HB)) == [
        ack,
        ("FrameError", "1 byte of garbage skipped", 9, b"\x00"),
        HB_FRAME,
    ]
    # FF: a new header starts, so the frame was truncated
    items = feed_all(CHECKSUM_FF + HB)
    assert signature(items) == [
        ("FrameError", "truncated frame (a new ff ff header arrived)", 0, CHECKSUM_FF[:-1]),
        ("FrameError", "1 byte of garbage skipped", 8, b"\xff"),
        HB_FRAME,
    ]


def test_checksum_ff_held_until_the_next_byte_or_flush() -> None:
    ack = Frame(0x06, 0xF4, 0, b"")
    deframer = Deframer()
    assert deframer.feed(CHECKSUM_FF) == []
    assert deframer.feed(b"\x55") == [ack]
    assert deframer.feed(CHECKSUM_FF) == []
    assert deframer.flush() == [ack]
    assert deframer.feed(CHECKSUM_FF) == []
    assert deframer.feed(b"\x07") == [ack]
    assert deframer.frames == 3


# -- hypothesis ----------------------------------------------------------------------------------------------

payloads = st.binary(max_size=24) | st.lists(st.sampled_from([0x00, 0x55, 0xFF]), max_size=12).map(bytes)
frames = st.builds(Frame, st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF), payloads)
junk = st.binary(max_size=16) | st.lists(st.sampled_from([0x00, 0x05, 0x55, 0xFF]), max_size=12).map(bytes)


def chunkings(total: int) -> st.SearchStrategy[list[int]]:
    return st.one_of(st.just([1] * total), st.lists(st.integers(1, 40), max_size=total))


@settings(max_examples=150)
@given(st.lists(st.tuples(junk, frames), max_size=8), junk, st.data())
def test_every_good_frame_is_found_whatever_the_garbage_and_chunking(
    parts: list[tuple[bytes, Frame]], tail: bytes, data: st.DataObject
) -> None:
    stream = b"".join(garbage + encode_frame(f.cmd, f.sn, f.payload, f.flags) for garbage, f in parts) + tail
    good = [f for _, f in parts]
    whole = feed_all(stream)
    assert is_subsequence(good, frames_of(whole))
    chunked = feed_all(stream, data.draw(chunkings(len(stream))))
    # Chunking changes nothing at all: same frames, same errors, same offsets.
    assert signature(chunked) == signature(whole)
    if not any(garbage for garbage, _ in parts) and not tail:
        assert whole == good


@settings(max_examples=150)
@given(st.binary(max_size=300) | st.lists(st.sampled_from([0x00, 0x05, 0x55, 0xFF]), max_size=300).map(bytes))
def test_random_bytes_never_raise(stream: bytes) -> None:
    deframer = Deframer(max_frame_len=64)
    items: list[Item] = []
    for i in range(0, len(stream), 7):
        items += deframer.feed(stream[i : i + 7])
        assert deframer.pending_bytes <= 2 * 64 + GARBAGE_SAMPLE_LEN
    items += deframer.flush()
    assert all(isinstance(item, Frame | FrameError) for item in items)
    assert deframer.frames == len(frames_of(items))
    assert deframer.errors == len(errors_of(items))
    assert deframer.bytes_discarded <= len(stream)
    assert deframer.pending_bytes == 0


def test_memory_stays_bounded_on_a_huge_frame_claim() -> None:
    deframer = Deframer()
    deframer.feed(b"\xff\xff\x10\x00\x05\x01\x00\x00")  # len 4096: allowed, then only stuffed FFs
    for _ in range(2000):
        deframer.feed(b"\xff\x55" * 8)
        assert deframer.pending_bytes <= 2 * DEFAULT_MAX_FRAME_LEN
    assert deframer.errors == 1  # the frame completed (bad checksum) and hunting went on


def test_memory_stays_bounded_on_megabytes_of_garbage() -> None:
    deframer = Deframer()
    junk = bytes(range(255)) * 4000
    for i in range(0, len(junk), 65536):
        assert deframer.feed(junk[i : i + 65536]) == []
        assert deframer.pending_bytes <= GARBAGE_SAMPLE_LEN + 2
    (error,) = deframer.flush()
    assert f"{len(junk)} bytes of garbage" in str(error)


def test_megabytes_of_ff_are_one_garbage_run() -> None:
    deframer = Deframer()
    items = deframer.feed(b"\xff" * 1_000_000 + HB[2:]) + deframer.flush()
    assert signature(items) == [
        ("FrameError", "999998 bytes of garbage skipped", 0, b"\xff" * GARBAGE_SAMPLE_LEN),
        HB_FRAME,
    ]


@pytest.mark.parametrize("max_len", [8, MAX_ALLOWED_FRAME_LEN + 1])
def test_cap_must_be_sane(max_len: int) -> None:
    with pytest.raises(ValueError, match="max_frame_len"):
        Deframer(max_frame_len=max_len)


def test_feed_accepts_bytearray_and_memoryview() -> None:
    deframer = Deframer()
    assert deframer.feed(bytearray(HB)) == [HB_FRAME]
    assert deframer.feed(memoryview(ACK)) == [ACK_FRAME]
    assert deframer.feed(b"") == []
