"""What the scheduler tests share: a clock the test moves, a user with bound devices, the schedule bodies."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, CloudThread
from tests.cloud.test_open_api_seed import bind, new_user, register

PK: str = TEMP_HUMI_SCHEMA["product_key"]


class Clock:
    """A wall clock the test sets and moves (Unix seconds); the cloud reads it through ``__call__``."""

    def __init__(self, at: dt.datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: dt.datetime) -> None:
        self.now = at.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += seconds


def utc(text: str) -> dt.datetime:
    """``"2026-03-01T23:59:30"`` as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@dataclass
class World:
    appid: str
    token: str
    dids: list[str]  # TEMP_HUMI devices bound to the user; passcodes PASSCODES[i]
    unbound: str  # a TEMP_HUMI device nobody bound


PASSCODES = ["PASSA", "PASSB", "PASSC"]


def make_world(cloud: CloudThread, devices: int = 2) -> World:
    appid = cloud.add_app()
    cloud.add_product()
    dids = [register(cloud, f"AABBCCDDEE{index:02X}", PASSCODES[index]) for index in range(devices)]
    unbound = register(cloud, "AABBCCDDEEFF", "NOBODY")
    token = new_user(cloud, appid)
    for did, passcode in zip(dids, PASSCODES, strict=False):
        bind(cloud, appid, token, did, passcode)
    return World(appid, token, dids, unbound)


def legacy_body(
    dids: list[str], *, date: str | None, time: str, repeat: str = "none", temp: int = 10, humi: int = 20, **extra: Any
) -> dict[str, Any]:
    """A POST /app/scheduler body: each device gets temp = ``temp`` + its index, and ``humi``."""
    body: dict[str, Any] = {
        "time": time,
        "repeat": repeat,
        "task": [
            {"did": did, "product_key": PK, "attrs": {"temp": temp + index, "humi": humi}}
            for index, did in enumerate(dids)
        ],
        "retry_count": 0,
        "retry_task": "all",
    }
    if date is not None:
        body["date"] = date
    return body | extra


def p0_write(temp: int, humi: int) -> bytes:
    """The TEMP_HUMI write by hand: action 01, attr_flags 03 (temp id 0, humi id 1), one byte each."""
    return bytes([0x01, 0x03, temp, humi])


def parse_0093(topic: str, did: str, frame: bytes) -> tuple[str, int, bytes]:
    """(clientid, sn, P0) of a 0x0093 on ``app2dev/<did>/<clientid>``, read by hand (§1.6): ``00 00 00 03``,
    len (one byte below 128), flag 0, cmd ``00 93``, sn (4 bytes big-endian), P0."""
    prefix = f"app2dev/{did}/"
    assert topic.startswith(prefix) and 1 <= len(topic) - len(prefix) <= 23, topic
    assert frame[:4] == bytes.fromhex("00000003") and frame[4] == len(frame) - 5, frame.hex()
    assert frame[5:8] == bytes.fromhex("000093"), f"not a 0x0093: {frame.hex()}"
    return topic[len(prefix) :], int.from_bytes(frame[8:12], "big"), frame[12:]


def frame_0094(sn: int) -> bytes:
    """GAgent's answer to a write's 0x0093 (gagent-wire-observations: ``000000030700009400000001`` for sn 1)."""
    return bytes.fromhex("0000000307000094") + sn.to_bytes(4, "big")


@dataclass
class AnsweringDevice:
    """A GAgent-like device that answers every 0x0093 with its 0x0094 on ``dev2app/<did>/<clientid>`` (as GAgent
    does once its MCU took the command) and keeps the P0 of each; ``answers=False``: online, never answers (an
    MCU that does not take commands)."""

    client: RawMqtt31
    did: str
    answers: bool = True
    commands: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    _listener: asyncio.Task[None] | None = None

    def start(self) -> AnsweringDevice:
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        return self

    async def _listen(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                try:
                    topic, frame = await self.client.read_publish(timeout_s=3600)
                except TimeoutError:
                    continue
                client_id, sn, p0 = parse_0093(topic, self.did, frame)
                self.commands.put_nowait(p0)
                if self.answers:
                    await self.client.publish(f"dev2app/{self.did}/{client_id}", frame_0094(sn))

    async def next_command(self, timeout_s: float = 5.0) -> bytes:
        """The P0 of the next command."""
        return await asyncio.wait_for(self.commands.get(), timeout_s)

    async def assert_silent(self, seconds: float = 0.4) -> None:
        await asyncio.sleep(seconds)
        assert self.commands.empty(), f"the device received {self.commands.get_nowait().hex()}"

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.client.close()
