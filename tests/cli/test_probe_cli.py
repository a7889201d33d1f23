"""``gizdev probe`` against ``gizdev sim`` (pty and TCP), against a board written from the spec, and its failures."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

from gizdev.cli.probe_cmd import probe as probe_coro
from gizdev.cli.probe_cmd import summary
from gizdev.codec.commands import Command, DeviceInfo, encode_payload
from gizdev.codec.frame import Frame, encode_frame
from gizdev.codec.framer import Deframer
from gizdev.codec.p0 import load_product
from gizdev.transport import open_pty_pair
from tests.cli.test_sim_cli import GOKIT, probe, probe_status, start_sim
from tests.link.helpers import run

__all__ = ["start_sim"]  # the fixture, imported so that pytest finds it here

GOKIT_KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"


def test_probe_over_a_pty(start_sim: Any) -> None:
    sim = start_sim("--set", "LED_Color=Pink", "--set", "Temperature=25", "--set", "LED_OnOff=true")
    result = probe(sim.port, "--product", GOKIT, "--json")
    assert result.returncode == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["port"] == sim.port
    assert obj["device_info"]["product_key"] == GOKIT_KEY
    assert obj["device_info"]["protocol_version"] == "00000004" and obj["device_info"]["is_gateway"] is False
    assert obj["status"]["LED_Color"] == "Pink" and obj["status"]["Temperature"] == 25
    assert obj["status"]["LED_OnOff"] is True and obj["status"]["LED_R"] == 0
    assert len(obj["status"]) == 15

    # The readable summary, from a second module session on the same pty.
    text = probe(sim.port, "--product", GOKIT)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert f"product key       {GOKIT_KEY} (GoKit)" in lines
    assert "binding timeout   always bindable (0)" in lines and "gateway           no" in lines
    assert any(line.split()[:3] == ["LED_Color", "Pink", "writable"] for line in lines)
    assert any(line.split()[:3] == ["Temperature", "25", "read-only"] for line in lines)


def test_probe_over_tcp(start_sim: Any) -> None:
    sim = start_sim(
        "--listen", "socket://127.0.0.1:0", "--set", "Motor_Speed=3", "--set", "Alert_2=true",
        "--garbage", "0.5", "--delay", "0.01", "--seed", "4",
    )  # fmt: skip
    assert sim.port.startswith("socket://127.0.0.1:") and not sim.port.endswith(":0")
    plan = sim.command("fault")["faults"]
    assert plan["garbage"] == 0.5 and plan["delay_s"] == 0.01 and plan["seed"] == 4
    status = probe_status(sim.port)  # through the garbage before the sim's frames
    assert status["Motor_Speed"] == 3 and status["Alert_2"] is True
    # A new connection is a new link: a value changed in between is seen.
    assert sim.command("set Motor_Speed -2")["ok"]
    assert probe_status(sim.port)["Motor_Speed"] == -2


def test_probe_paced_at_a_slow_baud_rate(start_sim: Any) -> None:
    """At 2400 baud the 115-byte device info takes 0.48 s on the wire, beyond the 200 ms ACK timeout."""
    sim = start_sim("--listen", "socket://127.0.0.1:0", "--baud", "2400", "--set", "Humidity=40")
    product = load_product(GOKIT)
    start = time.monotonic()
    result = run(probe_coro(sim.port, product, baudrate=2400), timeout=20)
    took = time.monotonic() - start
    assert result.status["Humidity"] == 40
    assert took > 0.45  # the sim really paced its answers


def test_product_key_mismatch(start_sim: Any, tmp_path: Path) -> None:
    schema = json.loads(Path(GOKIT).read_text())
    schema["product_key"] = OTHER_KEY
    other = tmp_path / "other.json"
    other.write_text(json.dumps(schema))
    sim = start_sim(product=str(other))
    result = probe(sim.port, "--product", GOKIT)
    assert result.returncode == 1 and result.stdout == ""
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("gizdev probe:") and OTHER_KEY in message and GOKIT_KEY in message


def test_probe_of_a_silent_sim_gives_up_within_10_s(start_sim: Any) -> None:
    sim = start_sim("--silent")
    start = time.monotonic()
    result = probe(sim.port, "--product", GOKIT, timeout=20)
    took = time.monotonic() - start
    assert result.returncode == 1 and took < 10
    message = result.stderr.strip().splitlines()[-1]
    assert f"no answer from {sim.port}" in message and "after 10 attempts" in message
    # The sim's own counters show that the module did ask (10 requests, 3 transmissions each).
    assert sim.command("stats")["link"]["frames_in"] == 30


def test_probe_of_a_port_that_cannot_be_opened(tmp_path: Path) -> None:
    missing = probe(str(tmp_path / "ttyNOPE"), "--product", GOKIT)
    assert missing.returncode == 1 and "ttyNOPE" in missing.stderr and "cannot open" in missing.stderr
    assert "Traceback" not in missing.stderr
    with socket.socket() as unused:  # a port nobody listens on: bound, never listening
        unused.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{unused.getsockname()[1]}"
        refused = probe(url, "--product", GOKIT)
    assert refused.returncode == 1 and "cannot connect" in refused.stderr and "Traceback" not in refused.stderr
    bad_url = probe("tcp://127.0.0.1:1", "--product", GOKIT)
    assert bad_url.returncode == 1 and "unknown URL scheme" in bad_url.stderr


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
                result = await probe_coro(pair.slave_path, board.product)
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
