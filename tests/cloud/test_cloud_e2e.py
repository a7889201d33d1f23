"""The cloud end to end, as a device and an app see it: HTTP registration, MQTT with the device's credentials,
reports into /app/devdata, /app/control out to the device's topic, presence, the online-apps service query."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from typing import Any

import pytest

from gizdev.codec.envelope import decode_envelope, decode_service, encode_envelope, encode_service
from gizdev.protocol.device_api import decrypt_form, encrypt_form
from tests.cloud.broker_fixtures import (  # noqa: F401
    BrokerThread,
    RawMqtt31,
    broker_dir_fixture,
    connect_packet_v31,
    mosquitto_broker_fixture,
)
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, CloudThread, make_cloud, world_searchable_dir
from tests.cloud.test_device_api import sealed_registration
from tests.guards import run

MAC = "AABBCCDDEEFF"
PASSCODE = "HKIPANQEYX"
PK = TEMP_HUMI_SCHEMA["product_key"]
CONNACK_OK = bytes.fromhex("20020000")


def register(cloud: CloudThread, mac: str = MAC, passcode: str = PASSCODE, pk: str = PK) -> str:
    reply = cloud.form("POST", "/dev/devices", f"passcode={passcode}&mac={mac}&product_key={pk}")
    assert reply.status == 201, reply
    assert isinstance(reply.body, str) and reply.body.startswith("did=")
    did = reply.body[4:]
    assert len(did) == 22
    return did


def user_with_binding(cloud: CloudThread, appid: str, did: str, passcode: str = PASSCODE) -> str:
    reply = cloud.api("POST", "/app/users", {"username": "bob", "password": "123456"}, appid=appid)
    assert reply.status == 201, reply
    token: str = reply.body["token"]
    bound = cloud.api(
        "POST", "/app/bindings", {"devices": [{"did": did, "passcode": passcode}]}, appid=appid, token=token
    )
    assert bound.status == 200 and bound.body == {"success": [did], "failed": []}, bound
    return token


def publish_packet(topic: str, payload: bytes) -> bytes:
    """The PUBLISH packet the broker forwards to a QoS 0 subscriber."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    return bytes([0x30, len(body)]) + body


async def connected_device(cloud: CloudThread, did: str, passcode: str = PASSCODE) -> RawMqtt31:
    device = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
    assert await device.connect(did, did, passcode) == CONNACK_OK
    for message_id, topic in enumerate((f"ser2cli_noti/{PK}", f"ser2cli_res/{did}", f"app2dev/{did}/#"), start=1):
        suback = await device.subscribe(message_id, topic)
        assert suback == bytes([0x90, 3]) + message_id.to_bytes(2, "big") + b"\x00"
    return device


def wait_for(predicate: Any, timeout_s: float = 5.0, what: str = "condition") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def device_online(cloud: CloudThread, did: str) -> bool:
    return cloud.call(cloud.storage.get_device(did)).is_online


def test_register_report_read_control(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud)
    provision = cloud.request("GET", f"/dev/devices/{did}", headers={"Host": "api.gizwits.com"})
    assert provision.status == 200
    fields = dict(pair.split("=", 1) for pair in provision.body.split("&"))
    assert fields["host"] == "127.0.0.1" and fields["port"] == str(cloud.mqtt_port)
    assert abs(int(fields["server_ts"]) - time.time()) < 5
    token = user_with_binding(cloud, appid, did)

    async def scenario() -> None:
        device = await connected_device(cloud, did)
        await asyncio.to_thread(wait_for, lambda: device_online(cloud, did), 1.0, "online within 1 s")
        # A report: temp 21, humi 55 -> P0 04 15 37, in a 0x0091 envelope on dev2app/<did>.
        await device.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091041537"))

        def latest() -> Any:
            return cloud.api("GET", f"/app/devdata/{did}/latest", appid=appid, token=token)

        await asyncio.to_thread(wait_for, lambda: latest().body["attr"] != {}, 5.0, "the report stored")
        reply = latest()
        assert reply.status == 200
        assert reply.body["did"] == did and reply.body["attr"] == {"temp": 21, "humi": 55}
        assert abs(reply.body["updated_at"] - time.time()) < 5

        control = await asyncio.to_thread(
            cloud.api, "POST", f"/app/control/{did}", {"attrs": {"temp": 10}}, appid=appid, token=token
        )
        assert control.status == 200 and control.body == {}
        packet = await device.read_packet()
        # Expected frame from the spec: 0x0090, P0 = action 01, attr_flags 01 (temp = writable id 0), temp 10,
        # humi 0 (not flagged; fixed-length writes carry every writable value).
        topic_len = int.from_bytes(packet[2:4], "big")
        topic = packet[4 : 4 + topic_len].decode()
        assert topic.startswith(f"app2dev/{did}/")
        assert packet[4 + topic_len :] == bytes.fromhex("00000003070000900101" + "0a00")

        raw = await asyncio.to_thread(
            cloud.api, "POST", f"/app/control/{did}", {"raw": [0, 1, 2, 3]}, appid=appid, token=token
        )
        assert raw.status == 200
        packet = await device.read_packet()
        assert packet.endswith(encode_envelope(0x0090, bytes([0, 1, 2, 3])))
        device.writer.close()

    run(scenario())


