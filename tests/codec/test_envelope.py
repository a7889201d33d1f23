"""The MQTT/LAN business frame and the service header (cloud protocol §1.5, §1.6, §2; GAgent observations §3-4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.codec.envelope import (
    DEFAULT_MAX_ENVELOPE_LEN,
    ENVELOPE,
    MAX_VARINT,
    SERVICE,
    Envelope,
    EnvelopeDeframer,
    ServiceFrame,
    decode_envelope,
    decode_service,
    decode_varint,
    encode_envelope,
    encode_service,
    encode_varint,
)
from gizdev.errors import CodecError, FrameError, PayloadError

PASSCODE = b"HKIPANQEYX"

# (hex as published, the envelope it carries)
EXAMPLES = [
    # cloud protocol §1.6, the cloud's device log
    ("000000030400009002", Envelope(0x0090, b"\x02")),
    ("0000000309000090010200000010", Envelope(0x0090, bytes.fromhex("010200000010"))),
    ("000000030b0000910400000010000000", Envelope(0x0091, bytes.fromhex("0400000010000000"))),
    # §2.1 UDP
    ("00 00 00 03 03 00 00 02", Envelope(0x0002, b"")),
    ("00 00 00 03 03 00 00 03", Envelope(0x0003, b"")),
    # GAgent observations §3.4 / §4
    ("000000030e0000930000000101010000000000", Envelope(0x0093, bytes.fromhex("01010000000000"), sn=1)),
    ("000000030700009400000001", Envelope(0x0094, b"", sn=1)),
    ("00000003080000930000000702", Envelope(0x0093, b"\x02", sn=7)),
    ("000000030a00009001010100000000", Envelope(0x0090, bytes.fromhex("01010100000000"))),
    ("0000000303000091", Envelope(0x0091, b"")),
    ("0000000303000006", Envelope(0x0006, b"")),
    ("000000030f000007000a" + PASSCODE.hex(), Envelope(0x0007, b"\x00\x0a" + PASSCODE)),
    ("000000030f000008000a" + PASSCODE.hex(), Envelope(0x0008, b"\x00\x0a" + PASSCODE)),
    ("000000030400000900", Envelope(0x0009, b"\x00")),
    ("0000000303000016", Envelope(0x0016, b"")),
]


@pytest.mark.parametrize(("data_hex", "envelope"), EXAMPLES)
def test_published_examples(data_hex: str, envelope: Envelope) -> None:
    data = bytes.fromhex(data_hex)
    assert decode_envelope(data) == envelope
    assert encode_envelope(envelope.cmd, envelope.payload, sn=envelope.sn, flag=envelope.flag) == data
    parsed = ENVELOPE.parse(data).body
    assert (parsed.cmd, parsed.sn, parsed.payload) == (envelope.cmd, envelope.sn, envelope.payload)


def test_two_byte_length_example() -> None:
    # §1.6 (AQF): 00 00 00 03 b2 02 00 00 91 04 ... -> 0x32 + 2*128 = 306 bytes after the length field
    payload = b"\x04" + bytes(range(256)) + bytes(46)
    assert 3 + len(payload) == 306
    data = encode_envelope(0x0091, payload)
    assert data[:10] == bytes.fromhex("00000003b20200009104")
    assert len(data) == 4 + 2 + 306
    assert decode_envelope(data) == Envelope(0x0091, payload)


def test_observed_heartbeat_with_a_stray_byte() -> None:
    # GAgent observations §4 show the LAN heartbeat request as 000000030300001500: len 3 covers flag + cmd only,
    # so the last 00 is not part of the envelope. Strict decoding says so; the stream deframer delivers the
    # envelope and reports the byte.
    data = bytes.fromhex("000000030300001500")
    with pytest.raises(FrameError, match="trailing"):
        decode_envelope(data)
    deframer = EnvelopeDeframer()
    assert deframer.feed(data) == [Envelope(0x0015, b"")]
    (error,) = deframer.flush()
    assert isinstance(error, FrameError)
    assert (error.offset, error.data) == (8, b"\x00")


# -- varint: the MQTT remaining-length table -----------------------------------------------------------------

VARINTS = [
    (0, "00"),
    (127, "7f"),
    (128, "8001"),
    (16_383, "ff7f"),
    (16_384, "808001"),
    (2_097_151, "ffff7f"),
    (2_097_152, "80808001"),
    (268_435_455, "ffffff7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_varint_table(value: int, encoded: str) -> None:
    assert encode_varint(value) == bytes.fromhex(encoded)
    assert decode_varint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)
    assert decode_varint(b"\xaa" + bytes.fromhex(encoded) + b"\xbb", 1) == (value, 1 + len(encoded) // 2)


def test_varint_limits() -> None:
    assert MAX_VARINT == 268_435_455
    for value in (-1, MAX_VARINT + 1):
        with pytest.raises(PayloadError):
            encode_varint(value)
    with pytest.raises(FrameError, match="longer than 4"):
        decode_varint(bytes.fromhex("ffffffff7f"))
    assert decode_varint(bytes.fromhex("ffff")) is None
    assert decode_varint(b"") is None
    assert decode_varint(bytes.fromhex("8000")) == (0, 2)  # not minimal, but GAgent accepts it and so do we


# -- service frames (§1.5) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_hex", "frame"),
    [
        ("00 00 00 03 02 0f", ServiceFrame(0x020F, b"")),
        ("00 00 00 03 02 10 00 01", ServiceFrame(0x0210, b"\x00\x01")),
        ("00 00 00 03 02 11 01 00 16", ServiceFrame(0x0211, b"\x01\x00\x16")),
    ],
)
def test_service_frames(data_hex: str, frame: ServiceFrame) -> None:
    data = bytes.fromhex(data_hex)
    assert decode_service(data) == frame
    assert encode_service(frame.cmd, frame.body) == data
    parsed = SERVICE.parse(data)
    assert ServiceFrame(parsed.cmd, parsed.body) == frame
    assert SERVICE.build({"cmd": frame.cmd, "body": frame.body}) == data


@pytest.mark.parametrize("data_hex", ["", "000000", "00000004020f", "0000000302"])
def test_bad_service_frames(data_hex: str) -> None:
    with pytest.raises(FrameError):
        decode_service(bytes.fromhex(data_hex))


def test_service_cmd_range() -> None:
    with pytest.raises(PayloadError):
        encode_service(0x10000)


# -- strict decoding and argument checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_hex", "reason"),
    [
        ("", "00 00 00 03"),
        ("000000020300000900", "00 00 00 03"),
        ("00000003", "truncated length"),
        ("0000000380", "truncated length"),
        ("00000003ffffffff7f", "longer than 4"),
        ("0000000304000090", "truncated envelope"),
        ("000000030400009002ff", "trailing"),
        ("00000003020000", "too short"),
        ("0000000300", "too short"),
        ("0000000306000093000000", "too short"),  # 0x0093 without a whole sn
        ("0000000303000094", "too short"),
    ],
)
def test_decode_envelope_rejects(data_hex: str, reason: str) -> None:
    data = bytes.fromhex(data_hex)
    with pytest.raises(FrameError, match=reason):
        decode_envelope(data)


@pytest.mark.parametrize(
    ("args", "kwargs", "path"),
    [
        ((0x0093, b""), {}, "envelope/sn"),
        ((0x0094, b""), {}, "envelope/sn"),
        ((0x0090, b""), {"sn": 1}, "envelope/sn"),
        ((0x0093, b""), {"sn": 1 << 32}, "envelope/sn"),
        ((0x0093, b""), {"sn": -1}, "envelope/sn"),
        ((0x10000, b""), {}, "envelope/cmd"),
        ((-1, b""), {}, "envelope/cmd"),
        ((0x0090, b""), {"flag": 256}, "envelope/flag"),
    ],
)
def test_encode_envelope_validates(args: tuple[int, bytes], kwargs: dict[str, Any], path: str) -> None:
    with pytest.raises(PayloadError) as info:
        encode_envelope(*args, **kwargs)
    assert info.value.path == path


def test_flag_is_carried() -> None:
    data = encode_envelope(0x0091, b"\x04", flag=1)
    assert data == bytes.fromhex("000000030401009104")
    assert decode_envelope(data) == Envelope(0x0091, b"\x04", None, 1)


@settings(max_examples=300)
@given(st.binary(max_size=30).map(lambda tail: b"\x00\x00\x00\x03" + tail) | st.binary(max_size=30))
def test_decode_envelope_on_random_bytes(data: bytes) -> None:
    try:
        envelope = decode_envelope(data)
    except CodecError as exc:
        assert isinstance(exc, FrameError)
        return
    encoded = encode_envelope(envelope.cmd, envelope.payload, sn=envelope.sn, flag=envelope.flag)
    assert decode_envelope(encoded) == envelope
    if encoded != data:  # only a non-minimal length field may differ
        decoded = decode_varint(data, 4)
        assert decoded is not None
        length, start = decoded
        minimal = encode_varint(length)
        assert start - 4 > len(minimal)
        assert encoded == data[:4] + minimal + data[start:]


# -- round trips and the construct reference -----------------------------------------------------------------

envelopes = st.one_of(
    st.builds(
        Envelope,
        st.integers(0, 0xFFFF).filter(lambda c: c not in (0x0093, 0x0094)),
        st.binary(max_size=200),
        st.none(),
        st.integers(0, 255),
    ),
    st.builds(
        Envelope,
        st.sampled_from([0x0093, 0x0094]),
        st.binary(max_size=40),
        st.integers(0, 0xFFFF_FFFF),
        st.integers(0, 255),
    ),
)


@settings(max_examples=200)
@given(envelopes)
def test_envelope_round_trip_and_reference(envelope: Envelope) -> None:
    data = encode_envelope(envelope.cmd, envelope.payload, sn=envelope.sn, flag=envelope.flag)
    assert decode_envelope(data) == envelope
    built = ENVELOPE.build(
        {"body": {"flag": envelope.flag, "cmd": envelope.cmd, "sn": envelope.sn, "payload": envelope.payload}}
    )
    assert built == data
    parsed = ENVELOPE.parse(data).body
    assert Envelope(parsed.cmd, parsed.payload, parsed.sn, parsed.flag) == envelope


# -- the stream deframer -------------------------------------------------------------------------------------


def feed_all(data: bytes, chunks: Sequence[int] | None = None, deframer: EnvelopeDeframer | None = None) -> list[Any]:
    deframer = deframer or EnvelopeDeframer()
    out: list[Any] = []
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


def signature(items: Sequence[Any]) -> list[Any]:
    return [
        item if isinstance(item, Envelope) else (type(item).__name__, item.reason, item.offset, item.data)
        for item in items
    ]


def test_examples_as_a_stream() -> None:
    stream = b"".join(bytes.fromhex(data) for data, _ in EXAMPLES)
    expected = [envelope for _, envelope in EXAMPLES]
    deframer = EnvelopeDeframer()
    assert feed_all(stream, deframer=deframer) == expected
    assert (deframer.frames, deframer.errors, deframer.bytes_discarded) == (len(EXAMPLES), 0, 0)
    assert feed_all(stream, [1] * len(stream)) == expected


READ = bytes.fromhex("000000030400009002")
READ_ENVELOPE = Envelope(0x0090, b"\x02")


def test_garbage_is_one_error_per_run() -> None:
    items = feed_all(b"\x01\x02\x00\x00" + READ + b"\x00\x00\x00" + READ)
    assert signature(items) == [
        ("FrameError", "4 bytes of garbage skipped", 0, b"\x01\x02\x00\x00"),
        READ_ENVELOPE,
        ("FrameError", "3 bytes of garbage skipped", 13, b"\x00\x00\x00"),
        READ_ENVELOPE,
    ]


@pytest.mark.parametrize(
    ("bad_hex", "reason"),
    [
        ("0000000300", "impossible length 0"),
        ("0000000302", "impossible length 2"),
        ("00000003ffffffff7f", "longer than 4"),
        ("0000000303000093", "too short for cmd 0x0093"),
    ],
)
def test_bad_headers_then_a_good_envelope(bad_hex: str, reason: str) -> None:
    bad = bytes.fromhex(bad_hex)
    items = feed_all(bad + READ)
    errors = [item for item in items if isinstance(item, FrameError)]
    assert reason in str(errors[0])
    assert errors[0].offset == 0
    assert items[-1] == READ_ENVELOPE


def test_length_above_the_cap() -> None:
    big = encode_envelope(0x0091, bytes(100))
    deframer = EnvelopeDeframer(max_length=50)
    items = feed_all(big + READ, deframer=deframer)
    assert "impossible length 103 (allowed 3..50)" in str(items[0])
    assert items[-1] == READ_ENVELOPE
    assert feed_all(big, deframer=EnvelopeDeframer(max_length=103)) == [Envelope(0x0091, bytes(100))]
    assert DEFAULT_MAX_ENVELOPE_LEN >= 4096


def test_partial_envelope_waits_then_flush_reports_it() -> None:
    deframer = EnvelopeDeframer()
    assert deframer.feed(READ[:-1]) == []
    assert deframer.pending_bytes == len(READ) - 1
    assert deframer.feed(READ[-1:]) == [READ_ENVELOPE]
    assert deframer.feed(READ[:5]) == []
    assert signature(deframer.flush()) == [("FrameError", "truncated envelope", 9, READ[:5])]
    assert deframer.pending_bytes == 0
    assert deframer.feed(READ) == [READ_ENVELOPE]


def test_partial_header_at_the_end_is_kept() -> None:
    deframer = EnvelopeDeframer()
    assert deframer.feed(b"\x07\x00\x00\x00") == []
    assert signature(deframer.feed(b"\x03\x04\x00\x00\x90\x02")) == [
        ("FrameError", "1 byte of garbage skipped", 0, b"\x07"),
        READ_ENVELOPE,
    ]


def test_cap_must_be_sane() -> None:
    for bad in (2, MAX_VARINT + 1):
        with pytest.raises(ValueError, match="max_length"):
            EnvelopeDeframer(max_length=bad)


HEADER = b"\x00\x00\x00\x03"
no_header = st.binary(max_size=20).filter(lambda b: HEADER not in b)


def chunkings(total: int) -> st.SearchStrategy[list[int]]:
    return st.one_of(st.just([1] * total), st.lists(st.integers(1, 50), max_size=total))


@settings(max_examples=150)
@given(st.lists(st.tuples(no_header, envelopes), max_size=6), no_header, st.data())
def test_deframer_finds_every_envelope_whatever_the_garbage_and_chunking(
    parts: list[tuple[bytes, Envelope]], tail: bytes, data: st.DataObject
) -> None:
    # Garbage without 00 00 00 03 cannot fake a header, even joined to what follows (a real header starts
    # with 00 00 00, so a match that straddles into it would need its last byte to be 03).
    stream = b"".join(junk + encode_envelope(e.cmd, e.payload, sn=e.sn, flag=e.flag) for junk, e in parts) + tail
    whole = feed_all(stream)
    assert [item for item in whole if isinstance(item, Envelope)] == [e for _, e in parts]
    chunked = feed_all(stream, data.draw(chunkings(len(stream))))
    assert signature(chunked) == signature(whole)
    garbage = sum(len(junk) for junk, _ in parts) + len(tail)
    errors = [item for item in whole if not isinstance(item, Envelope)]
    assert sum(int(str(e.reason).split()[0]) for e in errors) == garbage


@settings(max_examples=150)
@given(st.binary(max_size=300) | st.lists(st.sampled_from([0x00, 0x03, 0x93, 0x80, 0x05]), max_size=300).map(bytes))
def test_deframer_on_random_bytes(stream: bytes) -> None:
    deframer = EnvelopeDeframer(max_length=64)
    items: list[Any] = []
    for i in range(0, len(stream), 9):
        items += deframer.feed(stream[i : i + 9])
        assert deframer.pending_bytes <= 4 + 4 + 64 + 64
    items += deframer.flush()
    assert all(isinstance(item, Envelope | FrameError) for item in items)
    assert deframer.frames == sum(isinstance(item, Envelope) for item in items)
    assert deframer.errors == len(items) - deframer.frames
    assert deframer.bytes_discarded <= len(stream)
    assert deframer.pending_bytes == 0


@settings(max_examples=200)
@given(st.binary(max_size=12).map(lambda tail: HEADER + tail) | st.binary(max_size=12))
def test_decode_service_on_random_bytes(data: bytes) -> None:
    try:
        frame = decode_service(data)
    except CodecError as exc:
        assert isinstance(exc, FrameError)
        return
    assert encode_service(frame.cmd, frame.body) == data


@settings(max_examples=200)
@given(st.binary(max_size=6), st.integers(0, 6))
def test_decode_varint_on_random_bytes(data: bytes, offset: int) -> None:
    try:
        decoded = decode_varint(data, offset)
    except CodecError as exc:
        assert isinstance(exc, FrameError)
        assert len(data) - offset >= 4
        return
    if decoded is not None:
        value, end = decoded
        assert 0 <= value <= MAX_VARINT
        assert offset < end <= offset + 4
