"""The WebSocket API against hostile and broken clients: malformed messages, oversized frames, floods, silence,
and a client that stops reading while another keeps receiving. Nothing a client does reaches past its own
connection: the server answers every later request."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import aiohttp
import pytest

from gizdev.cloud.realtime import RealtimeSettings
from gizdev.codec.envelope import encode_envelope
from tests.bridge.test_bridge_metrics import Samples, scrape, value
from tests.cloud.broker_fixtures import wait_until_async
from tests.cloud.realtime_helpers import Ws, connected_device, new_user, register, ws_client
from tests.cloud.server_fixtures import CloudThread, make_cloud, world_searchable_dir
from tests.guards import run

MAC = "AABBCCDDEEFF"
PASSCODE = "HKIPANQEYX"
BLOB_LEN = 1000
# A product whose reports are big (a 1000-byte binary point is a 4 KB s2c_noti), so that a client's buffers fill
# after some hundred reports.
BLOB_SCHEMA: dict[str, Any] = {
    "name": "blob",
    "product_key": "b10b0000000000000000000000000001",
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
                    "name": "seq",
                    "display_name": "seq",
                    "type": "status_writable",
                    "data_type": "uint16",
                    "position": {"byte_offset": 0, "bit_offset": 0, "len": 2, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 65535, "ratio": 1, "addition": 0},
                    "desc": "",
                },
                {
                    "id": 1,
                    "name": "blob",
                    "display_name": "blob",
                    "type": "status_readonly",
                    "data_type": "binary",
                    "position": {"byte_offset": 2, "bit_offset": 0, "len": BLOB_LEN, "unit": "byte"},
                    "desc": "",
                },
            ],
        }
    ],
}
BLOB_PK: str = BLOB_SCHEMA["product_key"]
TIGHT = RealtimeSettings(send_queue=16, login_timeout_s=1.0, max_message_bytes=8 * 1024)


@pytest.fixture(name="tight_cloud")
def tight_cloud_fixture(db_url: str, mosquitto_binary: str) -> Iterator[CloudThread]:
    """A cloud whose WebSocket limits are small enough to reach in a test."""
    base = world_searchable_dir()
    thread = make_cloud(db_url, base / "data", mosquitto_binary=mosquitto_binary, realtime=TIGHT)
    try:
        yield thread
    finally:
        thread.close()
        shutil.rmtree(base, ignore_errors=True)


def setup(cloud: CloudThread, schema: dict[str, Any] | None = None) -> tuple[str, str, str, str]:
    appid = cloud.add_app()
    if schema is None:
        cloud.add_product()
        did = register(cloud, MAC, PASSCODE)
    else:
        cloud.add_product(schema)
        did = register(cloud, MAC, PASSCODE, schema["product_key"])
    uid, token = new_user(cloud, appid, "alice", (did, PASSCODE))
    return appid, did, uid, token


def still_serving(cloud: CloudThread, appid: str, did: str, token: str) -> None:
    reply = cloud.api("GET", f"/app/devdata/{did}/latest", appid=appid, token=token)
    assert reply.status == 200 and reply.body["did"] == did


async def closed(ws: Ws, timeout_s: float = 5.0) -> int | None:
    """Wait for the server to close the connection; its close code."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                return int(msg.data)  # the server's code (answering it may fail when the server is gone)
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.ws.close_code