def test_wrong_passcode_and_foreign_topics_are_refused(cloud: CloudThread) -> None:
    cloud.add_product()
    did = register(cloud)
    other = register(cloud, mac="001122334455", passcode="OTHERPASS")

    async def scenario() -> None:
        intruder = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
        connack = await intruder.connect(did, did, "WRONGPASS")
        assert connack[:2] == b"\x20\x02" and connack[3] != 0  # refused (bad user name or password / not authorised)
        intruder.writer.close()

        device = await connected_device(cloud, did)
        # Subscribing to the other device's commands: mosquitto grants the SUBACK but delivers nothing (ACL);
        # publishing as the other device is dropped. Prove both with the other device connected.
        await device.subscribe(9, f"app2dev/{other}/#")
        peer = await connected_device(cloud, other, "OTHERPASS")
        await device.publish(f"dev2app/{other}", bytes.fromhex("0000000306000091046363"))
        await peer.publish(f"dev2app/{other}", bytes.fromhex("0000000306000091040102"))
        await asyncio.sleep(0.5)
        latest = cloud.call(cloud.storage.get_latest(other))
        assert latest is not None and latest.attrs == {"temp": 1, "humi": 2}  # only the real device's report
        with pytest.raises(TimeoutError):
            await device.read_packet(timeout_s=0.3)
        device.writer.close()
        peer.writer.close()

    run(scenario())


def test_presence_follows_the_broker(cloud: CloudThread) -> None:
    cloud.add_product()
    did = register(cloud)

    async def scenario() -> None:
        device = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
        await device.send(connect_packet_v31(did, did, PASSCODE, keepalive_s=2))
        assert await device.read_packet() == CONNACK_OK
        took = await asyncio.to_thread(wait_for, lambda: device_online(cloud, did), 1.0, "online within 1 s")
        assert took < 1.0
        # Silent drop: the socket stays open but nothing more is sent (no PINGREQ). Mosquitto 2.0 drops the client
        # once more than 1.5 x keepalive whole seconds passed, checked on a one-second tick: up to 2 s late. With
        # GAgent's 120 s that is 180-182 s; here 3-5 s (plus scheduling slack on a loaded machine).
        start = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: not device_online(cloud, did), 8.0, "offline after a silent drop")
        assert 1.5 * 2 <= time.monotonic() - start <= 1.5 * 2 + 2 + 1.5
        device.writer.close()

        # A clean reconnect brings it back, a clean disconnect takes it away at once.
        again = await connected_device(cloud, did)
        await asyncio.to_thread(wait_for, lambda: device_online(cloud, did), 1.0, "online again")
        await again.send(b"\xe0\x00")  # DISCONNECT
        await asyncio.to_thread(wait_for, lambda: not device_online(cloud, did), 1.0, "offline after DISCONNECT")
        again.writer.close()

    run(scenario())


def test_online_query_is_answered_with_the_app_count(cloud: CloudThread) -> None:
    cloud.add_product()
    did = register(cloud)

    async def scenario() -> None:
        device = await connected_device(cloud, did)
        await asyncio.to_thread(wait_for, lambda: device_online(cloud, did), 1.0, "online")
        await device.publish("cli2ser_req", encode_service(0x020F))
        packet = await device.read_packet()
        topic_len = int.from_bytes(packet[2:4], "big")
        assert packet[4 : 4 + topic_len] == f"ser2cli_res/{did}".encode()
        frame = decode_service(packet[4 + topic_len :])
        assert frame.cmd == 0x0210 and frame.body == b"\x00\x00"  # no app has used the device yet
        device.writer.close()

    run(scenario())


def test_device_initiated_0093_is_acknowledged(cloud: CloudThread) -> None:
    cloud.add_product()
    did = register(cloud)

    async def scenario() -> None:
        device = await connected_device(cloud, did)
        await device.publish(f"dev2app/{did}", encode_envelope(0x0093, bytes.fromhex("040506"), sn=77))
        packet = await device.read_packet()
        topic_len = int.from_bytes(packet[2:4], "big")
        assert packet[4 : 4 + topic_len].decode().startswith(f"app2dev/{did}/")
        ack = decode_envelope(packet[4 + topic_len :])
        assert ack.cmd == 0x0094 and ack.sn == 77 and ack.payload == b""
        device.writer.close()

    run(scenario())
    latest = cloud.call(cloud.storage.get_latest(did))
    assert latest is not None and latest.attrs == {"temp": 5, "humi": 6}


def test_control_of_an_offline_device_answers_9042(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud)
    token = user_with_binding(cloud, appid, did)
    reply = cloud.api("POST", f"/app/control/{did}", {"attrs": {"temp": 10}}, appid=appid, token=token)
    assert reply.status == 400 and reply.body["error_code"] == 9042


