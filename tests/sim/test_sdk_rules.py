"""The vendor SDK's rules that the virtual MCU keeps, one test per rule, on gizdev's in-memory transport.

The rules come from the SDK V03030000 itself (serial protocol §3, §4.5; the generated ``gizCheckReport``,
``gizDevReportPolicy``, ``gizProtocolIssuedProcess`` and ``gizwitsHandle``): read replies are built from the last
*reported* state (``gizLastDataPoint``); a change of read-only numbers alone waits 6 s after the last report such a
change triggered (``lastReportTime``, which starts at 0 with the millisecond counter, so nothing of the kind goes
out in the first 6 s after boot); a read request is answered whatever follows its action byte (or its flags);
an illegal-message notice (0x11) from the module gets no answer; the state starts at zero in app units.

Time is a hand-moved clock: the reporter is told with ``recheck()`` when it moved, so no test waits 6 s.
Expected bytes are written out by hand from the spec (§4.2 raw = (app - addition) / ratio, §4.5, §6, §7).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gizdev.codec.commands import Command
from gizdev.codec.frame import Frame, encode_frame
from gizdev.codec.framer import Deframer
from gizdev.codec.p0 import load_product
from gizdev.errors import FrameError
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import memory_pair
from tests.cli.test_sim_cli import Sim, probe_status
from tests.conftest import product_path
from tests.link.helpers import TransportPair, mem_pair, run

BOOT = 1000.0  # the hand clock's reading when the board starts
QUIET_S = 0.3  # real time in which a report that is due would certainly have arrived


@dataclass
class HandClock:
    """A clock that moves only when told to, and tells the virtual MCU so."""

    now: float = BOOT
    mcu: VirtualMcu | None = None

    def __call__(self) -> float:
        return self.now

    def at(self, offset_s: float) -> None:
        """Move to BOOT + offset_s and let the MCU apply its rules at the new time."""
        self.now = BOOT + offset_s
        if self.mcu is not None:
            self.mcu.recheck()


async def clocked_pair(name: str = "gokit", **mcu_kwargs: Any) -> tuple[TransportPair, HandClock]:
    """Module session <-> virtual MCU (booted at BOOT on a hand clock) over the in-memory transport."""
    clock = HandClock()
    pair = await mem_pair(name, mcu_kwargs={"clock": clock, **mcu_kwargs})
    clock.mcu = pair.mcu
    return pair, clock


async def report(pair: TransportPair, timeout: float = 2.0) -> dict[str, Any]:
    """The next report the module receives (its changed points for a variable-length product)."""
    message = await asyncio.wait_for(pair.module.reports_queue.get(), timeout)
    return message.attrs


async def no_report(pair: TransportPair) -> bool:
    """True when no report arrives within QUIET_S."""
    try:
        await asyncio.wait_for(pair.module.reports_queue.get(), QUIET_S)
    except TimeoutError:
        return True
    return False


@dataclass
class RawModule(asyncio.Protocol):
    """The module's end of the wire, raw: sends given bytes, keeps every frame the MCU sends."""

    frames: list[Frame] = field(default_factory=list)
    deframer: Deframer = field(default_factory=Deframer)
    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for item in self.deframer.feed(data):
            assert not isinstance(item, FrameError), item
            self.frames.append(item)

    async def exchange(self, wire: bytes, wait_s: float = QUIET_S) -> list[Frame]:
        """Send ``wire``; everything the MCU sent back within ``wait_s``."""
        assert self.transport is not None
        before = len(self.frames)
        self.transport.write(wire)
        await asyncio.sleep(wait_s)
        return self.frames[before:]


async def raw_exchanges(name: str, wires: list[bytes]) -> list[list[Frame]]:
    """What a virtual MCU sends back to each of ``wires``, sent one after the other by a raw module."""
    mcu = VirtualMcu(load_product(product_path(name)))
    module = RawModule()
    module_end, _ = memory_pair(module, mcu.protocol_factory(), names=("module", "mcu"))
    mcu.start()
    try:
        return [await module.exchange(wire) for wire in wires]
    finally:
        await mcu.close()
        module_end.close()
        await asyncio.sleep(0)


