"""The serial frame: vendor vectors, the spec's worked examples, strict parsing, and the construct reference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from construct import ConstructError
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.codec.frame import (
    DEFAULT_MAX_FRAME_LEN,
    HEADER,
    LOGICAL_FRAME,
    MAX_PAYLOAD_LEN,
    MIN_FRAME_LEN,
    Frame,
    checksum,
    encode_frame,
    encode_logical_frame,
    parse_frame,
    parse_logical_frame,
    stuff,
    unstuff,
)
from gizdev.errors import ChecksumError, CodecError, FrameError, PayloadError
from tests.conftest import VECTOR_SETS, load_vectors, vectors_of_kind

HEX_FIELDS = (
    ("frame_hex", "frame_unescaped_hex"),
    ("input_hex", "input_unescaped_hex"),
    ("ack_hex", "ack_unescaped_hex"),
    ("report_hex", "report_unescaped_hex"),
)


def wire_frames(vector: dict[str, Any]) -> Iterator[tuple[str, bytes, bytes | None]]:
    """Every serial frame in a vector: (field name, wire bytes, logical bytes if the vector gives them)."""
    for wire_key, logical_key in HEX_FIELDS:
        if vector.get(wire_key):
            logical = vector.get(logical_key)
            yield wire_key, bytes.fromhex(vector[wire_key]), bytes.fromhex(logical) if logical else None
    for i, item in enumerate(vector.get("frames", [])):
        yield f"frames[{i}]", bytes.fromhex(item["hex"]), None


def all_vectors() -> list[Any]:
    """Every vector that holds at least one frame (the *_refused kinds record that the SDK sent nothing)."""
    return [
        pytest.param(name, vector, id=f"{name}/{vector['id']}")
        for name in VECTOR_SETS
        for vector in load_vectors(name)
        if any(True for _ in wire_frames(vector))
    ]


def naive_stuff(logical: bytes) -> bytes:
    """Independent reference: byte by byte, as the SDK's uartWrite does."""
    out = bytearray(logical[:2])
    for byte in logical[2:]:
        out.append(byte)
        if byte == 0xFF:
            out.append(0x55)
    return bytes(out)


def naive_unstuff(wire: bytes) -> bytes:
    out = bytearray(wire[:2])
    i = 2
    while i < len(wire):
        out.append(wire[i])
        i += 2 if wire[i] == 0xFF else 1
    return bytes(out)


def fields_of(logical: bytes) -> Frame:
    """A frame's fields read straight from the logical bytes by their offsets (§1.1)."""
    return Frame(logical[4], logical[5], logical[6] << 8 | logical[7], logical[8:-1])


# -- vectors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "vector"), all_vectors())
def test_every_vector_frame_parses_and_reencodes(name: str, vector: dict[str, Any]) -> None:
    frames = list(wire_frames(vector))
    for key, wire, logical in frames:
        expected_logical = logical if logical is not None else naive_unstuff(wire)
        assert naive_stuff(expected_logical) == wire, key  # the vector is self-consistent
        assert unstuff(wire) == expected_logical, key
        assert stuff(expected_logical) == wire, key
        want = fields_of(expected_logical)
        if sum(expected_logical[2:-1]) & 0xFF != expected_logical[-1]:
            # error_reply-0595 feeds the SDK a heartbeat with a wrong checksum on purpose.
            with pytest.raises(ChecksumError) as info:
                parse_frame(wire)
            assert info.value.actual == expected_logical[-1]
            assert info.value.expected == sum(expected_logical[2:-1]) & 0xFF
            continue
        frame = parse_frame(wire)
        assert frame == want, key
        assert encode_frame(frame.cmd, frame.sn, frame.payload, frame.flags) == wire, key
        assert encode_logical_frame(frame.cmd, frame.sn, frame.payload, frame.flags) == expected_logical, key
        assert parse_logical_frame(expected_logical) == want, key
    if "sn" in vector and vector.get("frame_hex"):
        assert parse_frame(bytes.fromhex(vector["frame_hex"])).sn == vector["sn"]
    if "cmd" in vector and vector.get("frame_hex"):
        assert parse_frame(bytes.fromhex(vector["frame_hex"])).cmd == vector["cmd"]


