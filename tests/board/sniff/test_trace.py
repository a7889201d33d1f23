"""The trace decoder: spec frames by name, any chunking, bad bytes reported in place, each direction on its own."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.board.sniff import Chunk, Direction, IdleMark, TraceDecoder, TraceEvent, event_json, event_text
from gizdev.board.sniff.capture import CaptureError
from gizdev.codec.frame import Frame, encode_frame
from gizdev.codec.p0 import Product, load_product
from gizdev.errors import ChecksumError, FrameError
from tests.conftest import product_path

MCU, MODULE, UNKNOWN = Direction.MCU_TO_MODULE, Direction.MODULE_TO_MCU, Direction.UNKNOWN

# Serial protocol §7 worked examples (wire bytes).
EX1_REPORT = bytes.fromhex("ffff00100512000004050a141e0701263c0202da")
EX2_WRITE = bytes.fromhex("ffff000c03070000012400c800000003")
EX2_ACK = bytes.fromhex("ffff00050407000010")
EX6_WIFI = bytes.fromhex("ffff00070d03000005324e")
EX8_HEARTBEAT = bytes.fromhex("ffff0005071000001c")
EX8_HEARTBEAT_ACK = bytes.fromhex("ffff0005081000001d")


@pytest.fixture(scope="module")
def gokit() -> Product:
    return load_product(product_path("gokit"))


def feed_all(decoder: TraceDecoder, items: list[Chunk | IdleMark]) -> list[TraceEvent]:
    events: list[TraceEvent] = []
    for item in items:
        events.extend(decoder.feed(item))
    events.extend(decoder.finish())
    return events


def test_spec_report_is_decoded_by_name(gokit: Product) -> None:
    (event,) = feed_all(TraceDecoder(gokit), [Chunk(MCU, EX1_REPORT, "0.1")])
    line = event_text(event)
    assert line.startswith("0.1 mcu>mod p0_up(0x05) sn=18 report ")
    # Ex 1's values, as the spec lists them.
    for part in ("LED_OnOff=true", "LED_Color=Purple", "LED_R=10", "LED_G=20", "LED_B=30", "Motor_Speed=2"):
        assert f" {part} " in line
    for part in ("Infrared=true", "Temperature=25", "Humidity=60", "Alert_2=true", "Fault_Motor=true"):
        assert f" {part}" in line
    obj = event_json(event)
    assert (obj["time"], obj["dir"], obj["cmd"], obj["sn"], obj["action_name"]) == ("0.1", "mcu>mod", 5, 18, "report")
    assert obj["attrs"]["LED_Color"] == "Purple" and obj["attrs"]["Temperature"] == 25


def test_spec_exchange_in_one_capture(gokit: Product) -> None:
    items: list[Chunk | IdleMark] = [
        Chunk(MODULE, EX2_WRITE, "1.0"),
        Chunk(MCU, EX2_ACK, "1.1"),
        Chunk(MODULE, EX6_WIFI + EX8_HEARTBEAT, "2.0"),  # two frames in one chunk
        Chunk(MCU, EX8_HEARTBEAT_ACK, "2.1"),
    ]
    lines = [event_text(e) for e in feed_all(TraceDecoder(gokit), items)]
    assert lines[0].startswith("1.0 mod>mcu p0_down(0x03) sn=7 write ")
    assert "LED_R=200" in lines[0] and "Motor_Speed=-5" in lines[0]
    assert lines[1] == "1.1 mcu>mod p0_down_ack(0x04) sn=7"
    assert lines[2].startswith("2.0 mod>mcu wifi_status(0x0d) sn=3 ")
    assert lines[3] == "2.0 mod>mcu heartbeat(0x07) sn=16"
    assert lines[4] == "2.1 mcu>mod heartbeat_ack(0x08) sn=16"
    assert len(lines) == 5


def test_without_a_product_p0_stays_hex() -> None:
    (event,) = feed_all(TraceDecoder(None), [Chunk(MCU, EX1_REPORT)])
    assert event_json(event)["p0"] == "04050a141e0701263c0202"
    assert event_text(event) == "- mcu>mod p0_up(0x05) sn=18 p0=04050a141e0701263c0202"


def test_a_frame_split_at_every_byte_and_interleaved_with_the_other_direction(gokit: Product) -> None:
    for cut in range(1, len(EX1_REPORT)):
        items: list[Chunk | IdleMark] = [
            Chunk(MCU, EX1_REPORT[:cut], "a"),
            Chunk(MODULE, EX8_HEARTBEAT[: cut % len(EX8_HEARTBEAT)] or EX8_HEARTBEAT[:1], "b"),
            Chunk(MCU, EX1_REPORT[cut:], "c"),
            Chunk(MODULE, EX8_HEARTBEAT[max(cut % len(EX8_HEARTBEAT), 1) :], "d"),
        ]
        events = feed_all(TraceDecoder(gokit), items)
        assert [(e.time, e.direction, e.frame) for e in events] == [
            ("c", MCU, Frame(5, 0x12, 0, EX1_REPORT[8:-1])),
            ("d", MODULE, Frame(7, 0x10, 0, b"")),
        ], cut


def test_garbage_checksum_and_truncation_are_reported_in_place(gokit: Product) -> None:
    bad_sum = EX8_HEARTBEAT[:-1] + b"\x00"
    torn = EX1_REPORT[:11]
    items: list[Chunk | IdleMark] = [
        Chunk(MCU, b"\x10\x20\x30" + EX8_HEARTBEAT_ACK, "1"),
        Chunk(MCU, bad_sum + EX8_HEARTBEAT_ACK, "2"),
        Chunk(MCU, torn, "3"),
        IdleMark(MCU, "4"),
        Chunk(MCU, EX8_HEARTBEAT_ACK + b"\xfe", "5"),
    ]
    events = feed_all(TraceDecoder(gokit), items)
    summary = [(e.time, type(e.error).__name__ if e.error else "frame", getattr(e.error, "data", b"")) for e in events]
    assert summary == [
        ("1", "FrameError", b"\x10\x20\x30"),
        ("1", "frame", b""),
        ("2", "ChecksumError", bad_sum),
        ("2", "frame", b""),
        ("4", "FrameError", torn),
        ("5", "frame", b""),
        (None, "FrameError", b"\xfe"),  # trailing garbage, reported when the input ends
    ]
    assert isinstance(events[2].error, ChecksumError)
    assert events[2].error.expected == 0x1C and events[2].error.actual == 0
    obj = event_json(events[4])
    assert obj["data"] == torn.hex() and obj["offset"] == 3 + 9 + 9 + 9 and "truncated" in obj["error"]
    assert event_text(events[0]).startswith("1 mcu>mod BAD BYTES 3 bytes of garbage skipped [102030]")
    decoder_stats = TraceDecoder(gokit)
    feed_all(decoder_stats, items)
    stats = decoder_stats.stats(MCU)
    assert (stats.frames, stats.errors, stats.bytes) == (3, 4, sum(len(i.data) for i in items if isinstance(i, Chunk)))


def test_a_good_frame_with_a_bad_payload_is_shown_with_its_error(gokit: Product) -> None:
    short_report = encode_frame(0x05, 9, b"\x04\x05")  # a GoKit report is 11 bytes of P0
    short_wifi = encode_frame(0x0D, 4, b"\x05")  # the WiFi status word is 2 bytes
    events = feed_all(TraceDecoder(gokit), [Chunk(MCU, short_report), Chunk(MODULE, short_wifi)])
    assert [(e.frame.cmd if e.frame else None, e.fields, e.error is not None) for e in events] == [
        (5, None, True),
        (0x0D, None, True),
    ]
    obj = event_json(events[0])
    assert (obj["cmd"], obj["cmd_name"], obj["sn"], obj["payload"]) == (5, "p0_up", 9, "0405")
    assert obj["error"]
    assert "p0_up(0x05) sn=9 UNDECODABLE payload=0405: " in event_text(events[0])
    assert "wifi_status(0x0d) sn=4 UNDECODABLE payload=05: " in event_text(events[1])
    assert TraceDecoder(gokit).stats(MCU).undecodable == 0
    decoder = TraceDecoder(gokit)
    feed_all(decoder, [Chunk(MCU, short_report)])
    assert decoder.stats(MCU).undecodable == 1 and decoder.stats(MCU).frames == 1


def test_unknown_commands_show_their_payload(gokit: Product) -> None:
    (event,) = feed_all(TraceDecoder(gokit), [Chunk(UNKNOWN, encode_frame(0x7A, 1, b"\xab\xcd"))])
    assert event_json(event) == {
        "time": None,
        "dir": "?",
        "cmd": 0x7A,
        "cmd_name": "unknown",
        "sn": 1,
        "flags": 0,
        "payload": "abcd",
    }


def test_a_bad_capture_line_is_an_event() -> None:
    decoder = TraceDecoder(None)
    (event,) = decoder.feed(CaptureError("not hex: 'zz'", line=12, direction=MODULE))
    assert event_json(event) == {"time": None, "dir": "mod>mcu", "line": 12, "error": "not hex: 'zz'"}
    assert event_text(event) == "- mod>mcu BAD LINE 12: not hex: 'zz'"
    assert decoder.bad_lines == 1


def test_an_idle_mark_with_nothing_pending_says_nothing() -> None:
    decoder = TraceDecoder(None)
    assert decoder.feed(Chunk(MCU, EX8_HEARTBEAT_ACK)) != []
    assert not decoder.pending(MCU)
    assert decoder.feed(IdleMark(MCU, "9")) == []
    decoder.feed(Chunk(MCU, EX8_HEARTBEAT_ACK[:4]))
    assert decoder.pending(MCU) and not decoder.pending(MODULE)


frames = st.builds(
    encode_frame,
    cmd=st.sampled_from([0x01, 0x07, 0x08, 0x0D, 0x17, 0x7F]),
    sn=st.integers(0, 255),
    payload=st.binary(max_size=40),
    flags=st.integers(0, 0xFFFF),
)


@settings(max_examples=60, deadline=None)
@given(
    up=st.lists(frames, max_size=8),
    down=st.lists(frames, max_size=8),
    cuts=st.lists(st.integers(1, 30), min_size=1, max_size=20),
    order=st.randoms(use_true_random=False),
)
def test_each_direction_finds_its_frames_whatever_the_chunking(
    up: list[bytes], down: list[bytes], cuts: list[int], order: object
) -> None:
    streams = {MCU: b"".join(up), MODULE: b"".join(down)}
    pieces: dict[Direction, list[bytes]] = {}
    for direction, data in streams.items():
        out, pos, i = [], 0, 0
        while pos < len(data):
            out.append(data[pos : pos + cuts[i % len(cuts)]])
            pos += cuts[i % len(cuts)]
            i += 1
        pieces[direction] = out
    items: list[Chunk | IdleMark] = []
    while pieces[MCU] or pieces[MODULE]:
        direction = order.choice([d for d in pieces if pieces[d]])  # type: ignore[attr-defined]
        items.append(Chunk(direction, pieces[direction].pop(0)))
    events = feed_all(TraceDecoder(None), items)
    assert all(e.frame is not None for e in events), [e.error for e in events if e.error]
    for direction, sent in ((MCU, up), (MODULE, down)):
        got = [e.frame for e in events if e.direction is direction]
        assert [encode_frame(f.cmd, f.sn, f.payload, f.flags) for f in got if f] == sent


def test_frame_errors_are_the_deframers_own(gokit: Product) -> None:
    """The decoder reports the deframer's error values unchanged (offsets count that direction's bytes only)."""
    decoder = TraceDecoder(gokit)
    decoder.feed(Chunk(MODULE, b"\x00" * 100))
    (event,) = decoder.feed(Chunk(MCU, b"\x01\x02" + EX8_HEARTBEAT_ACK))[:1]
    assert isinstance(event.error, FrameError) and event.error.offset == 0
