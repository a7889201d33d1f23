"""The bridge end to end with real parts: local cloud (SQLite, managed Mosquitto) <-> Bridge <-> VirtualMcu on a pty.

Expected bytes come from the spec (cloud-protocol §1.6/§1.7, gagent-wire-observations §3.4 and §4) and from the
GoKit schema's layout worked out by hand below, never from the bridge's own output.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gizdev.bridge.factory import build_bridge
from gizdev.bridge.identity import IDENTITY_FILE
from gizdev.bridge.uplink import UplinkSettings, module_soft_version
from gizdev.codec.p0 import load_product
from gizdev.sim.mcu import VirtualMcu, default_device_info
from gizdev.transport import open_pty_pair
from tests.bridge.bridge_fixtures import (
    GOKIT_PK,
    GOKIT_SCHEMA,
    GOKIT_SECRET,
    KEEPALIVE_S,
    CloudPlace,
    bridge_config,
    bridge_rig,
    eventually,
    start_cloud,
)
from tests.bridge.lanclient import DISCOVER, PASSCODE_REQUEST, RawClient, UdpPeer
from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.server_fixtures import CloudThread
from tests.conftest import REPO_ROOT, product_path
from tests.link.helpers import run

# The GoKit board in a known state, and its 10-byte status laid out by hand from protocols/gokit.json:
# byte 0 bits: LED_OnOff (bit 0) = 1, LED_Color (bits 1-2) = Pink = 3 -> 0b111 = 07; LED_R 0x12, LED_G 0x34,
# LED_B 0x56; Motor_Speed 3 -> raw 3 - (-5) = 8; byte 5 bit 0 Infrared = 1; Temperature 20 -> raw 20 - (-13) = 33
# = 0x21; Humidity 55 = 0x37; byte 8 alerts 0; byte 9 faults 0.
BOARD = {
    "LED_OnOff": True,
    "LED_Color": "Pink",
    "LED_R": 0x12,
    "LED_G": 0x34,
    "LED_B": 0x56,
    "Motor_Speed": 3,
    "Infrared": True,
    "Temperature": 20,
    "Humidity": 55,
}
BOARD_STATUS = bytes.fromhex("07123456080121370000")
CLIENT_ID = "usrTestClient0123456789"  # 23 characters, as an app's client id (cloud-protocol §1.5)


def envelope(cmd: int, payload: bytes = b"", sn: int | None = None) -> bytes:
    """§1.6 built by hand: 00 00 00 03 | len (one byte here) | flag 00 | cmd | [sn] | payload."""
    body = b"\x00" + cmd.to_bytes(2, "big") + (b"" if sn is None else sn.to_bytes(4, "big")) + payload
    assert len(body) < 128
    return bytes.fromhex("00000003") + bytes([len(body)]) + body


@pytest.fixture(name="cloud")
def cloud_fixture(cloud_place: CloudPlace) -> Iterator[CloudThread]:
    cloud = start_cloud(cloud_place)
    try:
        yield cloud
    finally:
        cloud.close()


def test_controls_reports_and_wifi_status_through_the_cloud(cloud: CloudThread, tmp_path: Path) -> None:
    appid = cloud.add_app()

    async def scenario() -> None:
        async with bridge_rig(cloud, tmp_path / "state", mcu_kwargs={"values": BOARD}) as rig:
            await rig.up()
            token = await asyncio.to_thread(rig.user_token, appid)

            # Open API control -> 0x0090 on MQTT -> serial write -> the MCU's state.
            attrs = {"LED_R": 200, "Motor_Speed": -2}
            reply = await rig.api("POST", f"/app/control/{rig.did}", {"attrs": attrs}, appid=appid, token=token)
            assert reply.status == 200, reply
            await eventually(lambda: rig.mcu.state["LED_R"] == 200, "the write on the MCU")
            assert rig.mcu.state["Motor_Speed"] == -2
            assert rig.mcu.state["LED_G"] == 0x34  # not flagged: untouched

            # An MCU change (its sensors) -> report -> 0x0091 on dev2app -> /app/devdata/<did>/latest.
            rig.mcu.set_values({"Humidity": 77, "Alert_1": True})

            def latest() -> Any:
                return rig.cloud.api("GET", f"/app/devdata/{rig.did}/latest", appid=appid, token=token)

            await eventually(lambda: latest().body["attr"].get("Humidity") == 77, "the report on the cloud")
            stored = latest().body["attr"]
            assert stored["Alert_1"] is True and stored["LED_R"] == 200 and stored["Motor_Speed"] == -2
            assert stored["Temperature"] == 20 and stored["LED_Color"] == "Pink"

            # The WiFi status word the MCU holds (serial protocol §2.4): bit 1 station, bit 4 router, bit 5 cloud.
            await eventually(lambda: rig.mcu.wifi_status is not None, "a WiFi status push")
            assert rig.mcu.wifi_status is not None
            word = rig.mcu.wifi_status.word
            assert word & (1 << 1) and word & (1 << 4) and word & (1 << 5), f"{word:#06x}"

    run(scenario(), 60)


def test_0093_from_the_cloud_gets_0094_with_its_sn(cloud: CloudThread, tmp_path: Path) -> None:
    bus = cloud.server.bus
    assert bus is not None
    heard: list[tuple[str, bytes]] = []
    dispatch = bus.dispatch

    async def spy(topic: str, payload: bytes) -> None:
        heard.append((topic, payload))
        await dispatch(topic, payload)

    bus.dispatch = spy  # type: ignore[method-assign]

    async def scenario() -> None:
        async with bridge_rig(cloud, tmp_path / "state", mcu_kwargs={"values": BOARD}) as rig:
            await rig.up()
            to_device = f"app2dev/{rig.did}/{CLIENT_ID}"
            answers = f"dev2app/{rig.did}/{CLIENT_ID}"

            def answered(sn: int) -> list[bytes]:
                return [p for t, p in heard if t == answers and p[8:12] == sn.to_bytes(4, "big")]

            # Write LED_OnOff off: action 01, attr_flags 01 (id 0 only), values: bit byte 00 (off, Customize), then
            # R G B and Motor_Speed raw as fixed-length writes carry every writable value.
            write = bytes.fromhex("0101" + "00" + "123456" + "08")
            await asyncio.to_thread(cloud.call, bus._publish(to_device, envelope(0x0093, write, sn=0x01020304)))
            await eventually(lambda: bool(answered(0x01020304)), "the 0x0094 to the write")
            assert answered(0x01020304) == [bytes.fromhex("000000030700009401020304")]  # §3.4: no P0
            assert rig.mcu.state["LED_OnOff"] is False

            # Read: 0x0094 with the sn, then 03 + the full status (LED_OnOff now 0: bit byte 0b110 = 06).
            await asyncio.to_thread(cloud.call, bus._publish(to_device, envelope(0x0093, b"\x02", sn=7)))
            await eventually(lambda: bool(answered(7)), "the 0x0094 to the read")
            status = bytes.fromhex("06") + BOARD_STATUS[1:]
            assert answered(7) == [bytes.fromhex("000000031200009400000007") + b"\x03" + status]

            # A 0x0090 read is answered with 0x0091 on dev2app/<did> (not client specific).
            before = len(heard)
            await asyncio.to_thread(cloud.call, bus._publish(to_device, envelope(0x0090, b"\x02")))
            expected = (f"dev2app/{rig.did}", bytes.fromhex("000000030e000091") + b"\x03" + status)
            await eventually(lambda: expected in heard[before:], "the 0x0091 read reply")

    run(scenario(), 60)


def test_lan_app_discovers_logs_in_and_controls(cloud: CloudThread, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bridge_rig(cloud, tmp_path / "state", mcu_kwargs={"values": BOARD}) as rig:
            await rig.up()
            lan = rig.lan
            assert lan is not None
            udp = await UdpPeer.open()
            try:
                udp.send(DISCOVER, lan.udp_addresses[0][1])
                reply = await udp.recv()
            finally:
                udp.close()
            # §2.1 / observations §4: 0x0004, then u16 did_len + did, u16 6 + raw mac, u16 fw_len + fw, u16 32 + pk.
            assert reply[:4] == b"\x00\x00\x00\x03" and reply[6:8] == b"\x00\x04"
            body = reply[8:]
            assert body[:2] == b"\x00\x16" and body[2:24].decode() == rig.did
            assert body[24:26] == b"\x00\x06" and body[26:32].hex().upper() == rig.bridge.identity.mac
            fw_len = int.from_bytes(body[32:34], "big")
            pk_at = 34 + fw_len
            assert body[pk_at : pk_at + 2] == b"\x00\x20" and body[pk_at + 2 : pk_at + 34].decode() == GOKIT_PK

            app = await RawClient.connect(lan.tcp_addresses[0][1])
            app.send(PASSCODE_REQUEST)
            got = await app.recv()
            assert (got.cmd, got.payload) == (0x0007, b"\x00\x0a" + rig.bridge.identity.passcode.encode())
            await app.login(rig.bridge.identity.passcode)
            # Motor_Speed 5 (raw 10) by a 0x0093 write: flags bit 5 = 0x20; values as fixed-length writes send them.
            app.send(envelope(0x0093, bytes.fromhex("0120" + "07" + "123456" + "0a"), sn=9))
            first, second = await app.recv(), await app.recv()
            ack = first if first.cmd == 0x0094 else second
            assert (ack.cmd, ack.sn, ack.payload) == (0x0094, 9, b"")
            assert rig.mcu.state["Motor_Speed"] == 5
            await app.close()
            # The cloud hears of the change too (the report went both ways).
            await eventually(lambda: (rig.latest() or {}).get("Motor_Speed") == 5, "the report on the cloud")

    run(scenario(), 60)


def device_count(cloud: CloudThread) -> int:
    return len(cloud.call(cloud.storage.list_devices(include_disabled=True, limit=1000, skip=0)))


def test_identity_is_kept_across_restarts_and_renewed_by_a_module_reset(cloud: CloudThread, tmp_path: Path) -> None:
    """GAgent's way (the plain device API): a reset makes a new passcode, a new DID, and disables the old DID."""
    state = tmp_path / "state"

    async def scenario() -> None:
        async with bridge_rig(cloud, state, encrypted=False) as rig:
            await rig.up()
            first = rig.bridge.identity
        saved = json.loads((state / IDENTITY_FILE).read_text())
        assert saved["did"] == first.did and len(first.did) == 22
        assert saved["passcode"] == first.passcode and len(first.passcode) == 10 and first.passcode.isupper()
        assert saved["mac"] == first.mac and len(first.mac) == 12
        assert int(first.mac[:2], 16) & 0x03 == 0x02  # locally administered, unicast
        assert device_count(cloud) == 1
        device = cloud.call(cloud.storage.get_device(first.did))
        assert (device.mac, device.passcode, device.product_key) == (first.mac, first.passcode, GOKIT_PK)
        assert os.stat(state / IDENTITY_FILE).st_mode & 0o077 == 0  # the passcode is a credential

        async with bridge_rig(cloud, state, encrypted=False) as rig:
            await rig.up()
            assert rig.bridge.identity == first  # same DID, passcode and MAC
            assert device_count(cloud) == 1  # no new registration

            # The MCU asks for a module reset (0x0B): a new passcode, a new registration, online again.
            await rig.mcu.session.reset_module()
            await eventually(lambda: rig.bridge.identity.passcode != first.passcode, "a new passcode")
            await eventually(lambda: rig.bridge.identity.did not in ("", first.did), "a new DID")
            await rig.up()
            renewed = rig.bridge.identity
            assert renewed.mac == first.mac and len(renewed.passcode) == 10
            assert device_count(cloud) == 2
            assert cloud.call(cloud.storage.get_device(renewed.did)).passcode == renewed.passcode
            # The DID given up is disabled on the cloud with its old passcode (GAgent's DELETE /dev/devices).
            await eventually(
                lambda: cloud.call(cloud.storage.get_device(first.did)).is_disabled, "the old DID disabled"
            )
            await eventually(lambda: rig.bridge.identity.old_did == "", "the old DID forgotten")
            saved = json.loads((state / IDENTITY_FILE).read_text())
            assert (saved["did"], saved["old_did"], saved["old_passcode"]) == (renewed.did, "", "")
            assert [p.name for p in state.iterdir()] == [IDENTITY_FILE]  # no temp files left behind

    run(scenario(), 60)


