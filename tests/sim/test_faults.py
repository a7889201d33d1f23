"""The virtual MCU's protocol faults, one knob at a time, seen by a raw peer on a real socket pair.

Expected bytes are written out by hand from the serial protocol (§1.2 checksum, §1.3 stuffing, §7 examples), not
taken from our encoder.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from gizdev.codec.commands import Command, DeviceInfo, decode_payload
from gizdev.codec.frame import Frame
from gizdev.codec.framer import Deframer
from gizdev.codec.p0 import load_product
from gizdev.errors import ChecksumError, FrameError
from gizdev.sim.mcu import FaultPlan, VirtualMcu
from tests.conftest import product_path
from tests.link.helpers import run

GOKIT_KEY = "0123456789abcdef0123456789abcdef"
#: §7 example 8 heartbeat with sn 0x10; with sn 0xFF the stuffed request is ff ff 00 05 07 ff 55 00 00 0b.
HEARTBEAT_FF = bytes.fromhex("ffff000507ff5500000b")
ANSWER_FF_STUFFED = bytes.fromhex("ffff000508ff5500000c")  # §1.3 / VEC: sn 0xFF answered, stuffed
ANSWER_FF_BARE = bytes.fromhex("ffff000508ff00000c")
HEARTBEAT_10 = bytes.fromhex("ffff0005071000001c")  # §7 example 8
HEARTBEAT_10_BAD = bytes.fromhex("ffff0005071000001d")  # checksum off by one
DEVICE_INFO_REQUEST = bytes.fromhex("ffff00050100000006")
#: §7 example 2: write LED_R = 200, Motor_Speed = -5 (sn 7).
WRITE_EX2 = bytes.fromhex("ffff000c03070000012400c800000003")


class Peer(asyncio.Protocol):
    """The module's end, raw: records frames and errors with their arrival time; never answers."""

    def __init__(self) -> None:
        self.deframer = Deframer()
        self.items: list[tuple[float, Frame | FrameError]] = []
        self.raw = bytearray()
        self.transport: asyncio.Transport | None = None
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.raw += data
        now = asyncio.get_running_loop().time()
        self.items.extend((now, item) for item in self.deframer.feed(data))
        self.arrived.set()

    def send(self, wire: bytes) -> float:
        assert self.transport is not None
        self.transport.write(wire)
        return asyncio.get_running_loop().time()

    def frames(self, cmd: int | None = None) -> list[tuple[float, Frame]]:
        return [(t, i) for t, i in self.items if isinstance(i, Frame) and (cmd is None or i.cmd == cmd)]

    async def until(self, ok: Callable[[], bool], timeout: float = 3.0) -> bool:
        async with asyncio.timeout(timeout):
            while not ok():
                self.arrived.clear()
                await self.arrived.wait()
        return True


async def with_sim(faults: FaultPlan, body: Callable[[Peer, VirtualMcu], Awaitable[Any]], **kwargs: Any) -> Any:
    product = load_product(product_path("gokit"))
    mcu = VirtualMcu(product, faults=faults, **kwargs)
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    await loop.create_connection(mcu.protocol_factory, sock=left)
    _, peer = await loop.create_connection(Peer, sock=right)
    mcu.start()
    try:
        return await body(peer, mcu)
    finally:
        await mcu.close()
        assert peer.transport is not None
        peer.transport.close()
        await asyncio.sleep(0)


def test_product_key_override() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> DeviceInfo:
        peer.send(DEVICE_INFO_REQUEST)
        await peer.until(lambda: bool(peer.frames(Command.DEVICE_INFO_REPLY)))
        info = decode_payload(Command.DEVICE_INFO_REPLY, peer.frames()[0][1].payload)
        assert isinstance(info, DeviceInfo)
        return info

    assert run(with_sim(FaultPlan(), body)).product_key == GOKIT_KEY
    other = "f" * 32
    assert run(with_sim(FaultPlan(product_key=other), body)).product_key == other


