"""The acceptance scenario: a module session (the bridge's MCU side) and a virtual MCU talk through the sniffer.

Each side's frames are observed where they are sent (the link's outgoing filter, after the sim's own fault
filter) and each injected stretch of bad bytes is noted in the same sequence, so the expected trace of each
direction is known independently of the sniffer: every frame parsed on its own with the strict frame parser.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gizdev.board.sniff import Direction, TraceEvent
from gizdev.codec.commands import Command
from gizdev.codec.frame import Frame, encode_frame, parse_frame
from gizdev.codec.p0 import P0Message
from gizdev.link import ModuleSession
from gizdev.sim.mcu import VirtualMcu
from tests.board.sniff.helpers import tap_sent

MCU_GARBAGE = b"\x01\x02\x03"
MODULE_GARBAGE = b"\x7e\x00"


@dataclass(frozen=True)
class Junk:
    """Bytes injected on the wire that are not a frame."""

    data: bytes


@dataclass
class Sent:
    """What each side put on the wire, in order: frames (wire bytes) and injected junk."""

    mcu: list[bytes | Junk] = field(default_factory=list)
    module: list[bytes | Junk] = field(default_factory=list)
    reports: list[P0Message] = field(default_factory=list)

    def expected(self, direction: Direction) -> list[tuple[str, Frame | bytes]]:
        items = self.mcu if direction is Direction.MCU_TO_MODULE else self.module
        return [("bad", item.data) if isinstance(item, Junk) else ("frame", parse_frame(item)) for item in items]


def observed(events: list[TraceEvent], direction: Direction) -> list[tuple[str, Frame | bytes]]:
    """The sniffer's events of one direction in the same shape as Sent.expected."""
    out: list[tuple[str, Frame | bytes]] = []
    for event in events:
        if event.direction is not direction:
            continue
        if event.frame is not None:
            out.append(("frame", event.frame))
        else:
            assert event.error is not None
            out.append(("bad", getattr(event.error, "data", b"")))
    return out


def attach(module: ModuleSession, mcu: VirtualMcu) -> Sent:
    """Start observing what both links send (call once both links exist)."""
    sent = Sent()
    assert module.link is not None and mcu.session.link is not None
    tap_sent(module.link, sent.module)  # type: ignore[arg-type]
    tap_sent(mcu.session.link, sent.mcu)  # type: ignore[arg-type]
    return sent


async def _next_report(module: ModuleSession, sent: Sent) -> P0Message:
    async with asyncio.timeout(5):
        report = await module.reports_queue.get()
    sent.reports.append(report)
    return report


async def talk(module: ModuleSession, mcu: VirtualMcu, sent: Sent) -> None:
    """Handshake, read, writes with their reports, a time request, sensor changes; garbage and a torn frame."""
    assert module.link is not None and mcu.session.link is not None
    await module.handshake()
    await module.read()
    await module.write({"LED_R": 200})
    await _next_report(module, sent)
    await mcu.session.request_time()
    sent.mcu.append(Junk(MCU_GARBAGE))
    mcu.session.link.write_raw(MCU_GARBAGE)
    mcu.set_values({"LED_G": 7})
    await _next_report(module, sent)
    sent.module.append(Junk(MODULE_GARBAGE))
    module.link.write_raw(MODULE_GARBAGE)
    await module.write({"Motor_Speed": 3})
    await _next_report(module, sent)
    # A board that resets while sending: half a report, then a whole new one.
    whole = encode_frame(Command.P0_UP, mcu.session.link.next_sn(), mcu.product.encode("report", mcu.state))
    torn = whole[: len(whole) // 2]
    sent.mcu.append(Junk(torn))
    mcu.session.link.write_raw(torn)
    mcu.set_values({"LED_B": 9})
    await _next_report(module, sent)