def test_the_cli_registers_serves_and_stops_on_sigterm(cloud: CloudThread, tmp_path: Path) -> None:
    """``gizdev bridge`` as a process, as systemd runs it: up with a config file and options, down on SIGTERM."""
    state = tmp_path / "state"
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'product = "{product_path("gokit")}"\ncloud = "http://127.0.0.1:{cloud.http_port}"\nheartbeat_s = 5\n'
        '[lan]\nudp_port = 0\ntcp_port = 0\nbroadcast_address = "127.0.0.1"\nbroadcast_rounds = 1\n'
    )
    if GOKIT_PK not in {p.product_key for p in cloud.call(cloud.storage.list_products())}:
        cloud.add_product(GOKIT_SCHEMA, secret=GOKIT_SECRET)

    async def scenario() -> None:
        mcu = VirtualMcu(load_product(product_path("gokit")), values=BOARD)
        with open_pty_pair() as pty:
            await pty.connect_master(mcu.protocol_factory)
            mcu.start()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gizdev.cli.main", "bridge", "--config", str(config),
                "--port", pty.slave_path, "--state-dir", str(state),
                stderr=asyncio.subprocess.PIPE, cwd=REPO_ROOT,
            )  # fmt: skip
            try:
                identity = state / IDENTITY_FILE

                def did() -> str:
                    return str(json.loads(identity.read_text())["did"]) if identity.exists() else ""

                await eventually(lambda: bool(did()), "the CLI's registration", 20)

                def online() -> bool:
                    return bool(cloud.call(cloud.storage.get_device(did())).is_online)

                await eventually(online, "the CLI's bridge online on the cloud", 20)
                await eventually(lambda: mcu.wifi_status is not None and mcu.wifi_status.cloud_connected, "cloud bit")
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(15):
                    assert await process.wait() == 0
                assert process.stderr is not None
                err = (await process.stderr.read()).decode()
                assert "stopping" in err and "Traceback" not in err
                await eventually(lambda: not online(), "offline after the bridge stopped")
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await mcu.close()

    run(scenario(), 60)


