"""The app realtime WebSocket API (/ws/app/v1, cloud protocol §4) against the running cloud and a GAgent-like device
on the real broker: the frames each command puts on the device's topic, byte for byte (§1.5/§1.6, built by hand
here), and what the device's frames become for the app."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gizdev.cloud.security import token_digest
from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.realtime_helpers import Ws, connected_device, new_user, register, ws_client
from tests.cloud.server_fixtures import CloudThread
from tests.guards import run

MAC = "AABBCCDDEEFF"
PASSCODE = "HKIPANQEYX"
OTHER_MAC = "001122334455"
OTHER_PASSCODE = "OTHERPASSX"


def envelope(cmd: int, payload: bytes = b"", sn: int | None = None) -> bytes:
    """§1.6 by hand: 00 00 00 03 | len (one byte here) | flag 00 | cmd | [sn] | payload."""
    body = b"\x00" + cmd.to_bytes(2, "big") + (b"" if sn is None else sn.to_bytes(4, "big")) + payload
    assert len(body) < 128
    return bytes.fromhex("00000003") + bytes([len(body)]) + body


async def next_command(device: RawMqtt31, did: str, timeout_s: float = 5.0) -> tuple[str, bytes]:
    """The next frame to the device on app2dev/<did>/<clientid>: (clientid, frame)."""
    topic, payload = await device.read_publish(timeout_s)
    prefix = f"app2dev/{did}/"
    assert topic.startswith(prefix), topic
    return topic[len(prefix) :], payload


def setup(cloud: CloudThread) -> tuple[str, str, str, str]:
    """An app, the seed product, a device bound to a user: (appid, did, uid, token)."""
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud, MAC, PASSCODE)
    uid, token = new_user(cloud, appid, "alice", (did, PASSCODE))
    return appid, did, uid, token


async def online(ws: Ws, did: str, state: bool, mac: str = MAC) -> None:
    body = await ws.expect("s2c_online_status")
    assert body["data"] == {"did": did, "mac": mac.lower(), "online": state}  # no passcode: see the hub


def test_reads_writes_and_raw_frames_reach_the_device_exactly(cloud: CloudThread) -> None:
    appid, did, uid, token = setup(cloud)

    async def scenario() -> None:
        device = await connected_device(cloud, did, PASSCODE)
        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token, auto=False)
            await ws.send("subscribe_req", [{"did": did}])
            reply = await ws.expect("subscribe_res")
            assert reply["data"] == {"success": [{"did": did, "error_code": 0, "msg": "ok"}], "failed": []}
            await online(ws, did, True)

            # c2s_read without req_sn: 0x0090 with P0 02 (read the status).
            await ws.send("c2s_read", {"did": did})
            client_id, frame = await next_command(device, did)
            assert frame == bytes.fromhex("000000030400009002")
            assert client_id.startswith("ws") and len(client_id) <= 23  # GAgent's PHONECLIENTID limit

            # With req_sn: 0x0093 carrying it; the device's 0x0094 (same sn, P0 03 = read reply temp 21 humi 55)
            # on dev2app/<did>/<clientid> becomes s2c_ack and s2c_noti with res_sn.
            await ws.send("c2s_read", {"did": did}, req_sn=0x01020304)
            same_client, frame = await next_command(device, did)
            assert same_client == client_id
            assert frame == bytes.fromhex("00000003080000930102030402")
            await device.publish(f"dev2app/{did}/{client_id}", bytes.fromhex("000000030a00009401020304031537"))
            assert await ws.expect("s2c_ack") == {"cmd": "s2c_ack", "res_sn": 0x01020304, "did": did}
            noti = await ws.expect("s2c_noti")
            status = {"did": did, "attrs": {"temp": 21, "humi": 55}}
            assert noti == {"cmd": "s2c_noti", "res_sn": 0x01020304, "data": status}

            # c2s_write: P0 01 | attr_flags 01 (temp, writable id 0) | temp 10, humi 0 (fixed-length writes carry
            # every writable value); with req_sn 9 the same P0 in a 0x0093.
            await ws.send("c2s_write", {"did": did, "attrs": {"temp": 10}})
            assert (await next_command(device, did))[1] == bytes.fromhex("00000003070000900101" + "0a00")
            await ws.send("c2s_write", {"did": did, "attrs": {"humi": 99}}, req_sn=9)
            assert (await next_command(device, did))[1] == bytes.fromhex("000000030b00009300000009" + "0102" + "0063")
            await device.publish(f"dev2app/{did}/{client_id}", bytes.fromhex("000000030700009400000009"))
            assert await ws.expect("s2c_ack") == {"cmd": "s2c_ack", "res_sn": 9, "did": did}

            # c2s_raw: the whole frame goes as it is; only 0x0090/0x0093/0x0094, and only whole frames.
            await ws.send("c2s_raw", {"did": did, "raw": [0, 0, 0, 3, 4, 0, 0, 0x90, 0x05]})
            assert (await next_command(device, did))[1] == bytes.fromhex("000000030400009005")
            await ws.send("c2s_raw", {"did": did, "raw": list(envelope(0x0091, b"\x04\x01\x02"))})
            assert await ws.invalid() == 9015
            await ws.send("c2s_raw", {"did": did, "raw": [0, 0, 0, 3, 9, 0, 0, 0x90]})  # len says 9, 3 follow
            assert await ws.invalid() == 9015
            await ws.send("c2s_raw", {"did": did, "raw": [0, 0, 0, 3, 3, 0, 0, 0x90, 300]})
            assert await ws.invalid() == 9015

            # A report (0x0091 on dev2app/<did>) becomes s2c_noti, and is the latest data /app/devdata serves.
            await device.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091041537"))
            noti = await ws.expect("s2c_noti")
            assert noti == {"cmd": "s2c_noti", "data": {"did": did, "attrs": {"temp": 21, "humi": 55}}}
            latest = await asyncio.to_thread(cloud.api, "GET", f"/app/devdata/{did}/latest", appid=appid, token=token)
            assert latest.body["attr"] == {"temp": 21, "humi": 55}

            # A device-initiated 0x0093 report: s2c_noti with req_sn; the app's c2s_ack becomes 0x0094 with that
            # sn on the app's client id (the cloud's own ack to the device goes first, on its client id).
            await device.publish(f"dev2app/{did}", envelope(0x0093, b"\x04\x01\x02", sn=0x77))
            noti = await ws.expect("s2c_noti")
            assert noti == {"cmd": "s2c_noti", "req_sn": 0x77, "data": {"did": did, "attrs": {"temp": 1, "humi": 2}}}
            cloud_ack = await next_command(device, did)
            assert cloud_ack == ("gizdevcloud", bytes.fromhex("000000030700009400000077"))
            await ws.send("c2s_ack", res_sn=0x77, did=did)
            assert await next_command(device, did) == (client_id, bytes.fromhex("000000030700009400000077"))

            # Pass-through data from the MCU (P0 06 ...) is not a status: s2c_raw with the whole frame.
            frame = envelope(0x0091, b"\x06\xde\xad")
            await device.publish(f"dev2app/{did}", frame)
            assert await ws.expect("s2c_raw") == {"cmd": "s2c_raw", "data": {"did": did, "raw": list(frame)}}

            # A 0x0094 answering some other client is not this client's ack.
            await device.publish(f"dev2app/{did}/usrSomebodyElse", bytes.fromhex("000000030700009400000009"))
            await ws.send("ping")
            assert await ws.expect("pong") == {"cmd": "pong"}

            # The device goes away: s2c_online_status.
            await device.send(b"\xe0\x00")  # DISCONNECT
            await online(ws, did, False)
            await device.close()
            await ws.send("c2s_write", {"did": did, "attrs": {"temp": 10}})
            assert await ws.invalid() == 9042  # offline, as /app/control says

    run(scenario(), 60)


def test_custom_p0_type_gets_raw_frames_and_no_data_point_commands(cloud: CloudThread) -> None:
    appid, did, uid, token = setup(cloud)

    async def scenario() -> None:
        device = await connected_device(cloud, did, PASSCODE)
        async with ws_client(cloud) as custom, ws_client(cloud) as attrs:
            await custom.login(appid, uid, token, p0_type="custom")
            await online(custom, did, True)  # auto_subscribe (the default) subscribed the bound device
            await attrs.login(appid, uid, token)
            await online(attrs, did, True)
            report = bytes.fromhex("0000000306000091041537")
            await device.publish(f"dev2app/{did}", report)
            assert await custom.expect("s2c_raw") == {"cmd": "s2c_raw", "data": {"did": did, "raw": list(report)}}
            assert (await attrs.expect("s2c_noti"))["data"]["attrs"] == {"temp": 21, "humi": 55}

            for cmd, data in (("c2s_write", {"did": did, "attrs": {"temp": 1}}), ("c2s_read", {"did": did})):
                await custom.send(cmd, data)
                assert await custom.invalid() == 9015
            await custom.send("c2s_raw", {"did": did, "raw": list(envelope(0x0093, b"\x02", sn=5))})
            client_id, frame = await next_command(device, did)
            assert frame == envelope(0x0093, b"\x02", sn=5)
            # The device's 0x0094 goes to the custom client only, as s2c_raw; the other client hears nothing.
            answer = envelope(0x0094, b"\x03\x15\x37", sn=5)
            await device.publish(f"dev2app/{did}/{client_id}", answer)
            assert await custom.expect("s2c_raw") == {"cmd": "s2c_raw", "data": {"did": did, "raw": list(answer)}}
            # ... except that a status in it is news for every attrs_v4 subscriber (without an sn of theirs).
            noti = await attrs.expect("s2c_noti")
            assert noti == {"cmd": "s2c_noti", "data": {"did": did, "attrs": {"temp": 21, "humi": 55}}}
        await device.close()

    run(scenario(), 60)


def test_only_bound_devices_and_binding_changes_are_pushed(cloud: CloudThread) -> None:
    appid, did, uid, token = setup(cloud)
    other = register(cloud, OTHER_MAC, OTHER_PASSCODE)
    bob_uid, bob_token = new_user(cloud, appid, "bob", (other, OTHER_PASSCODE))

    async def scenario() -> None:
        device = await connected_device(cloud, did, PASSCODE)
        peer = await connected_device(cloud, other, OTHER_PASSCODE)
        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token, auto=False)
            await ws.send("subscribe_req", [{"did": other}, {"did": "nosuchdevice0000000000"}, {"did": did}])
            reply = await ws.expect("subscribe_res")
            assert reply["data"]["success"] == [{"did": did, "error_code": 0, "msg": "ok"}]
            failed = {entry["did"]: entry["error_code"] for entry in reply["data"]["failed"]}
            assert failed == {other: 9017, "nosuchdevice0000000000": 9014}
            await online(ws, did, True)

            # Bob's device: no reports, no presence, no control.
            await peer.publish(f"dev2app/{other}", bytes.fromhex("0000000306000091040102"))
            for cmd, data in (
                ("c2s_write", {"did": other, "attrs": {"temp": 1}}),
                ("c2s_read", {"did": other}),
                ("c2s_raw", {"did": other, "raw": [0, 0, 0, 3, 4, 0, 0, 0x90, 2]}),
            ):
                await ws.send(cmd, data)
                assert await ws.invalid() == 9017
            await ws.send("c2s_ack", res_sn=1, did=other)
            assert await ws.invalid() == 9017
            await peer.send(b"\xe0\x00")  # Bob's device goes offline: not this client's news either
            await ws.nothing(0.5)
            await peer.close()

            # Unbinding over HTTP: s2c_binding_changed, then nothing more of that device.
            gone = await asyncio.to_thread(
                cloud.api, "DELETE", "/app/bindings", {"devices": [{"did": did}]}, appid=appid, token=token
            )
            assert gone.status == 200 and gone.body == {"success": [did], "failed": []}
            assert (await ws.expect("s2c_binding_changed"))["data"] == {"did": did, "bind": False}
            await device.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091041537"))
            await ws.nothing(0.5)
            await ws.send("c2s_write", {"did": did, "attrs": {"temp": 1}})
            assert await ws.invalid() == 9017

            # Bound again: told; this client logged in without auto_subscribe, so it subscribes itself.
            devices = [{"did": did, "passcode": PASSCODE}]
            again = await asyncio.to_thread(
                cloud.api, "POST", "/app/bindings", {"devices": devices}, appid=appid, token=token
            )
            assert again.status == 200
            assert (await ws.expect("s2c_binding_changed"))["data"] == {"did": did, "bind": True}

        # With auto_subscribe, a device bound during the session is subscribed at once.
        async with ws_client(cloud) as ws:
            await ws.login(appid, bob_uid, bob_token)  # Bob's device is offline now
            await online(ws, other, False, OTHER_MAC)
            devices = [{"did": did, "passcode": PASSCODE}]
            bound = await asyncio.to_thread(
                cloud.api, "POST", "/app/bindings", {"devices": devices}, appid=appid, token=bob_token
            )
            assert bound.body["success"] == [did]
            assert (await ws.expect("s2c_binding_changed"))["data"] == {"did": did, "bind": True}

            async def reported() -> dict[str, object]:
                await device.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091040909"))
                return await ws.expect("s2c_noti", 0.5)

            for _attempt in range(20):  # the subscription follows the binding by one database lookup
                try:
                    noti = await reported()
                    break
                except TimeoutError:
                    continue
            assert noti["data"] == {"did": did, "attrs": {"temp": 9, "humi": 9}}
        await device.close()

    run(scenario(), 60)


def test_login_is_checked_like_the_token_header(cloud: CloudThread) -> None:
    appid, did, uid, token = setup(cloud)
    other_app = cloud.add_app()
    stranger_uid, stranger_token = new_user(cloud, other_app, "carol")
    expired = "e" * 32
    cloud.call(cloud.storage.store_token(token_digest(expired), uid, appid, int(time.time()) - 1))

    async def refused(ws: Ws, data: dict[str, object], code: int) -> None:
        await ws.send("login_req", data)
        assert await ws.expect("login_res") == {"cmd": "login_res", "data": {"success": False}}
        assert await ws.invalid() == code

    async def scenario() -> None:
        good = {"appid": appid, "uid": uid, "token": token, "p0_type": "attrs_v4", "heartbeat_interval": 60}
        async with ws_client(cloud) as ws:
            await ws.send("c2s_write", {"did": did, "attrs": {"temp": 1}})  # before login
            assert await ws.invalid() == 9004
            await ws.send("subscribe_req", [{"did": did}])
            assert await ws.invalid() == 9004
            await refused(ws, {**good, "token": "x" * 32}, 9004)  # unknown
            await refused(ws, {**good, "token": expired}, 9004)  # expired
            await refused(ws, {**good, "appid": "nosuchapp"}, 9003)
            # Three failed logins: closed.
            closed = await ws.ws.receive(timeout=5)
            assert closed.type.name in ("CLOSE", "CLOSED", "CLOSING")
        async with ws_client(cloud) as ws:
            await refused(ws, {**good, "appid": other_app, "token": stranger_token, "uid": uid}, 9004)
            await refused(ws, {**good, "token": stranger_token, "uid": stranger_uid}, 9004)  # another app's token
            await ws.login(appid, uid, token)
            await online(ws, did, False)
            await ws.send("login_req", good)
            assert await ws.invalid() == 9015  # already logged in
        for bad in (
            {**good, "p0_type": "json"},
            {**good, "heartbeat_interval": 181},  # over D-ws's 180 s
            {**good, "heartbeat_interval": 0},
            {**good, "heartbeat_interval": "60"},
            {**good, "auto_subscribe": 1},
            {**good, "uid": 7},
            {key: value for key, value in good.items() if key != "token"},
        ):
            async with ws_client(cloud) as ws:
                await refused(ws, bad, 9015)
        # A disabled user's session ends at its next command (the token check's cache lasts a second).
        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token)
            await online(ws, did, False)
            await asyncio.to_thread(cloud.call, cloud.storage.set_user_disabled(uid, True))
            await asyncio.sleep(1.2)
            await ws.send("ping")
            assert await ws.invalid() == 9004
            closed = await ws.ws.receive(timeout=5)
            assert closed.type.name in ("CLOSE", "CLOSED", "CLOSING")
        async with ws_client(cloud) as ws:
            await refused(ws, good, 9004)

    run(scenario(), 60)


KEY_SCHEMA: dict[str, Any] = {
    "name": "key-and-level",
    "product_key": "4e790000000000000000000000000001",
    "protocolType": "standard",
    "packetVersion": "0x00000004",
    "entities": [
        {
            "id": 0,
            "name": "entity0",
            "display_name": "device",
            "attrs": [
                {
                    "id": 0,
                    "name": "key",
                    "display_name": "key",
                    "type": "status_writable",
                    "data_type": "binary",
                    "position": {"byte_offset": 0, "bit_offset": 0, "len": 3, "unit": "byte"},
                    "desc": "",
                },
                {
                    "id": 1,
                    "name": "level",
                    "display_name": "level",
                    "type": "status_writable",
                    "data_type": "uint8",
                    "position": {"byte_offset": 3, "bit_offset": 0, "len": 1, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 100, "ratio": 1, "addition": 0},
                    "desc": "",
                },
            ],
        }
    ],
}


def test_binary_points_are_byte_arrays_on_the_websocket(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    product_key, _secret = cloud.add_product(KEY_SCHEMA)
    did = register(cloud, MAC, PASSCODE, product_key)
    uid, token = new_user(cloud, appid, "alice", (did, PASSCODE))

    async def scenario() -> None:
        device = await connected_device(cloud, did, PASSCODE, product_key)
        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token)
            await online(ws, did, True)
            # D-ws writes binary as a byte array; the hex string /app/control takes works too. P0: 01 | attr_flags
            # 01 (key, writable id 0) | key 3 bytes | level 0.
            await ws.send("c2s_write", {"did": did, "attrs": {"key": [1, 2, 0xFF]}})
            assert (await next_command(device, did))[1] == envelope(0x0090, bytes.fromhex("01010102ff00"))
            await ws.send("c2s_write", {"did": did, "attrs": {"key": "0a0b0c", "level": 7}})
            assert (await next_command(device, did))[1] == envelope(0x0090, bytes.fromhex("01030a0b0c07"))
            for bad in ([1, 2], [1, 2, 256], "0a0b", [1, 2, "3"]):
                await ws.send("c2s_write", {"did": did, "attrs": {"key": bad}})
                assert await ws.invalid() == 9025, bad

            # A report: s2c_noti carries the byte array, /app/devdata the hex string (§3.8), from one decoding.
            await device.publish(f"dev2app/{did}", envelope(0x0091, bytes.fromhex("04c0ffee2a")))
            noti = await ws.expect("s2c_noti")
            assert noti["data"] == {"did": did, "attrs": {"key": [0xC0, 0xFF, 0xEE], "level": 42}}
            latest = await asyncio.to_thread(cloud.api, "GET", f"/app/devdata/{did}/latest", appid=appid, token=token)
            assert latest.body["attr"] == {"key": "c0ffee", "level": 42}
        await device.close()

    run(scenario(), 60)