REPLY_KINDS = (
    "device_info_reply",
    "heartbeat_reply",
    "wifi_status_ack",
    "reboot_ack",
    "transparent_ack",
    "p0_unknown_action_ack",
    "error_reply",
)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind(*REPLY_KINDS))
def test_replies_answer_their_request(name: str, vector: dict[str, Any]) -> None:
    request = fields_of(bytes.fromhex(vector["input_unescaped_hex"]))
    reply = parse_frame(bytes.fromhex(vector["frame_hex"]))
    assert reply.sn == request.sn == vector["sn"]
    if vector["kind"] == "error_reply":
        assert reply.cmd == 0x12
    else:
        assert reply.cmd == request.cmd + 1
    if vector["kind"] == "heartbeat_reply":
        assert reply.flags == request.flags  # the SDK copies the request's flags (§1.4)


def test_heartbeat_vector_flags_are_kept() -> None:
    vector = next(v for v in load_vectors("gokit") if v["id"] == "heartbeat_reply-0580")
    assert parse_frame(bytes.fromhex(vector["input_hex"])).flags == 0x0001
    assert parse_frame(bytes.fromhex(vector["frame_hex"])).flags == 0x0001


# -- the spec's worked examples (serial protocol §1.2, §1.3, §7) -----------------------------------------------

SPEC_EXAMPLES = [
    # (wire hex, cmd, sn, payload hex)
    ("ff ff 00 10 05 12 00 00 04 05 0a 14 1e 07 01 26 3c 02 02 da", 0x05, 0x12, "04 05 0a 14 1e 07 01 26 3c 02 02"),
    ("ff ff 00 0c 03 07 00 00 01 24 00 c8 00 00 00 03", 0x03, 0x07, "01 24 00 c8 00 00 00"),
    ("ff ff 00 05 04 07 00 00 10", 0x04, 0x07, ""),
    (
        "ff ff 00 22 03 30 00 00 01 04 00 21 00 41 00 00 00 00 00 00 00 00 00 00 00 00 00"
        " 03 e8 00 00 00 00 00 00 00 00 a7",
        0x03,
        0x30,
        "01 04 00 21 00 41 00 00 00 00 00 00 00 00 00 00 00 00 00 03 e8 00 00 00 00 00 00 00 00",
    ),
    ("ff ff 00 0b 05 01 00 00 14 1f 06 2d 0a 37 b8", 0x05, 0x01, "14 1f 06 2d 0a 37"),
    ("ff ff 00 08 05 02 00 00 14 10 37 6a", 0x05, 0x02, "14 10 37"),
    ("ff ff 00 09 03 40 00 00 11 0a 00 04 6b", 0x03, 0x40, "11 0a 00 04"),
    ("ff ff 00 0f 05 2a 00 00 04 05 02 bc 07 3a 04 d2 00 ff 55 1b", 0x05, 0x2A, "04 05 02 bc 07 3a 04 d2 00 ff"),
    ("ff ff 00 07 0d 03 00 00 05 32 4e", 0x0D, 0x03, "05 32"),
    ("ff ff 00 05 0e 03 00 00 16", 0x0E, 0x03, ""),
    ("ff ff 00 05 17 09 00 00 25", 0x17, 0x09, ""),
    ("ff ff 00 10 18 09 00 00 07 e8 01 02 03 04 05 65 93 0c a5 d8", 0x18, 0x09, "07 e8 01 02 03 04 05 65 93 0c a5"),
    ("ff ff 00 05 07 10 00 00 1c", 0x07, 0x10, ""),
    ("ff ff 00 05 08 10 00 00 1d", 0x08, 0x10, ""),
    ("ff ff 00 06 09 05 00 00 02 16", 0x09, 0x05, "02"),
    ("ff ff 00 05 0b 06 00 00 16", 0x0B, 0x06, ""),
    ("ff ff 00 06 21 0a 00 00 00 31", 0x21, 0x0A, "00"),
    ("ff ff 00 06 03 0b 00 00 02 16", 0x03, 0x0B, "02"),
    ("ff ff 00 07 03 0c 00 00 12 1f 47", 0x03, 0x0C, "12 1f"),
    ("ff ff 00 06 12 44 00 00 02 5e", 0x12, 0x44, "02"),
    ("ff ff 00 05 08 ff 55 00 00 0c", 0x08, 0xFF, ""),  # §1.3: sn 0xFF
]