def test_encrypted_registration_and_provisioning(cloud: CloudThread, tmp_path: Path) -> None:
    """--encrypted: the AES form of §1.3 keyed by the product secret the MCU reports in its device info."""
    secret = "0" * 32  # the virtual GoKit's device info carries this product secret, as the SDK's default does
    cloud.add_product(GOKIT_SCHEMA, secret=secret)
    cloud_url = f"http://127.0.0.1:{cloud.http_port}"

    async def scenario() -> None:
        mcu = VirtualMcu(load_product(product_path("gokit")))
        with open_pty_pair() as pty:
            await pty.connect_master(mcu.protocol_factory)
            mcu.start()
            bridge = build_bridge(
                bridge_config(tmp_path / "state", Path(pty.slave_path), cloud_url, encrypted=True),
                cloud_settings=UplinkSettings(
                    cloud=cloud_url, encrypted=True, keepalive_s=KEEPALIVE_S, backoff_initial_s=0.1, backoff_max_s=1
                ),
            )
            try:
                async with bridge:
                    await eventually(lambda: bool(bridge.identity.did), "registered")
                    did = bridge.identity.did
                    await eventually(lambda: cloud.call(cloud.storage.get_device(did)).is_online, "online")
                    device = cloud.call(cloud.storage.get_device(did))
                    assert device.encrypted and device.passcode == bridge.identity.passcode
                    # The plain device API is now refused for this MAC (9048): the DID stays the sealed one.
                    plain = cloud.form(
                        "POST", "/dev/devices", f"passcode=OTHERPASS&mac={device.mac}&product_key={GOKIT_PK}"
                    )
                    assert plain.body["error_code"] == 9048
            finally:
                await mcu.close()

    run(scenario(), 60)