def test_malformed_messages_get_invalid_msg_and_change_nothing(cloud: CloudThread) -> None:
    appid, did, uid, token = setup(cloud)

    async def scenario() -> None:
        async with ws_client(cloud) as ws:
            for text in ("hello", "[1, 2]", '{"cmd": 5}', "{}", '{"cmd": "ping", "x": NaN}', "[" * 50 + "]" * 50,
                         '{"cmd": "c2s_fly", "data": {}}', '{"cmd": "ping"'):  # fmt: skip
                await ws.ws.send_str(text)
                assert await ws.invalid() == 9015, text
            await ws.ws.send_bytes(json.dumps({"cmd": "ping"}).encode())
            assert await ws.invalid() == 9015  # binary frames are not the protocol
            await ws.send("ping")  # allowed before login
            assert await ws.expect("pong") == {"cmd": "pong"}

            await ws.login(appid, uid, token)
            await ws.expect("s2c_online_status")
            malformed: list[tuple[str, Any, dict[str, Any]]] = [
                ("c2s_write", None, {}),  # no data
                ("c2s_write", [did], {}),
                ("c2s_write", {"attrs": {"temp": 1}}, {}),  # no did
                ("c2s_write", {"did": 7, "attrs": {"temp": 1}}, {}),
                ("c2s_write", {"did": did, "attrs": {}}, {}),
                ("c2s_write", {"did": did, "attrs": [1]}, {}),
                ("c2s_write", {"did": did, "attrs": {"temp": 1}}, {"req_sn": "1"}),
                ("c2s_write", {"did": did, "attrs": {"temp": 1}}, {"req_sn": -1}),
                ("c2s_write", {"did": did, "attrs": {"temp": 1}}, {"req_sn": 2**32}),
                ("c2s_write", {"did": did, "attrs": {"temp": 1}}, {"req_sn": True}),
                ("c2s_read", {"did": did, "names": "temp"}, {}),
                ("c2s_raw", {"did": did, "raw": "00000003"}, {}),
                ("c2s_raw", {"did": did}, {}),
                ("subscribe_req", {"did": did}, {}),
                ("subscribe_req", [], {}),
                ("subscribe_req", [did], {}),
                ("subscribe_req", [{"did": did}] * 101, {}),
                ("c2s_ack", None, {"did": did}),  # no res_sn
                ("c2s_ack", None, {"res_sn": 1}),  # no did
            ]
            for cmd, data, top in malformed:
                await ws.send(cmd, data, **top)
                assert await ws.invalid() == 9015, (cmd, data, top)
            for attrs in ({"temp": 101}, {"temp": "hot"}, {"temp": [1, 2]}, {"nope": 1}, {"temp": None}):
                await ws.send("c2s_write", {"did": did, "attrs": attrs})
                assert await ws.invalid() == 9025, attrs
            await ws.send("subscribe_req", [{"did": "x" * 200}])
            assert await ws.invalid() == 9015
            await ws.send("ping")
            assert await ws.expect("pong") == {"cmd": "pong"}
        await asyncio.to_thread(still_serving, cloud, appid, did, token)

    run(scenario(), 60)


def test_floods_and_oversized_frames_end_only_their_own_connection(cloud: CloudThread) -> None:
    appid, did, uid, token = setup(cloud)
    burst = RealtimeSettings().burst

    async def scenario() -> None:
        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token)
            await ws.expect("s2c_online_status")
            for _ in range(burst + 100):  # as fast as the socket takes them
                await ws.send("ping")
            answers = [await ws.receive() for _ in range(burst + 100)]
            pongs = sum(1 for body in answers if body["cmd"] == "pong")
            throttled = [body for body in answers if body["cmd"] == "s2c_invalid_msg"]
            assert pongs >= burst - 1 and throttled, (pongs, len(throttled))  # login_req took one
            assert pongs + len(throttled) == len(answers)
            assert all(body["data"]["error_code"] == 9041 for body in throttled)
            await asyncio.sleep(0.5)  # the bucket refills
            await ws.send("ping")
            assert await ws.expect("pong") == {"cmd": "pong"}

        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token)
            await ws.ws.send_str(json.dumps({"cmd": "ping", "pad": "x" * (RealtimeSettings().max_message_bytes + 1)}))
            assert await closed(ws) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG

        async with ws_client(cloud) as ws:  # the server carries on
            await ws.login(appid, uid, token)
            await ws.expect("s2c_online_status")
            await ws.send("ping")
            assert await ws.expect("pong") == {"cmd": "pong"}
        await asyncio.to_thread(still_serving, cloud, appid, did, token)

    run(scenario(), 60)


def test_heartbeat_and_login_timeouts(tight_cloud: CloudThread) -> None:
    cloud = tight_cloud
    appid, did, uid, token = setup(cloud)

    async def scenario() -> None:
        async with ws_client(cloud) as ws:  # never logs in: closed after login_timeout_s, pings or not
            started = time.monotonic()
            await ws.send("ping")
            await ws.expect("pong")
            assert await closed(ws) == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert TIGHT.login_timeout_s - 0.2 <= time.monotonic() - started <= TIGHT.login_timeout_s + 2

        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token, heartbeat=1)
            await ws.expect("s2c_online_status")
            for _ in range(6):  # pings within the interval keep it open for 3 s
                await asyncio.sleep(0.5)
                await ws.send("ping")
                assert await ws.expect("pong") == {"cmd": "pong"}
            started = time.monotonic()  # silent from here: closed after 1 s x heartbeat_slack
            assert await closed(ws) == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert 1.0 <= time.monotonic() - started <= 1 * TIGHT.heartbeat_slack + 2
        await asyncio.to_thread(still_serving, cloud, appid, did, token)

    run(scenario(), 60)


