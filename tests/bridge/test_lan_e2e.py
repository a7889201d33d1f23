"""An app on the LAN against the bridge's LAN server, a real ModuleSession and a virtual MCU behind a pty pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from gizdev.bridge.lan import LanIdentity, LanServer, LanSettings
from gizdev.bridge.lan_device import BindingWindow, ModuleSessionLanDevice, forward_reports
from gizdev.codec.lan import parse_discovery
from gizdev.codec.p0 import Action
from tests.bridge.lanclient import DISCOVER, PASSCODE_REQUEST, RawClient, UdpPeer
from tests.conftest import load_vectors
from tests.link.helpers import TransportPair, pty_pair, run

PASSCODE = "HKIPANQEYX"
CONFIGURED = LanIdentity(
    did="RefPeerDid0123456789ab",
    mac=bytes.fromhex("aabbccddeeff"),
    product_key="",  # comes from the MCU's handshake
    passcode=PASSCODE,
    wifi_hardware_version="GIZDEV01",
    wifi_software_version="04020006",
)
VECTOR = next(v for v in load_vectors("gokit") if v["id"] == "read_reply-0007")
# The read reply P0 inside the vector's serial frame: FF FF | len (2) | cmd | sn | flags (2) | P0 | checksum
VECTOR_P0 = bytes.fromhex(VECTOR["frame_unescaped_hex"])[8:-1]
WRITE_LED_ON = bytes.fromhex("01010100000000")  # gagent-wire-observations §3.4: the observed app write


@dataclass
class Bridge:
    pair: TransportPair
    device: ModuleSessionLanDevice
    server: LanServer

    @property
    def port(self) -> int:
        return self.server.tcp_addresses[0][1]

    async def app(self) -> RawClient:
        client = await RawClient.connect(self.port)
        client.send(PASSCODE_REQUEST)
        reply = await client.recv()
        assert (reply.cmd, reply.payload) == (0x0007, b"\x00\x0a" + PASSCODE.encode())
        await client.login(reply.payload[2:].decode())
        return client


@contextlib.asynccontextmanager
async def bridge(**settings: Any) -> AsyncIterator[Bridge]:
    pair = await pty_pair("gokit", mcu_kwargs={"values": VECTOR["values"]})
    try:
        await pair.module.handshake()
        device = ModuleSessionLanDevice(pair.module, CONFIGURED, BindingWindow(0))
        settings = {"hosts": ("127.0.0.1",), "udp_port": 0, "tcp_port": 0, "broadcast_rounds": 0, **settings}
        async with LanServer(device, LanSettings(**settings)) as server:
            forward = asyncio.create_task(forward_reports(pair.module, server.push_report))
            try:
                yield Bridge(pair, device, server)
            finally:
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forward
    finally:
        await pair.close()


def envelope(cmd: int, payload: bytes = b"", sn: int | None = None) -> bytes:
    body = b"\x00" + cmd.to_bytes(2, "big") + (sn.to_bytes(4, "big") if sn is not None else b"") + payload
    return bytes.fromhex("00000003") + bytes([len(body)]) + body


def test_discover_login_read_control_and_reports() -> None:
    async def main() -> None:
        async with bridge() as b:
            udp = await UdpPeer.open()
            try:
                udp.send(DISCOVER, b.server.udp_addresses[0][1])
                reply = await udp.recv()
            finally:
                udp.close()
            assert reply[6:8] == b"\x00\x04"
            found = parse_discovery(reply[8:])
            assert found.did == CONFIGURED.did
            assert found.mac == CONFIGURED.mac
            assert found.product_key == b.pair.product.product_key
            assert found.mcu_attributes == bytes(7) + b"\x02"  # what the virtual MCU's handshake announced

            app, other = await b.app(), await b.app()
            # Read: the MCU's status comes back as 0x0091 to both logged-in apps, byte for byte the vector's P0.
            app.send(envelope(0x0090, b"\x02"))
            for client in (app, other):
                await client.expect(envelope(0x0091, VECTOR_P0))

            # Control: 0x0094 with the sn and no P0 to the requester (as GAgent sent it, §3.4), and the MCU's report
            # of the change to every logged-in app. The ACK and the report race through the link, in either order.
            assert b.pair.mcu.state["LED_OnOff"] is False
            app.send(envelope(0x0093, WRITE_LED_ON, sn=1))
            first, second = await app.recv(), await app.recv()
            ack, report = (first, second) if first.cmd == 0x0094 else (second, first)
            assert (ack.cmd, ack.sn, ack.payload) == (0x0094, 1, b"")
            assert b.pair.mcu.state["LED_OnOff"] is True
            for got in (report, await other.recv()):
                assert got.cmd == 0x0091
                message = b.pair.product.decode(got.payload)
                assert message.action is Action.REPORT
                assert message.attrs["LED_OnOff"] is True
                assert message.attrs["LED_R"] == VECTOR["values"]["LED_R"]
            await other.still_served()  # and nothing else reached the other app
            await app.close()
            await other.close()

    run(main())


def test_read_with_sn_answers_only_the_requester() -> None:
    async def main() -> None:
        async with bridge() as b:
            app, other = await b.app(), await b.app()
            app.send(envelope(0x0093, b"\x02", sn=7))
            await app.expect(bytes.fromhex("000000031200009400000007") + VECTOR_P0)
            await other.still_served()
            await app.close()
            await other.close()

    run(main())


@pytest.mark.parametrize(
    "p0",
    [
        bytes.fromhex("01ff"),  # write cut short
        bytes.fromhex("03") + bytes(10),  # a read reply is the MCU's to send
        bytes.fromhex("99"),  # unknown action
        bytes.fromhex("0101010000000000"),  # write one byte too long
    ],
)
def test_p0_the_schema_refuses_never_reaches_the_mcu(p0: bytes) -> None:
    async def main() -> None:
        async with bridge() as b:
            app = await b.app()
            app.send(envelope(0x0093, p0, sn=2))
            await app.still_served()
            async with asyncio.timeout(10):
                while b.server.stats.control_failures < 1:
                    await asyncio.sleep(0.01)
            assert b.pair.mcu.writes_applied == 0
            assert b.pair.mcu.state["LED_OnOff"] is False
            await app.close()

    run(main())


def test_silent_mcu_gets_no_answer_then_recovers() -> None:
    async def main() -> None:
        async with bridge() as b:
            app = await b.app()
            b.pair.mcu.inject(silent=True)
            app.send(envelope(0x0093, b"\x02", sn=3))
            # The link resends and gives up (AckTimeout); meanwhile the app's heartbeats are answered.
            async with asyncio.timeout(10):
                while b.server.stats.control_failures < 1:
                    await app.still_served()
                    await asyncio.sleep(0.05)
            b.pair.mcu.inject(silent=False)
            app.send(envelope(0x0093, b"\x02", sn=4))
            # Nothing for sn 3 ever arrives: the next frame is the answer to sn 4.
            await app.expect(bytes.fromhex("000000031200009400000004") + VECTOR_P0)
            await app.close()

    run(main())


def test_mcu_link_gone_gets_no_answer() -> None:
    async def main() -> None:
        async with bridge() as b:
            app = await b.app()
            b.pair.module_link.close()
            await asyncio.wait_for(b.pair.module_link.wait_closed(), 5)
            app.send(envelope(0x0093, WRITE_LED_ON, sn=5))
            app.send(envelope(0x0090, b"\x02"))
            async with asyncio.timeout(10):
                while b.server.stats.control_failures < 2:
                    await asyncio.sleep(0.01)
            await app.still_served()
            await app.close()

    run(main())


def test_binding_window_closes_and_the_mcu_reopens_it() -> None:
    from gizdev.link.module import ModuleEvent

    now = [100.0]
    window = BindingWindow(30, clock=lambda: now[0])
    assert window.is_open()
    now[0] += 29.9
    assert window.is_open()
    now[0] += 0.2
    assert not window.is_open()

    async def main() -> None:
        async with bridge() as b:
            b.device.binding = window
            client = await RawClient.connect(b.port)
            client.send(PASSCODE_REQUEST)
            assert (await client.hung_up()).hex() == "00000003050000070000"
            await client.close()
            b.device.handle_event(ModuleEvent("binding_mode"))  # the MCU's 0x15
            await (await b.app()).close()

    run(main())