def test_the_passcode_bound_users_read_cannot_displace_the_bridge(cloud: CloudThread, tmp_path: Path) -> None:
    """By default the bridge registers through the encrypted API and logs in with the MQTT password the cloud sealed
    into the reply (kept in identity.json). The passcode, which every bound user reads in GET /app/bindings, opens
    no MQTT session: the attacker's CONNECT is refused, the bridge's session stays up, no fake report reaches
    /latest. The OTA checks told the cloud the module's and the MCU's versions."""
    appid = cloud.add_app()
    fake_status = bytes.fromhex("07123456080121630000")  # BOARD_STATUS with Humidity 99

    async def scenario() -> None:
        async with bridge_rig(cloud, tmp_path / "state", mcu_kwargs={"values": BOARD}) as rig:
            await rig.up()
            identity = rig.bridge.identity
            assert identity.mqtt_password and identity.mqtt_password != identity.passcode
            saved = json.loads((tmp_path / "state" / IDENTITY_FILE).read_text())
            assert saved["mqtt_password"] == identity.mqtt_password
            device = rig.device()
            assert device.encrypted and device.mqtt_password_hash and identity.mqtt_password not in str(device)
            token = await asyncio.to_thread(rig.user_token, appid)
            listed = await rig.api("GET", "/app/bindings", appid=appid, token=token)
            [item] = listed.body["devices"]
            # The versions GAgent's OTA checks carry: the "module" (gizdev), then the MCU's from its device info
            # (the virtual GoKit's, as the vendor SDK reports them: hardware 03010100, software 03030000).
            assert (item["wifi_soft_version"], item["mcu_hard_version"], item["mcu_soft_version"]) == (
                module_soft_version(),
                "03010100",
                "03030000",
            )
            assert module_soft_version("0.1.0") == "00010000" and module_soft_version("4.2.6") == "04020006"
            assert device.wifi_hard_version == "GIZDEVPY"
            leaked = item["passcode"]
            assert leaked == identity.passcode
            connects = rig.cloud_uplink.connects

            attacker = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
            try:
                assert await attacker.connect(rig.did, rig.did, leaked) == bytes.fromhex("20020005")
                with contextlib.suppress(OSError):
                    await attacker.publish(f"dev2app/{rig.did}", envelope(0x0091, b"\x04" + fake_status))
                with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
                    await attacker.read_packet(timeout_s=2.0)
            finally:
                await attacker.close()

            rig.mcu.set_values({"Humidity": 77})

            def latest() -> Any:
                return rig.cloud.api("GET", f"/app/devdata/{rig.did}/latest", appid=appid, token=token)

            await eventually(lambda: latest().body["attr"].get("Humidity") == 77, "the MCU's report on the cloud")
            assert rig.cloud_uplink.connected and rig.cloud_uplink.connects == connects  # never knocked off
            assert rig.online()
            reply = await rig.api("POST", f"/app/control/{rig.did}", {"attrs": {"LED_R": 9}}, appid=appid, token=token)
            assert reply.status == 200, reply
            await eventually(lambda: rig.mcu.state["LED_R"] == 9, "a control through the same session")

    run(scenario(), 60)