def test_ack_delay_delays_answers_only() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> None:
        sent = peer.send(HEARTBEAT_10)
        await peer.until(lambda: bool(peer.frames(Command.HEARTBEAT_ACK)))
        assert peer.frames()[0][0] - sent >= 0.3
        # Requests of the MCU's own (a report after a write) are not held back by the ACK delay.
        mcu.set_values({"Infrared": True})
        report_asked = asyncio.get_running_loop().time()
        await peer.until(lambda: bool(peer.frames(Command.P0_UP)))
        assert peer.frames(Command.P0_UP)[0][0] - report_asked < 0.3

    run(with_sim(FaultPlan(ack_delay_s=0.3), body))


def test_bad_checksum_every_nth_frame() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> list[bool]:
        for sn in range(6):
            # heartbeat sn n: 00 05 07 n 00 00 -> checksum 0x0c + n
            peer.send(bytes.fromhex(f"ffff000507{sn:02x}0000{0x0C + sn:02x}"))
        await peer.until(lambda: len(peer.items) == 6)
        return [isinstance(item, ChecksumError) for _, item in peer.items]

    assert run(with_sim(FaultPlan(bad_checksum_every=3), body)) == [False, False, True, False, False, True]


def test_no_report_after_write() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> None:
        peer.send(WRITE_EX2)
        await peer.until(lambda: bool(peer.frames(Command.P0_DOWN_ACK)))
        await asyncio.sleep(0.5)
        assert peer.frames(Command.P0_UP) == []
        assert mcu.state["LED_R"] == 200  # applied all the same

    run(with_sim(FaultPlan(no_report_after_write=True), body))


def test_write_is_reported_without_the_fault() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> None:
        peer.send(WRITE_EX2)
        await peer.until(lambda: bool(peer.frames(Command.P0_UP)))
        assert peer.frames(Command.P0_UP)[0][1].payload[2] == 200  # action, W-bits, then LED_R (§6)

    run(with_sim(FaultPlan(), body))


def test_no_stuffing_sends_a_bare_ff() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> bytes:
        peer.send(HEARTBEAT_FF)
        await peer.until(lambda: len(peer.raw) >= len(ANSWER_FF_BARE))
        await asyncio.sleep(0.05)
        return bytes(peer.raw)

    assert run(with_sim(FaultPlan(), body)) == ANSWER_FF_STUFFED
    assert run(with_sim(FaultPlan(no_stuffing=True), body)) == ANSWER_FF_BARE


def test_wrong_ack_sn() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> int:
        peer.send(HEARTBEAT_10)
        await peer.until(lambda: bool(peer.frames(Command.HEARTBEAT_ACK)))
        return peer.frames()[0][1].sn

    assert run(with_sim(FaultPlan(), body)) == 0x10
    assert run(with_sim(FaultPlan(wrong_ack_sn=True), body)) == 0x11


def test_no_resend() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> int:
        mcu.set_values({"Infrared": True})  # a bool: reported at once; the peer never acknowledges
        await peer.until(lambda: bool(peer.frames(Command.P0_UP)))
        await asyncio.sleep(0.8)  # the SDK's resends would come at 200 and 400 ms
        return len(peer.frames(Command.P0_UP))

    assert run(with_sim(FaultPlan(), body)) == 3
    assert run(with_sim(FaultPlan(no_resend=True), body)) == 1


def test_ignore_illegal() -> None:
    async def body(peer: Peer, mcu: VirtualMcu) -> list[tuple[int, bytes]]:
        peer.send(HEARTBEAT_10_BAD)
        peer.send(bytes.fromhex("ffff00056011000076"))  # unknown command 0x60, sn 0x11
        peer.send(HEARTBEAT_10)  # still answered either way
        await peer.until(lambda: bool(peer.frames(Command.HEARTBEAT_ACK)))
        await asyncio.sleep(0.2)
        return [(frame.cmd, frame.payload) for _, frame in peer.frames()]

    assert run(with_sim(FaultPlan(), body)) == [(0x12, b"\x01"), (0x12, b"\x02"), (0x08, b"")]
    assert run(with_sim(FaultPlan(ignore_illegal=True), body)) == [(0x08, b"")]
