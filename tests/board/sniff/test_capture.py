"""The capture format: every accepted spelling, every rejected one with its line number, hostile files."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gizdev.board.sniff import CaptureError, Chunk, Direction, IdleMark, format_item, parse_line, read_capture
from gizdev.board.sniff.capture import MAX_LINE_CHARS, RECORD_BYTES_PER_LINE, iso_time

MCU, MODULE, UNKNOWN = Direction.MCU_TO_MODULE, Direction.MODULE_TO_MCU, Direction.UNKNOWN
HB = bytes.fromhex("ffff0005071a000026")  # heartbeat, sn 0x1a: 00+05+07+1a = 0x26


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2026-11-26T02:30:00.123456Z mcu>mod ffff0005071a000026", Chunk(MCU, HB, "2026-11-26T02:30:00.123456Z")),
        ("2026-11-26T02:30:00+00:00 mod>mcu ffff0005071a000026", Chunk(MODULE, HB, "2026-11-26T02:30:00+00:00")),
        ("0.123 < ff ff 00 05 07 1a 00 00 26", Chunk(MODULE, HB, "0.123")),
        ("12.5 > ff:ff:00:05:07:1a:00:00:26", Chunk(MCU, HB, "12.5")),
        ("ffff0005 071a0000 26", Chunk(UNKNOWN, HB)),
        ("FFFF0005071A000026", Chunk(UNKNOWN, HB)),
        ("  MCU>MOD\tffff0005071a000026  # a heartbeat? no, the module sends those", Chunk(MCU, HB)),
        ("? ffff0005071a000026", Chunk(UNKNOWN, HB)),
        ("module>mcu ff", Chunk(MODULE, b"\xff")),
        ("12 34", Chunk(UNKNOWN, b"\x12\x34")),  # no decimal point: hex, not a time
        ("1.5 mcu>mod idle", IdleMark(MCU, "1.5")),
        ("mod>mcu IDLE", IdleMark(MODULE)),
        ("", None),
        ("   \t ", None),
        ("# comment ffff", None),
        ("  # indented comment", None),
    ],
)
def test_accepted_lines(line: str, expected: Chunk | IdleMark | None) -> None:
    assert parse_line(line, 1) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("ffff0005 zz", "not hex: 'zz'"),
        ("0x12 0x34", "not hex: '0x12'"),
        ("fff", "odd number of hex digits in 'fff'"),
        ("ff f ff", "odd number of hex digits in 'f'"),
        ("mcu>mod", "no bytes on the line"),
        ("0.5", "no bytes on the line"),
        ("idle", "'idle' needs a direction"),
        ("2026-13-45T99:00:00Z mcu>mod ff", "not a timestamp: '2026-13-45T99:00:00Z'"),
        ("mcu>mod mod>mcu ff", "not hex: 'mod>mcu'"),
        ("ff " + "g" * 100, "not hex: '" + "g" * 40 + "...'"),
        ("héllo", "not hex"),
        ("\x00\x01", "not hex"),
    ],
)
def test_rejected_lines_say_why_and_where(line: str, reason: str) -> None:
    with pytest.raises(CaptureError) as caught:
        parse_line(line, 7)
    assert caught.value.line == 7
    assert reason in str(caught.value)
    assert str(caught.value).startswith("line 7: ")


def test_a_bad_line_keeps_the_direction_it_named() -> None:
    with pytest.raises(CaptureError) as caught:
        parse_line("0.1 mod>mcu ffzz", 3)
    assert caught.value.direction is MODULE


def test_read_capture_skips_bad_lines_and_counts_every_line() -> None:
    text = "# header\nmcu>mod ffff\n\nzz\nmcu>mod 0005\nmod>mcu idle\nabc\n"
    items = list(read_capture(io.StringIO(text)))
    assert items[0] == Chunk(MCU, b"\xff\xff")
    assert isinstance(items[1], CaptureError) and items[1].line == 4
    assert items[2] == Chunk(MCU, b"\x00\x05")
    assert items[3] == IdleMark(MODULE)
    assert isinstance(items[4], CaptureError) and items[4].line == 7
    assert len(items) == 5


def test_an_oversized_line_is_skipped_without_losing_the_line_count() -> None:
    huge = "ab" * (MAX_LINE_CHARS // 2 + 10)  # valid hex, but too long to hold
    text = f"mcu>mod 01\n{huge}\nmcu>mod 02\n{'x' * (3 * MAX_LINE_CHARS)}\nmcu>mod 03"  # last line without newline
    items = list(read_capture(io.StringIO(text)))
    assert items[0] == Chunk(MCU, b"\x01")
    assert isinstance(items[1], CaptureError) and items[1].line == 2 and "longer than" in str(items[1])
    assert items[2] == Chunk(MCU, b"\x02")
    assert isinstance(items[3], CaptureError) and items[3].line == 4
    assert items[4] == Chunk(MCU, b"\x03")
    assert len(items) == 5


def test_a_line_just_under_the_limit_is_read() -> None:
    body = "ab" * ((MAX_LINE_CHARS - len("mcu>mod \n")) // 2)
    (item,) = read_capture(io.StringIO(f"mcu>mod {body}\n"))
    assert isinstance(item, Chunk) and item.data == b"\xab" * (len(body) // 2)


def test_iso_time_is_utc_with_microseconds() -> None:
    # `date -u -d @1795660200` prints Thu Nov 26 02:30:00 UTC 2026.
    assert iso_time(1795660200.123456) == "2026-11-26T02:30:00.123456Z"
    assert iso_time(0) == "1970-01-01T00:00:00.000000Z"


directions = st.sampled_from([MCU, MODULE, UNKNOWN])
times = st.one_of(
    st.none(),
    st.floats(min_value=0, max_value=4e9, allow_nan=False).map(iso_time),
    st.decimals(min_value=0, max_value=10**6, places=3).map(lambda d: f"{d:.3f}"),
)


@given(direction=directions, data=st.binary(min_size=1, max_size=300), time=times)
def test_format_item_reads_back_as_the_same_bytes(direction: Direction, data: bytes, time: str | None) -> None:
    lines = format_item(Chunk(direction, data, time))
    assert len(lines) == -(-len(data) // RECORD_BYTES_PER_LINE)
    parsed = [parse_line(line, n) for n, line in enumerate(lines, 1)]
    assert all(isinstance(p, Chunk) and p.direction is direction and p.time == time for p in parsed)
    assert b"".join(p.data for p in parsed if isinstance(p, Chunk)) == data


@given(direction=st.sampled_from([MCU, MODULE]), time=times)
def test_idle_marks_read_back(direction: Direction, time: str | None) -> None:
    (line,) = format_item(IdleMark(direction, time))
    assert parse_line(line) == IdleMark(direction, time)


@given(st.text(max_size=200))
def test_any_text_line_parses_or_raises_capture_error(line: str) -> None:
    try:
        parse_line(line, 1)
    except CaptureError as exc:
        assert exc.line == 1