@pytest.mark.parametrize(("wire_hex", "cmd", "sn", "payload_hex"), SPEC_EXAMPLES)
def test_spec_examples(wire_hex: str, cmd: int, sn: int, payload_hex: str) -> None:
    wire = bytes.fromhex(wire_hex)
    payload = bytes.fromhex(payload_hex)
    assert encode_frame(cmd, sn, payload) == wire
    assert parse_frame(wire) == Frame(cmd, sn, 0, payload)


def test_spec_example_5_logical_and_wire() -> None:
    logical = bytes.fromhex("ff ff 00 0f 05 2a 00 00 04 05 02 bc 07 3a 04 d2 00 ff 1b")
    wire = bytes.fromhex("ff ff 00 0f 05 2a 00 00 04 05 02 bc 07 3a 04 d2 00 ff 55 1b")
    assert encode_logical_frame(0x05, 0x2A, logical[8:-1]) == logical
    assert stuff(logical) == wire
    assert unstuff(wire) == logical


def test_checksum_example() -> None:
    # §1.2: heartbeat ff ff 00 05 07 10 00 00 1c -> 00+05+07+10+00+00 = 0x1c
    assert checksum(bytes.fromhex("00 05 07 10 00 00")) == 0x1C
    assert checksum(b"\xff\x02") == 0x01  # mod 256


def test_constants() -> None:
    assert HEADER == b"\xff\xff"
    assert MIN_FRAME_LEN == 9
    assert len(encode_logical_frame(1, 0)) == MIN_FRAME_LEN
    assert DEFAULT_MAX_FRAME_LEN == 4096 + 9


def test_stuffing_never_touches_the_header() -> None:
    logical = b"\xff\xff\x00\x06\x03\xff\x00\x00\xff\x07"
    assert stuff(logical) == b"\xff\xff\x00\x06\x03\xff\x55\x00\x00\xff\x55\x07"


# -- strict parsing of bad input -----------------------------------------------------------------------------

GOOD = bytes.fromhex("ffff0005070000000c")


@pytest.mark.parametrize(
    ("wire_hex", "error", "reason"),
    [
        ("", FrameError, "shorter"),
        ("ffff", FrameError, "shorter"),
        ("ffff000507000000", FrameError, "shorter"),
        ("fffe0005070000000c", FrameError, "header"),
        ("00ff0005070000000c", FrameError, "header"),
        ("ffff0004070000000b", FrameError, "impossible length"),
        ("ffff0000070000000b", FrameError, "impossible length"),
        ("ffff0006070000000c", FrameError, "truncated"),
        ("ffff0005070000000c00", FrameError, "trailing"),
        ("ffff0005070000000d", ChecksumError, "checksum"),
        ("ffff00050700ff00000b", FrameError, "bad stuffing"),
        ("ffff000507ffff00000b", FrameError, "bad stuffing"),
        ("ffff0005070000000cff", FrameError, "bad stuffing"),
    ],
)
def test_parse_frame_rejects(wire_hex: str, error: type[FrameError], reason: str) -> None:
    wire = bytes.fromhex(wire_hex)
    with pytest.raises(error) as info:
        parse_frame(wire)
    assert reason in str(info.value)
    assert type(info.value) is error
    if wire:
        assert info.value.data == wire
        assert wire.hex() in str(info.value)