# ---- (a) read replies ------------------------------------------------------------------------------------------


def test_read_reply_carries_the_last_reported_state() -> None:
    """A read-only change held back by the 6 s rule is held back from the read reply too (gizLastDataPoint)."""

    async def scenario() -> None:
        pair, clock = await clocked_pair()
        try:
            clock.at(10.0)
            pair.mcu.set_values({"Temperature": 25})
            assert (await report(pair))["Temperature"] == 25
            clock.at(12.0)
            pair.mcu.set_values({"Temperature": 30})  # inside the 6 s window: not reported yet
            assert await no_report(pair)
            assert pair.mcu.state["Temperature"] == 30
            assert (await pair.module.read())["Temperature"] == 25  # what was last reported
            clock.at(16.0)
            assert (await report(pair))["Temperature"] == 30
            assert (await pair.module.read())["Temperature"] == 30
            # A write is reported at once, so a read right after it shows it.
            await pair.module.write({"LED_R": 99})
            assert (await pair.module.read())["LED_R"] == 99
        finally:
            await pair.close()

    run(scenario())


def test_read_current_state_option_answers_the_current_state() -> None:
    """Our deviation, on request: read replies carry the state as it is now, held-back changes included."""

    async def scenario() -> None:
        pair, clock = await clocked_pair(read_current_state=True)
        try:
            clock.at(2.0)
            pair.mcu.set_values({"Temperature": 30})  # held back: still inside the boot window
            assert await no_report(pair)
            assert (await pair.module.read())["Temperature"] == 30
        finally:
            await pair.close()

    run(scenario())


def test_read_current_state_option_of_gizdev_sim(tmp_path: Path) -> None:
    """``gizdev sim --read-current-state``: a fresh read shows a read-only number inside its window at once."""
    for flag, expected in (((), 0), (("--read-current-state",), 55)):
        # A window of 60 s, so that a slow machine's probe still reads inside the one after boot.
        sim = Sim(["--control", "none", "--readonly-interval", "60", *flag], tmp_path / "sim.err")
        try:
            assert sim.command("set Humidity 55")["ok"]  # just booted: held back
            assert probe_status(sim.port)["Humidity"] == expected
        finally:
            status, _ = sim.stop()
        assert status == 0, sim.stderr


# ---- (b) the 6 s window --------------------------------------------------------------------------------------------


def test_readonly_window_counts_from_the_last_report_a_readonly_change_triggered() -> None:
    """Reports that writable points or bools triggered do not restart the window for read-only numbers."""

    async def scenario() -> None:
        pair, clock = await clocked_pair()
        try:
            clock.at(10.0)
            pair.mcu.set_values({"Temperature": 25})  # triggers a report: the window runs from 10 s
            assert (await report(pair))["Temperature"] == 25
            clock.at(12.0)
            pair.mcu.set_values({"Humidity": 40})
            assert await no_report(pair)  # inside the window
            clock.at(13.0)
            await pair.module.write({"LED_OnOff": True})  # reported at once; the held Humidity rides along
            assert (await report(pair))["Humidity"] == 40
            clock.at(16.5)  # 6.5 s after the read-only report, 3.5 s after the write's report
            pair.mcu.set_values({"Temperature": 26})
            assert (await report(pair, timeout=QUIET_S))["Temperature"] == 26
        finally:
            await pair.close()

    run(scenario())


# ---- (c) after boot --------------------------------------------------------------------------------------------


def test_no_readonly_report_in_the_first_6_s_after_boot() -> None:
    """The SDK's window starts at boot (lastReportTime = 0 = the millisecond counter): read-only numbers changed
    in the first 6 s wait for 6 s; writable points and bools (read-only ones included) are not held."""

    async def scenario() -> None:
        pair, clock = await clocked_pair()
        try:
            pair.mcu.set_values({"Temperature": 30})
            assert await no_report(pair)
            clock.at(5.9)
            assert await no_report(pair)
            clock.at(6.0)
            assert (await report(pair))["Temperature"] == 30
        finally:
            await pair.close()
        pair, clock = await clocked_pair()
        try:
            clock.at(1.0)
            pair.mcu.set_values({"Infrared": True})
            assert (await report(pair, timeout=QUIET_S))["Infrared"] is True
            await pair.module.write({"Motor_Speed": 3})
            assert (await report(pair, timeout=QUIET_S))["Motor_Speed"] == 3
        finally:
            await pair.close()

    run(scenario())