def test_a_module_reset_of_an_encrypted_device_keeps_its_did_and_renews_its_password(
    cloud: CloudThread, tmp_path: Path
) -> None:
    """§1.3: the DID of a device of the encrypted API is fixed; a reset brings a new passcode and, registering
    again, a new MQTT password: the old one (and the old passcode) no longer opens a session."""

    async def scenario() -> None:
        async with bridge_rig(cloud, tmp_path / "state") as rig:
            await rig.up()
            first = rig.bridge.identity
            await rig.mcu.session.reset_module()
            await eventually(lambda: rig.bridge.identity.mqtt_password not in ("", first.mqtt_password), "renewed")
            await rig.up()
            renewed = rig.bridge.identity
            assert (renewed.did, renewed.old_did) == (first.did, "")  # nothing to disable: the DID is the same
            assert renewed.passcode != first.passcode and device_count(cloud) == 1
            assert rig.device().passcode == renewed.passcode
            for password in (first.mqtt_password, first.passcode, renewed.passcode):
                client = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
                try:
                    assert await client.connect(first.did, first.did, password) == bytes.fromhex("20020005")
                finally:
                    await client.close()
            assert rig.cloud_uplink.connected

    run(scenario(), 60)


def test_a_plainly_registered_bridge_moves_to_the_encrypted_api_keeping_its_did(
    cloud: CloudThread, tmp_path: Path
) -> None:
    """An identity from the plain API (or from before the cloud gave passwords) with the encrypted API wanted: the
    bridge registers again through it, keeps its DID (§1.3 rule 5) and from then on has a password of its own."""
    state = tmp_path / "state"

    async def scenario() -> None:
        async with bridge_rig(cloud, state, encrypted=False) as rig:
            await rig.up()
            plain = rig.bridge.identity
            assert plain.mqtt_password == "" and not rig.device().encrypted
        async with bridge_rig(cloud, state) as rig:
            await rig.up()
            moved = rig.bridge.identity
            assert (moved.did, moved.passcode) == (plain.did, plain.passcode) and moved.mqtt_password
            device = rig.device()
            assert device.encrypted and device.mqtt_password_hash
            assert device_count(cloud) == 1
            client = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
            try:  # the passcode, its old MQTT password, opens nothing any more
                assert await client.connect(plain.did, plain.did, plain.passcode) == bytes.fromhex("20020005")
            finally:
                await client.close()

    run(scenario(), 60)


def test_without_a_product_secret_the_bridge_registers_through_the_plain_api(
    cloud: CloudThread, tmp_path: Path
) -> None:
    """An MCU of the 2015 SDK sends no product secret, and none is configured: the encrypted API cannot be used,
    so the bridge registers plainly (with a warning) rather than not at all."""
    info = dataclasses.replace(
        default_device_info(load_product(product_path("gokit"))), device_attributes=None, product_secret=None
    )

    async def scenario() -> None:
        async with bridge_rig(cloud, tmp_path / "state", mcu_kwargs={"device_info": info}) as rig:
            await rig.up()
            assert rig.bridge.identity.mqtt_password == ""
            assert not rig.device().encrypted and rig.device().mqtt_password_hash is None

    run(scenario(), 60)