def test_gagent_http_requests_byte_for_byte(cloud: CloudThread) -> None:
    """The vendor firmware's exact requests (gagent-wire-observations §2), read back with one recv of 1 KiB."""
    cloud.add_product()

    def exchange(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", cloud.http_port), timeout=10) as sock:
            sock.sendall(request)
            time.sleep(0.3)  # GAgent reads once, after the reply arrived
            return sock.recv(1024)

    body = b"passcode=HKIPANQEYX&mac=AABBCCDDEEFF&product_key=" + PK.encode()
    reply = exchange(
        b"POST /dev/devices HTTP/1.1\r\nHost: api.gizwits.com\r\nContent-Length: %d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n%s" % (len(body), body)
    )
    assert reply.startswith(b"HTTP/1.1 201")
    did = reply[reply.index(b"did=") + 4 :][:22].decode()
    assert cloud.call(cloud.storage.get_device(did)).mac == MAC

    reply = exchange(
        b"GET /dev/devices/%s HTTP/1.1\r\nHost: api.gizwits.com\r\nCache-Control: no-cache\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" % did.encode()
    )
    assert reply.startswith(b"HTTP/1.1 200")
    text = reply.split(b"\r\n\r\n", 1)[1]
    # GAgent: host= runs to the next &, then port= runs to the next & - so something must follow the port.
    host = text[text.index(b"host=") + 5 :].split(b"&")[0]
    port = text[text.index(b"port=") + 5 :].split(b"&", 1)
    assert host == b"127.0.0.1" and port[0] == str(cloud.mqtt_port).encode() and len(port) == 2 and port[1]

    ota = b"passcode=HKIPANQEYX&type=1&hard_version=000LINUX&soft_version=04020006"
    reply = exchange(
        b"POST /dev/ota/v4.1/update_and_check/%s HTTP/1.1\r\nHost:api.gizwits.com\r\nContent-Length:%d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n%s" % (did.encode(), len(ota), ota)
    )
    assert reply.startswith(b"HTTP/1.1 404")  # "no update": GAgent goes on to MQTT


def test_encrypted_device_api(cloud: CloudThread) -> None:
    _, secret = cloud.add_product()
    sealed = encrypt_form(secret, "mac=A0B1C2D3E4F5&passcode=SEALEDPASS&type=normal")
    reply = cloud.form("POST", f"/dev/{PK}/device", f"data={sealed}")
    assert reply.status == 201
    # "did=" + 22 characters + "&mqtt_password=" + 16 characters, padded: four AES blocks.
    assert len(reply.body) == 128
    did, password = sealed_registration(secret, reply)
    again = cloud.form("POST", f"/dev/{PK}/device", f"data={sealed}")
    did_again, password_again = sealed_registration(secret, again)
    assert did_again == did  # the DID of an encrypted device is fixed
    assert password_again != password  # each registration gives a new password (the old one is dropped)
    provision = cloud.request("GET", f"/dev/{PK}/device?did={encrypt_form(secret, did)}&tls=0")
    assert provision.status == 200
    assert decrypt_form(secret, provision.body).startswith("host=127.0.0.1&port=")
    # The plain API is refused for it (9048), and a form sealed with another key is 9015.
    plain = cloud.form("POST", "/dev/devices", f"passcode=SEALEDPASS&mac=A0B1C2D3E4F5&product_key={PK}")
    assert plain.status == 400 and plain.body["error_code"] == 9048
    wrong = encrypt_form("0" * 32, "mac=A0B1C2D3E4F5&passcode=SEALEDPASS")
    assert cloud.form("POST", f"/dev/{PK}/device", f"data={wrong}").body["error_code"] == 9015


def test_external_broker(db_url: str, mosquitto_broker: BrokerThread) -> None:
    """--broker mqtt://…: no managed Mosquitto; the operator keeps device accounts; the cloud works the same."""
    settings = mosquitto_broker.settings
    url = settings.url(show_password=True)
    base = world_searchable_dir()
    cloud = make_cloud(db_url, base / "data", broker_url=url)
    try:
        assert cloud.server.broker is None  # nothing managed
        cloud.add_product()
        did = register(cloud)
        provision = cloud.request("GET", f"/dev/devices/{did}")
        assert f"port={settings.port}&" in provision.body  # devices are sent to the external broker
        mosquitto_broker.add_device_sync(did, PASSCODE, PK)  # the operator's job with an external broker

        async def scenario() -> None:
            device = await RawMqtt31.open("127.0.0.1", settings.port)
            assert await device.connect(did, did, PASSCODE) == CONNACK_OK
            await device.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091040a0b"))
            await asyncio.to_thread(wait_for, lambda: device_online(cloud, did), 5.0, "online from traffic")
            device.writer.close()

        run(scenario())
        wait_for(lambda: cloud.call(cloud.storage.get_latest(did)) is not None, 5.0, "report stored")
        latest = cloud.call(cloud.storage.get_latest(did))
        assert latest is not None and latest.attrs == {"temp": 10, "humi": 11}
    finally:
        cloud.close()
        shutil.rmtree(base, ignore_errors=True)
