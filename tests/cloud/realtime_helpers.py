"""A WebSocket API client for tests (aiohttp's), and the users and devices the realtime tests need."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, CloudThread

__all__ = [
    "CONNACK_OK",
    "PK",
    "Ws",
    "connected_device",
    "new_user",
    "register",
    "ws_client",
]

PK: str = TEMP_HUMI_SCHEMA["product_key"]
CONNACK_OK = bytes.fromhex("20020000")


def register(cloud: CloudThread, mac: str, passcode: str, pk: str = PK) -> str:
    reply = cloud.form("POST", "/dev/devices", f"passcode={passcode}&mac={mac}&product_key={pk}")
    assert reply.status == 201, reply
    return str(reply.body)[4:]


def new_user(cloud: CloudThread, appid: str, username: str, *bound: tuple[str, str]) -> tuple[str, str]:
    """A user of ``appid`` bound to the given (did, passcode) pairs: (uid, token)."""
    reply = cloud.api("POST", "/app/users", {"username": username, "password": "123456"}, appid=appid)
    assert reply.status == 201, reply
    uid, token = reply.body["uid"], reply.body["token"]
    if bound:
        devices = [{"did": did, "passcode": passcode} for did, passcode in bound]
        answer = cloud.api("POST", "/app/bindings", {"devices": devices}, appid=appid, token=token)
        assert answer.status == 200 and answer.body["failed"] == [], answer
    return uid, token


async def connected_device(cloud: CloudThread, did: str, passcode: str, pk: str = PK) -> RawMqtt31:
    """A GAgent-like device on the cloud's broker, subscribed as GAgent subscribes, and online for the cloud's bus
    (its connection event is applied off the broker's log: a client logging in at once could see it offline)."""
    device = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
    assert await device.connect(did, did, passcode) == CONNACK_OK
    for message_id, topic in enumerate((f"ser2cli_noti/{pk}", f"ser2cli_res/{did}", f"app2dev/{did}/#"), start=1):
        await device.subscribe(message_id, topic)
    bus = cloud.server.bus
    assert bus is not None
    async with asyncio.timeout(10.0):
        while not bus.is_online(did):
            await asyncio.sleep(0.02)
    return device


class Ws:
    """One WebSocket API connection: send commands, receive JSON messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, cmd: str, data: Any = None, **top: Any) -> None:
        body: dict[str, Any] = {"cmd": cmd, **top}
        if data is not None:
            body["data"] = data
        await self.ws.send_str(json.dumps(body))

    async def receive(self, timeout_s: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout_s)
        assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
        body = json.loads(msg.data)
        assert isinstance(body, dict)
        return body

    async def expect(self, cmd: str, timeout_s: float = 5.0, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The next message, which must be ``cmd`` (messages whose cmd is in ``skip`` are passed over)."""
        async with asyncio.timeout(timeout_s):
            while True:
                body = await self.receive(timeout_s)
                if body["cmd"] in skip:
                    continue
                assert body["cmd"] == cmd, f"expected {cmd}, got {body}"
                return body

    async def invalid(self, timeout_s: float = 5.0, *, skip: tuple[str, ...] = ()) -> int:
        """The error code of the next message, which must be s2c_invalid_msg."""
        body = await self.expect("s2c_invalid_msg", timeout_s, skip=skip)
        assert isinstance(body["data"]["msg"], str) and body["data"]["msg"]
        code: int = body["data"]["error_code"]
        return code

    async def login(
        self, appid: str, uid: str, token: str, *, p0_type: str = "attrs_v4", heartbeat: int = 60, auto: bool = True
    ) -> None:
        data = {
            "appid": appid,
            "uid": uid,
            "token": token,
            "p0_type": p0_type,
            "heartbeat_interval": heartbeat,
            "auto_subscribe": auto,
        }
        await self.send("login_req", data)
        assert await self.expect("login_res") == {"cmd": "login_res", "data": {"success": True}}

    async def nothing(self, wait_s: float = 0.3) -> None:
        """No message arrives within ``wait_s``."""
        try:
            msg = await self.ws.receive(timeout=wait_s)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing, got {msg.type} {msg.data!r}")


@asynccontextmanager
async def ws_client(cloud: CloudThread, **kwargs: Any) -> AsyncIterator[Ws]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{cloud.http_port}/ws/app/v1", autoping=True, **kwargs) as ws,
    ):
        yield Ws(ws)
