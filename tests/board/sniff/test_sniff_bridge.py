"""Acceptance: the sniffer between the real bridge (``gizdev bridge``'s :class:`Bridge`, LAN only) and a virtual
GoKit, on two pty pairs. The trace of each direction lists exactly the frames that side put on the wire."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gizdev.board.sniff import Direction, Relay, TraceDecoder, TraceEvent, TraceTap
from gizdev.bridge.config import BridgeConfig, LanConfig
from gizdev.bridge.factory import build_bridge
from gizdev.codec.frame import parse_frame
from gizdev.codec.p0 import load_product
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_pty_pair
from tests.board.sniff.helpers import tap_sent, until
from tests.board.sniff.scenario import observed
from tests.conftest import product_path
from tests.link.helpers import run


class _Cable(asyncio.Protocol):
    """One end of a null-modem cable between two pty masters: what arrives goes out of the other end."""

    def __init__(self) -> None:
        self.other: _Cable | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)


def test_sniffer_decodes_a_bridge_session_exactly(tmp_path: Path) -> None:
    async def main() -> None:
        product = load_product(product_path("gokit"))
        mcu = VirtualMcu(product)
        events: list[TraceEvent] = []
        tap = TraceTap(TraceDecoder(product), events.append)
        # MCU (pty A master) - sniffer (A slave | B slave) - cable (B master = C master) - bridge (C slave): the
        # bridge opens a serial device path, as on a gateway, and so does each side of the sniffer.
        mcu_pty, relay_pty, bridge_pty = open_pty_pair(), open_pty_pair(), open_pty_pair()
        relay = Relay(tap)
        mcu_wire: list[bytes] = []
        bridge_wire: list[bytes] = []
        config = BridgeConfig(
            port=bridge_pty.slave_path,
            product=product_path("gokit"),
            state_dir=tmp_path / "state",
            lan=LanConfig(hosts=("127.0.0.1",), udp_port=0, tcp_port=0, broadcast_rounds=0),
        )
        bridge = build_bridge(config, product=product)
        left, right = _Cable(), _Cable()
        left.other, right.other = right, left
        factory = bridge.session.protocol_factory

        def tapped() -> Any:
            link = factory()
            tap_sent(link, bridge_wire)
            return link

        bridge.session.protocol_factory = tapped  # type: ignore[method-assign]
        try:
            await mcu_pty.connect_master(mcu.protocol_factory)
            assert mcu.session.link is not None
            tap_sent(mcu.session.link, mcu_wire)
            await relay_pty.connect_master(lambda: left)
            await bridge_pty.connect_master(lambda: right)
            await relay.open(mcu_pty.slave_path, relay_pty.slave_path)
            mcu.start()
            await bridge.start()
            await until(bridge.connection.ready.is_set, what="the handshake through the sniffer")
            await bridge.mcu.control(bytes.fromhex("01010100000000"))  # an app's write: LED on
            mcu.set_values({"Temperature": 20})
            await until(lambda: bridge.status.get("Temperature") == 20, what="the report relayed")
            await until(
                lambda: (
                    len(observed(events, Direction.MCU_TO_MODULE)) >= len(mcu_wire)
                    and len(observed(events, Direction.MODULE_TO_MCU)) >= len(bridge_wire)
                ),
                what="the sniffer's trace",
            )
        finally:
            await bridge.close()
            await relay.close()
            await mcu.close()
            for end in (left, right):
                if end.transport is not None:
                    end.transport.close()
            for pty in (mcu_pty, relay_pty, bridge_pty):
                pty.close()
        assert mcu.state["LED_OnOff"] is True
        expected = {
            Direction.MCU_TO_MODULE: [("frame", parse_frame(w)) for w in mcu_wire],
            Direction.MODULE_TO_MCU: [("frame", parse_frame(w)) for w in bridge_wire],
        }
        for direction, frames in expected.items():
            assert observed(events, direction)[: len(frames)] == frames, direction
        cmds = {e.frame.cmd for e in events if e.frame is not None}
        assert {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0D, 0x0E} <= cmds  # handshake, write, report, WiFi status
        reports = [e.fields["attrs"] for e in events if e.fields and e.fields.get("action_name") == "report"]
        assert any(r.get("Temperature") == 20 and r.get("LED_OnOff") is True for r in reports)

    run(main(), timeout=30)
