"""The tap's idle rule: a frame cut by a stall is not split into errors; a final unstuffed 0xFF is settled."""

from __future__ import annotations

import asyncio

from gizdev.board.check.wire import IDLE_FLUSH_S, Tap
from gizdev.codec.frame import Frame
from tests.link.helpers import run

#: GoKit report, §7 example 1 (20 bytes, no 0xFF inside).
REPORT = bytes.fromhex("ff ff 00 10 05 12 00 00 04 05 0a 14 1e 07 01 26 3c 02 02 da")


def test_a_stall_inside_a_frame_does_not_split_it() -> None:
    async def scenario() -> list[object]:
        tap = Tap()
        for cut in (1, 2, 9):  # after the first header byte, after the header, inside the body
            tap.data_received(REPORT[:cut])
            assert await tap.wait_for(lambda s: True, IDLE_FLUSH_S * 3, len(tap.seen)) is None
            tap.data_received(REPORT[cut:])
        return [seen.frame if seen.frame is not None else seen.error for seen in tap.seen]

    items = run(scenario())
    assert len(items) == 3 and all(isinstance(item, Frame) and item.sn == 0x12 for item in items)


def test_a_final_unstuffed_ff_is_settled_when_the_line_goes_quiet() -> None:
    async def scenario() -> Frame | None:
        tap = Tap()
        tap.data_received(bytes.fromhex("ffff000508f20000ff"))  # heartbeat answer, checksum 0xff sent bare
        await asyncio.sleep(0)
        seen = await tap.wait_for(lambda s: s.frame is not None, IDLE_FLUSH_S * 5)
        return None if seen is None else seen.frame

    assert run(scenario()) == Frame(0x08, 0xF2, 0, b"")
