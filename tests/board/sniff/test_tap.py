"""TraceTap, the live observer: what it records is what it decoded, idle lines only where they matter."""

from __future__ import annotations

import io

from gizdev.board.sniff import Direction, TraceDecoder, TraceEvent, TraceTap, event_json, replay
from gizdev.board.sniff.capture import iso_time

MCU, MODULE = Direction.MCU_TO_MODULE, Direction.MODULE_TO_MCU
HEARTBEAT = bytes.fromhex("ffff0005071000001c")  # serial protocol §7 Ex 8
T0 = 1795660200.0  # 2026-11-26T02:30:00Z


def test_record_holds_every_chunk_and_only_the_idle_lines_that_report_something() -> None:
    record = io.StringIO()
    events: list[TraceEvent] = []
    tap = TraceTap(TraceDecoder(None), events.append, record=record)
    tap.relayed(MODULE, HEARTBEAT, T0)
    tap.idle(MODULE, T0 + 0.03)  # nothing pending: no line, no event
    tap.relayed(MCU, HEARTBEAT[:5], T0 + 0.1)
    tap.idle(MCU, T0 + 0.13)  # a torn frame: reported, and the capture says when
    tap.relayed(MCU, HEARTBEAT[:3], T0 + 0.2)
    tap.finish(T0 + 1)  # pending at the end: reported as at an idle line
    assert record.getvalue().splitlines() == [
        "2026-11-26T02:30:00.000000Z mod>mcu ffff0005071000001c",
        "2026-11-26T02:30:00.100000Z mcu>mod ffff000507",
        "2026-11-26T02:30:00.130000Z mcu>mod idle",
        "2026-11-26T02:30:00.200000Z mcu>mod ffff00",
        "2026-11-26T02:30:01.000000Z mcu>mod idle",
    ]
    assert [(e.time, e.direction, e.frame is not None) for e in events] == [
        (iso_time(T0), MODULE, True),
        (iso_time(T0 + 0.13), MCU, False),
        (iso_time(T0 + 1), MCU, False),
    ]
    replayed: list[TraceEvent] = []
    replay(io.StringIO(record.getvalue()), TraceDecoder(None), replayed.append)
    assert [event_json(e) for e in replayed] == [event_json(e) for e in events]


def test_without_a_record_the_tap_only_decodes() -> None:
    events: list[TraceEvent] = []
    tap = TraceTap(TraceDecoder(None), events.append)
    tap.relayed(MODULE, HEARTBEAT + HEARTBEAT, T0)
    tap.finish(T0)
    assert [e.fields["cmd_name"] if e.fields else None for e in events] == ["heartbeat", "heartbeat"]
