"""The probe library (gizdev.board.probe): a board written from the spec, a sim paced at a slow baud rate, the
wire-time arithmetic shared with the conformance checker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gizdev.board.line import DEVICE_INFO_PAYLOAD_BYTES, status_payload_bytes
from gizdev.board.probe import ProbeResult, probe, reply_timeout, summary
from gizdev.codec.commands import Command, DeviceInfo, encode_payload
from gizdev.codec.frame import Frame, encode_frame
from gizdev.codec.framer import Deframer
from gizdev.codec.p0 import load_product
from gizdev.link.protocol import ACK_TIMEOUT_S
from gizdev.sim.endpoints import TcpEndpoint
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_pty_pair
from tests.conftest import product_path
from tests.link.helpers import run

GOKIT = str(product_path("gokit"))
GOKIT_KEY = "0123456789abcdef0123456789abcdef"


def test_reply_timeout_grows_with_the_wire_time() -> None:
    assert reply_timeout(DEVICE_INFO_PAYLOAD_BYTES, 9600) == ACK_TIMEOUT_S  # 115 bytes: 0.12 s on the wire
    # At 2400 baud the same answer takes (9 + 106) * 10 / 2400 = 0.479 s, plus the room to start answering.
    assert reply_timeout(DEVICE_INFO_PAYLOAD_BYTES, 2400) == pytest.approx(0.479 + 0.05, abs=0.001)


@pytest.mark.parametrize("name", ["gokit", "light", "fan"])
def test_status_payload_bytes_is_the_size_of_a_full_read_reply(name: str) -> None:
    product = load_product(product_path(name))
    full_reply = product.encode("read_reply", VirtualMcu(product).state)
    assert status_payload_bytes(product) == len(full_reply)


def test_probe_paced_at_a_slow_baud_rate() -> None:
    """At 2400 baud the 115-byte device info takes 0.48 s on the wire, beyond the 200 ms ACK timeout."""

    async def scenario() -> tuple[ProbeResult, float]:
        product = load_product(GOKIT)
        mcu = VirtualMcu(product, values={"Humidity": 40})
        endpoint = TcpEndpoint(mcu, "127.0.0.1", 0, baud=2400)
        try:
            await endpoint.open()
            start = time.monotonic()
            result = await probe(endpoint.url, product, baudrate=2400)
            return result, time.monotonic() - start
        finally:
            await mcu.close()
            await endpoint.close()

    result, took = run(scenario(), timeout=20)
    assert result.status["Humidity"] == 40
    assert took > 0.45  # the sim really paced its answers


#: What SpecBoard reports (the serial protocol §7 example 1 values).
BOARD_STATE: dict[str, Any] = {
    "LED_OnOff": True,
    "LED_Color": "Purple",
    "LED_R": 10,
    "LED_G": 20,
    "LED_B": 30,
    "Motor_Speed": 2,
    "Infrared": True,
    "Temperature": 25,
    "Humidity": 60,
    "Alert_1": False,
    "Alert_2": True,
    "Fault_LED": False,
    "Fault_Motor": True,
    "Fault_TemHum": False,
    "Fault_IR": False,
}


class SpecBoard(asyncio.Protocol):
    """An MCU written from the spec alone (not the VirtualMcu): slow to boot, chatty, with 2015 device info.

    It ignores the first device info request (all its transmissions), and before answering the next one sends
    an unsolicited report and a network-time request of its own, as a board may at any time.
    """

    def __init__(self) -> None:
        self.product = load_product(GOKIT)
        self.deframer = Deframer()
        self.transport: asyncio.Transport | None = None
        self.received: list[Frame] = []
        self.first_sn: int | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for frame in self.deframer.feed(data):
            assert isinstance(frame, Frame), frame
            self.received.append(frame)
            if frame.cmd == Command.DEVICE_INFO_REQUEST:
                if self.first_sn is None or frame.sn == self.first_sn:
                    self.first_sn = frame.sn  # still booting
                    continue
                self.transport.write(encode_frame(0x05, 0x40, self.product.encode("report", BOARD_STATE)))
                self.transport.write(encode_frame(Command.NETWORK_TIME_REQUEST, 0x41))
                info = DeviceInfo("00000004", "00000004", "GK2HW001", "GK2SW023", GOKIT_KEY, 600)
                payload = encode_payload(Command.DEVICE_INFO_REPLY, info)
                self.transport.write(encode_frame(Command.DEVICE_INFO_REPLY, frame.sn, payload))
            elif frame.cmd == Command.P0_DOWN:
                reply = self.product.encode("read_reply", BOARD_STATE)
                self.transport.write(encode_frame(Command.P0_DOWN + 1, frame.sn, reply))


def test_probe_a_board_that_chats_before_answering() -> None:
    async def scenario() -> tuple[Any, SpecBoard]:
        with open_pty_pair() as pair:
            transport, board = await pair.connect_master(SpecBoard)
            try:
                result = await probe(pair.slave_path, board.product)
            finally:
                transport.close()
                await board.closed
        return result, board

    result, board = run(scenario(), timeout=20)
    assert result.device_info.product_key == GOKIT_KEY and result.device_info.device_attributes is None
    assert result.status == BOARD_STATE
    # The module acknowledged the report and answered the time request (same sn), and asked again at boot.
    answers = {(frame.cmd, frame.sn) for frame in board.received}
    assert (0x06, 0x40) in answers and (Command.NETWORK_TIME_REPLY, 0x41) in answers
    requests = [frame for frame in board.received if frame.cmd == Command.DEVICE_INFO_REQUEST]
    assert len(requests) == 4  # three transmissions ignored, the fourth (a new sn) answered
    text = summary(result, board.product).splitlines()
    assert "binding timeout   600 s after onboarding" in text
    assert any(line.startswith("gateway           unknown") for line in text)
