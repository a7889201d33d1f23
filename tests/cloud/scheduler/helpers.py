"""What the scheduler tests share: a clock the test moves, a user with bound devices, the schedule bodies."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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