def _masked_text(text: str) -> bytes:
    """A client's text frame (RFC 6455 §5.2: FIN, opcode 1, masked)."""
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 0x10000
    short = len(payload) < 126
    length = bytes([0x80 | len(payload)]) if short else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def stalled_client(port: int, login: dict[str, Any]) -> socket.socket:
    """A WebSocket client that logs in and then never reads again (a tiny receive buffer, so it fills at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/app/v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked_text(json.dumps({"cmd": "login_req", "data": login})))
    answer = sock.recv(64)  # login_res (an unmasked server frame): 0x81, length, {"cmd":"login_res",...}
    assert b'"success":true' in answer, answer
    return sock


def gone(sock: socket.socket) -> bool:
    """Whether the server closed (or reset) the connection: everything it sent read, then end of stream."""
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_a_client_that_stops_reading_is_dropped_and_holds_back_nobody(tight_cloud: CloudThread) -> None:
    cloud = tight_cloud
    appid, did, uid, token = setup(cloud, BLOB_SCHEMA)
    hub = cloud.server.realtime
    assert hub is not None
    login = {"appid": appid, "uid": uid, "token": token, "p0_type": "attrs_v4", "heartbeat_interval": 180}

    def report(seq: int) -> bytes:
        return encode_envelope(0x0091, bytes([4]) + seq.to_bytes(2, "big") + bytes([0xEE]) * BLOB_LEN)

    async def scenario() -> None:
        device = await connected_device(cloud, did, PASSCODE, BLOB_PK)
        stalled = await asyncio.to_thread(stalled_client, cloud.http_port, login)
        seen: list[int] = []
        async with ws_client(cloud) as reader:
            await reader.login(appid, uid, token)
            await reader.expect("s2c_online_status")

            async def keep_reading() -> None:
                while True:
                    body = await reader.receive(10)
                    if body["cmd"] == "s2c_noti":
                        seen.append(body["data"]["attrs"]["seq"])
                        assert body["data"]["attrs"]["blob"] == [0xEE] * BLOB_LEN

            def caught_up(seq: int) -> bool:
                return seen[-1:] == [seq]

            reading = asyncio.create_task(keep_reading())
            seq = 0
            while hub.stats.dropped == 0:  # (counted on the cloud's loop; an int read here)
                # The kernel grows the socket's send buffer up to a few MB: that much is queued before its writer
                # blocks and its send queue fills.
                assert seq < 6000, "the stalled client was never dropped"
                for _ in range(20):
                    seq += 1
                    await device.publish(f"dev2app/{did}", report(seq))
                # Paced by the reading client (QoS 0: the broker would drop what the bus cannot take in time), which
                # keeps receiving everything while the other one's buffers fill.
                await wait_until_async(partial(caught_up, seq), 10, f"report {seq} at the reading client")
            last = seq + 1
            await device.publish(f"dev2app/{did}", report(last))
            try:
                async with asyncio.timeout(10):
                    while not seen or seen[-1] != last:
                        await asyncio.sleep(0.01)
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading  # its own failure, if it had one
            assert seen == list(range(1, last + 1))  # every report, in order, while the other was stuck
        assert hub.stats.dropped == 1
        assert await asyncio.to_thread(gone, stalled)
        stalled.close()
        await device.close()
        latest = await asyncio.to_thread(cloud.api, "GET", f"/app/devdata/{did}/latest", appid=appid, token=token)
        assert latest.body["attr"]["seq"] == last  # the bus was not held back either

    run(scenario(), 90)


def test_stopping_the_cloud_closes_its_websocket_clients(tight_cloud: CloudThread) -> None:
    cloud = tight_cloud
    appid, _did, uid, token = setup(cloud)

    async def scenario() -> None:
        async with ws_client(cloud) as ws:
            await ws.login(appid, uid, token)
            await ws.expect("s2c_online_status")
            assert cloud.server.realtime is not None and cloud.server.realtime.session_count == 1
            started = time.monotonic()
            await asyncio.to_thread(cloud.close)  # fails on tasks the server left running
            assert await closed(ws) == aiohttp.WSCloseCode.GOING_AWAY
            assert time.monotonic() - started < 5

    run(scenario(), 30)


def test_metrics_count_websocket_sessions(mosquitto_binary: str) -> None:
    base = world_searchable_dir()
    database = f"sqlite+aiosqlite:///{base / 'cloud.db'}"
    cloud = make_cloud(database, base / "data", mosquitto_binary=mosquitto_binary, metrics=("127.0.0.1", 0))
    try:
        metrics = cloud.server.metrics
        assert metrics is not None
        url = "http://{}:{}/metrics".format(*metrics.address)
        appid, _did, uid, token = setup(cloud)

        async def scenario() -> tuple[Samples, Samples, Samples]:
            before = await asyncio.to_thread(scrape, url)
            async with ws_client(cloud) as ws:
                await ws.login(appid, uid, token)
                await ws.expect("s2c_online_status")
                during = await asyncio.to_thread(scrape, url)
            hub = cloud.server.realtime
            assert hub is not None
            await wait_until_async(lambda: hub.session_count == 0, what="the session ended")
            return before, during, await asyncio.to_thread(scrape, url)

        before, during, after = run(scenario())
        assert [value(samples, "gizdev_ws_sessions") for samples in (before, during, after)] == [0, 1, 0]
        assert value(after, "gizdev_ws_dropped_total") == 0
    finally:
        cloud.close()
        shutil.rmtree(base, ignore_errors=True)