# ---- (d) read requests ------------------------------------------------------------------------------------------


def test_read_request_with_a_trailing_byte_is_answered() -> None:
    """The SDK looks at the action byte (fixed length) or the flags (variable length) and ignores what follows."""
    # GoKit read, sn 0x0b, with one byte 0x00 after the action: ff ff 00 07 03 0b 00 00 02 00 + checksum 0x17.
    gokit_read = bytes.fromhex("ffff0007030b0000020017")
    # Fan read of all five points (12 1f), sn 0x0c, with a trailing 0x00: checksum 0x48 (§7 example 8 has 0x47).
    fan_read = bytes.fromhex("ffff0008030c0000121f0048")
    [gokit_answer] = run(raw_exchanges("gokit", [gokit_read]))
    [fan_answer] = run(raw_exchanges("fan", [fan_read]))
    # Start state (§6): Motor_Speed 0 -> raw 5, Temperature 0 -> raw 13 (0x0d); everything else 0.
    # Action 03, W-bits 00, R G B 00, motor 05, R-bits 00, Temperature 0d, Humidity 00, alerts 00, faults 00.
    status = bytes.fromhex("030000000005000d000000")
    assert [(f.cmd, f.sn, f.payload) for f in gokit_answer] == [(0x04, 0x0B, status)]
    # Fan (§4.6): flags 1f, bit region 00 (windspeed low, work_mod could), wendu 0 -> raw 20, wemdu_kongzhi 16 -> 0,
    # shidu 0.
    assert [(f.cmd, f.sn, f.payload) for f in fan_answer] == [(0x04, 0x0C, bytes.fromhex("131f00140000"))]


# ---- (e) illegal-message notices ----------------------------------------------------------------------------------


def test_illegal_message_notice_from_the_module_gets_no_answer() -> None:
    """The SDK's gizwitsHandle: ``case CMD_ERROR_PACKAGE: break``; it answers only bad frames, with 0x12."""
    notice = encode_frame(Command.ILLEGAL_MESSAGE, 0x45, b"\x03")  # ff ff 00 06 11 45 00 00 03 5f
    assert notice == bytes.fromhex("ffff000611450000035f")
    heartbeat = bytes.fromhex("ffff0005071000001c")  # §7 example 8
    bad_heartbeat = bytes.fromhex("ffff00050742000014")  # vector error_reply-0595
    silence, answer, complaint = run(raw_exchanges("gokit", [notice, heartbeat, bad_heartbeat]))
    assert silence == []
    assert [(f.cmd, f.sn) for f in answer] == [(0x08, 0x10)]
    assert [(f.cmd, f.sn, f.payload) for f in complaint] == [(0x12, 0x42, b"\x01")]


# ---- (f) the start state ------------------------------------------------------------------------------------------


def test_start_state_is_zero_in_app_units() -> None:
    """The SDK clears its app-unit struct at boot: false, the first enum member, zero bytes, the number 0 (raw
    (0 - addition) / ratio). Where 0 lies outside a point's range, the in-range value nearest to it."""
    gokit = VirtualMcu(load_product(product_path("gokit"))).state
    assert gokit["Motor_Speed"] == 0 and gokit["Temperature"] == 0  # raw 5 and 13, not -5 and -13
    assert gokit["LED_OnOff"] is False and gokit["LED_Color"] == "Customize" and gokit["LED_R"] == 0
    fan = VirtualMcu(load_product(product_path("fan"))).state
    # wendu: addition -20, app 0 = raw 20. wemdu_kongzhi: addition 16, raw 0..24 (app 16..40): app 0 would be
    # raw -16, which the SDK wraps to the byte 0xf0; the nearest value in range is 16 (raw 0).
    assert fan == {"windspeed": "low", "work_mod": "could", "wendu": 0, "wemdu_kongzhi": 16, "shidu": 0}