def test_checksum_error_carries_expected_and_actual() -> None:
    with pytest.raises(ChecksumError) as info:
        parse_frame(bytes.fromhex("ffff0005070000000d"))
    assert (info.value.expected, info.value.actual) == (0x0C, 0x0D)


def test_unstuff_reports_the_offset_of_the_bad_ff() -> None:
    with pytest.raises(FrameError) as info:
        unstuff(bytes.fromhex("ffff000603ff55ff0716"))
    assert info.value.offset == 7


def test_parse_logical_frame_accepts_ff_ff_in_the_body() -> None:
    logical = encode_logical_frame(0x05, 0xFF, b"\xff\xff")
    assert parse_logical_frame(logical) == Frame(0x05, 0xFF, 0, b"\xff\xff")


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"cmd": 256, "sn": 0}, "frame/cmd"),
        ({"cmd": -1, "sn": 0}, "frame/cmd"),
        ({"cmd": 1, "sn": 256}, "frame/sn"),
        ({"cmd": 1, "sn": -1}, "frame/sn"),
        ({"cmd": 1, "sn": 0, "flags": 0x10000}, "frame/flags"),
        ({"cmd": 1, "sn": 0, "flags": -1}, "frame/flags"),
        ({"cmd": 1, "sn": 0, "payload": bytes(MAX_PAYLOAD_LEN + 1)}, "frame/payload"),
    ],
)
def test_encode_validates(kwargs: dict[str, Any], path: str) -> None:
    for encoder in (encode_frame, encode_logical_frame):
        with pytest.raises(PayloadError) as info:
            encoder(**kwargs)
        assert info.value.path == path


def test_largest_payload_encodes() -> None:
    logical = encode_logical_frame(0x05, 1, bytes(MAX_PAYLOAD_LEN))
    assert logical[2:4] == b"\xff\xff"  # len 65535
    assert parse_frame(stuff(logical)).payload == bytes(MAX_PAYLOAD_LEN)


@settings(max_examples=300)
@given(st.binary(max_size=40) | st.builds(lambda tail: HEADER + tail, st.binary(max_size=40)))
def test_parse_frame_is_strict_on_random_bytes(data: bytes) -> None:
    # Whatever it is given: either one of our errors, or a frame that encodes back to exactly the input.
    try:
        frame = parse_frame(data)
    except CodecError as exc:
        assert isinstance(exc, FrameError)
        return
    assert encode_frame(frame.cmd, frame.sn, frame.payload, frame.flags) == data


# -- the construct declaration is the reference --------------------------------------------------------------

frame_values = st.tuples(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.binary(max_size=64) | st.lists(st.sampled_from([0x00, 0x55, 0xFF]), max_size=32).map(bytes),
)


@settings(max_examples=200)
@given(frame_values)
def test_fast_functions_agree_with_the_declaration(value: tuple[int, int, int, bytes]) -> None:
    cmd, sn, flags, payload = value
    declared = LOGICAL_FRAME.build(
        {"body": {"value": {"cmd": cmd, "sn": sn, "flags": flags, "payload": payload}}, "checksum": None}
    )
    assert encode_logical_frame(cmd, sn, payload, flags) == declared
    wire = encode_frame(cmd, sn, payload, flags)
    assert wire == naive_stuff(declared) == stuff(declared)
    assert unstuff(wire) == naive_unstuff(wire) == declared
    parsed = LOGICAL_FRAME.parse(declared).body.value
    assert parse_frame(wire) == Frame(parsed.cmd, parsed.sn, parsed.flags, parsed.payload) == value


def test_declaration_rejects_what_the_parser_rejects() -> None:
    with pytest.raises(ConstructError):
        LOGICAL_FRAME.parse(bytes.fromhex("ffff0005070000000d"))  # checksum
    with pytest.raises(ConstructError):
        LOGICAL_FRAME.parse(bytes.fromhex("ffff0004070000000b"))  # len < 5
    assert LOGICAL_FRAME.parse(GOOD).body.value.cmd == 0x07
