"""Uplinks are parts: a recording fake of our own :class:`Uplink` interface, next to the LAN server or alone, gets
what the MCU sends and commands the MCU, with a virtual GoKit on a pty and no change to :class:`Bridge`."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gizdev.bridge.config import BridgeConfig, LanConfig
from gizdev.bridge.factory import build_bridge
from gizdev.bridge.gateway import Bridge
from gizdev.bridge.identity import IDENTITY_FILE, IdentityStore
from gizdev.bridge.interface import Mcu, UplinkStatus
from gizdev.bridge.lan import LanSettings
from gizdev.bridge.lan_uplink import LanUplink
from gizdev.codec.commands import Command, DeviceInfo
from gizdev.codec.frame import parse_frame
from gizdev.codec.p0 import P0Message, load_product
from gizdev.codec.values import Value
from gizdev.errors import PayloadError
from gizdev.link import ModuleSession
from gizdev.link.connection import ModuleConnection
from gizdev.link.module import ModuleEvent
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import PtyPair, open_pty_pair
from tests.board.sniff.helpers import tap_sent
from tests.bridge.bridge_fixtures import GOKIT_PATH, GOKIT_PK, HEARTBEAT_S, eventually
from tests.bridge.lanclient import PASSCODE_REQUEST, RawClient
from tests.link.helpers import record_requests, run


@dataclass
class RecordingUplink:
    """An Uplink that keeps what the bridge told it; ``mcu`` is what it was handed to send commands with."""

    reported: UplinkStatus = field(default_factory=UplinkStatus)
    mcu: Mcu | None = None
    calls: list[str] = field(default_factory=list)  # start, online, offline, event:<kind>, close
    reports: list[tuple[bytes, dict[str, Value]]] = field(default_factory=list)
    infos: list[DeviceInfo | None] = field(default_factory=list)

    async def start(self, mcu: Mcu) -> None:
        self.calls.append("start")
        self.mcu = mcu

    async def close(self) -> None:
        self.calls.append("close")

    def mcu_report(self, p0: bytes, message: P0Message) -> None:
        self.reports.append((p0, dict(message.attrs)))

    def mcu_online(self, info: DeviceInfo | None) -> None:
        self.calls.append("online")
        self.infos.append(info)

    def mcu_offline(self) -> None:
        self.calls.append("offline")

    def mcu_event(self, event: ModuleEvent) -> None:
        self.calls.append(f"event:{event.kind}")

    def status(self) -> UplinkStatus:
        return self.reported

    def describe(self) -> str:
        return "recorder"

    def commands(self) -> Mcu:
        assert self.mcu is not None, "not started"
        return self.mcu


@dataclass
class Board:
    """A virtual GoKit on a pty, reached by the bridge through a stable name (a symlink, as udev would make)."""

    mcu: VirtualMcu
    pty: PtyPair
    path: Path
    wire: list[bytes] = field(default_factory=list)  # what the MCU put on the wire

    async def plug(self) -> None:
        await self.pty.connect_master(self.mcu.protocol_factory)
        assert self.mcu.session.link is not None
        tap_sent(self.mcu.session.link, self.wire)
        self.path.symlink_to(self.pty.slave_path)

    def unplug(self) -> None:
        self.path.unlink()
        assert self.mcu.session.link is not None
        self.mcu.session.link.close()
        self.pty.close()

    async def replug(self) -> None:
        self.pty = open_pty_pair()
        await self.plug()

    def reports_sent(self) -> list[bytes]:
        """The P0 of every report (0x05 with action 0x04) the MCU sent."""
        frames = [parse_frame(wire) for wire in self.wire]
        return [f.payload for f in frames if f.cmd == Command.P0_UP and f.payload[:1] == b"\x04"]


@contextlib.asynccontextmanager
async def board(tmp_path: Path) -> AsyncIterator[Board]:
    product = load_product(GOKIT_PATH)
    mcu = VirtualMcu(product, values={"LED_R": 0x12, "Motor_Speed": 3})
    rig = Board(mcu, open_pty_pair(), tmp_path / "mcu")
    try:
        await rig.plug()
        mcu.start()
        yield rig
    finally:
        await mcu.close()
        rig.pty.close()
        rig.path.unlink(missing_ok=True)


def test_a_second_uplink_beside_the_lan_server_hears_the_mcu_and_commands_it(tmp_path: Path) -> None:
    fake = RecordingUplink()

    async def scenario() -> None:
        async with board(tmp_path) as b:
            config = BridgeConfig(
                port=str(b.path),
                product=GOKIT_PATH,
                state_dir=tmp_path / "state",
                heartbeat_s=HEARTBEAT_S,
                lan=LanConfig(hosts=("127.0.0.1",), udp_port=0, tcp_port=0, broadcast_rounds=0),
            )
            bridge = build_bridge(
                config,
                lan=LanSettings(hosts=("127.0.0.1",), udp_port=0, tcp_port=0, broadcast_rounds=0),
                port_options={"backoff_max": 0.5},
                extra_uplinks=[fake],
            )
            lan = bridge.find_uplink(LanUplink)
            assert lan is not None and bridge.uplinks == (lan, fake)
            async with bridge:
                await eventually(lambda: "online" in fake.calls, "the fake uplink told the MCU is up")
                assert fake.calls[:2] == ["start", "online"]
                info = fake.infos[0]
                assert info is not None and info.product_key == GOKIT_PK  # the handshake's device info
                app = await RawClient.connect(lan.server.tcp_addresses[0][1])
                app.send(PASSCODE_REQUEST)
                await app.login((await app.recv()).payload[2:].decode())

                # A change on the board: the fake gets the report's bytes as the MCU sent them, and decoded; the LAN
                # app gets the same bytes (every uplink hears every report).
                b.mcu.set_values({"LED_B": 0x56})
                await eventually(lambda: any(attrs.get("LED_B") == 0x56 for _, attrs in fake.reports), "the report")
                p0, attrs = next((p, a) for p, a in fake.reports if a.get("LED_B") == 0x56)
                assert p0 in b.reports_sent()
                assert attrs["LED_R"] == 0x12 and attrs["Motor_Speed"] == 3 and attrs["LED_B"] == 0x56
                relayed = await app.recv()
                assert (relayed.cmd, relayed.payload) == (0x0091, p0)
                await app.close()

                # Commands from the fake reach the MCU: attrs, a P0 write, a read.
                mcu = fake.commands()
                await mcu.write({"LED_G": 200, "Motor_Speed": -2})
                assert (b.mcu.state["LED_G"], b.mcu.state["Motor_Speed"]) == (200, -2)
                assert await mcu.control(bytes.fromhex("01010100000000")) is None  # LED_OnOff on, as an app writes
                assert b.mcu.state["LED_OnOff"] is True
                reply = await mcu.control(b"\x02")
                assert reply is not None and reply[:1] == b"\x03"
                assert bridge.product.decode(reply).attrs == dict(b.mcu.state)
                assert dict(mcu.status)["LED_G"] == 200 and mcu.online

                # What the schema refuses never reaches the UART.
                assert b.mcu.session.link is not None
                requests = record_requests(b.mcu.session.link)
                with pytest.raises(PayloadError, match="read-only"):
                    await mcu.write({"Temperature": 30})
                with pytest.raises(PayloadError):
                    await mcu.control(b"\x04" + bytes(10))  # a report is not an app's to send
                assert requests[Command.P0_DOWN] == 0

                # The WiFi status word follows the uplinks' status: the fake says it has a cloud and an app.
                fake.reported = UplinkStatus(cloud=True, router=True, apps=1)
                mcu.uplink_changed()

                def word_is_up() -> bool:
                    status = b.mcu.wifi_status
                    return status is not None and status.cloud_connected and status.app_connected

                await eventually(word_is_up, "the cloud and app bits from the fake uplink")

                # The MCU goes away and comes back: offline, then online with the device info again.
                b.unplug()
                await eventually(lambda: "offline" in fake.calls, "offline")
                await b.replug()
                await eventually(lambda: fake.calls.count("online") == 2, "online again")
                assert fake.infos[-1] is not None and fake.infos[-1].product_key == GOKIT_PK

                # The MCU's requests to the module pass through the bridge to the uplinks, after its own part: a
                # reset renews the identity (a new passcode, which the LAN server answers with at once).
                before = bridge.identity
                await b.mcu.session.binding_mode()
                await b.mcu.session.reset_module()
                await eventually(lambda: "event:module_reset" in fake.calls, "the module reset passed on")
                assert fake.calls.index("event:binding_mode") < fake.calls.index("event:module_reset")
                assert bridge.identity.passcode != before.passcode and bridge.identity.mac == before.mac
                assert lan.lan_identity().passcode == bridge.identity.passcode
            assert fake.calls[-1] == "close"

    run(scenario(), 60)


def test_a_bridge_with_only_a_fake_uplink_runs_without_cloud_or_lan(tmp_path: Path) -> None:
    fake = RecordingUplink()

    async def scenario() -> None:
        async with board(tmp_path) as b:
            session = ModuleSession(b.mcu.product, heartbeat_interval=HEARTBEAT_S, name="mcu")
            identities = IdentityStore.open(tmp_path / "state")
            async with Bridge(ModuleConnection(session, str(b.path)), [fake], identities) as bridge:
                await eventually(lambda: "online" in fake.calls, "online")
                assert (tmp_path / "state" / IDENTITY_FILE).exists()  # the identity is kept even with no cloud
                await fake.commands().write({"LED_R": 7})
                await eventually(lambda: any(a.get("LED_R") == 7 for _, a in fake.reports), "the write's report")
                assert [p for p, _ in fake.reports if p in b.reports_sent()] == [p for p, _ in fake.reports]
                assert bridge.reports_relayed == len(fake.reports)
                # No uplink has a network: station only, neither router nor cloud.
                await eventually(lambda: b.mcu.wifi_status is not None, "a WiFi status push")
                assert b.mcu.wifi_status is not None
                assert b.mcu.wifi_status.station and not b.mcu.wifi_status.router_connected
                assert not b.mcu.wifi_status.cloud_connected and not b.mcu.wifi_status.app_connected
            assert collections.Counter(fake.calls)["close"] == 1

    run(scenario(), 60)
