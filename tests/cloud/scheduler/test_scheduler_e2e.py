"""A schedule for the next minute drives a virtual GoKit MCU through our bridge, on the real clock.

Everything is real: the cloud (SQLite, managed Mosquitto), the runner ticking on its own timer, the bridge
(gizdev.bridge.factory.build_bridge) on a pty to the virtual MCU. Only the waiting is cut short: the cloud's clock
runs at the real rate but is set forward, just before the schedule is made, to three seconds before a minute
starts, so "the next minute" comes three seconds later instead of up to sixty.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import shutil
import time
from pathlib import Path

from gizdev.cloud.scheduler.runner import SchedulerSettings
from tests.bridge.bridge_fixtures import GOKIT_PK, bridge_rig, eventually
from tests.cloud.server_fixtures import make_cloud, world_searchable_dir
from tests.guards import run

LEAD_S = 3.0  # the cloud's time from making the schedule to its minute


class ShiftedClock:
    """The real clock plus an offset the test may move forward (never back)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def jump_to_seconds_before_a_minute(self, lead_s: float) -> dt.datetime:
        """Move forward so that the next minute starts ``lead_s`` seconds from now; that minute (UTC)."""
        now = self()
        minute = math.ceil((now + lead_s) / 60) * 60
        self.offset += minute - lead_s - now
        return dt.datetime.fromtimestamp(minute, dt.UTC)


def test_a_schedule_for_the_next_minute_drives_the_mcu_through_the_bridge(
    mosquitto_binary: str, tmp_path: Path
) -> None:
    base = world_searchable_dir()
    clock = ShiftedClock()
    cloud = make_cloud(
        f"sqlite+aiosqlite:///{base / 'cloud.db'}",
        base / "data",
        clock=clock,
        mosquitto_binary=mosquitto_binary,
        scheduler=SchedulerSettings(tick_s=0.2, start_delay_s=0),
    )
    try:
        appid = cloud.add_app()

        async def scenario() -> None:
            async with bridge_rig(cloud, tmp_path / "state", mcu_kwargs={"values": {"LED_R": 1}}) as rig:
                await rig.up()
                token = await asyncio.to_thread(rig.user_token, appid)
                minute = clock.jump_to_seconds_before_a_minute(LEAD_S)
                body = {
                    "date": f"{minute:%Y-%m-%d}",
                    "time": f"{minute:%H:%M}",
                    "repeat": "none",
                    "task": [{"did": rig.did, "product_key": GOKIT_PK, "attrs": {"LED_R": 99, "Motor_Speed": 4}}],
                    "retry_count": 1,
                    "retry_task": "failed",
                }
                created = await rig.api("POST", "/app/scheduler", body, appid=appid, token=token)
                assert created.status == 201, created
                started = time.monotonic()
                await asyncio.sleep(LEAD_S - 1.0)
                assert rig.mcu.state["LED_R"] == 1, "ran before its minute"
                await eventually(lambda: rig.mcu.state["LED_R"] == 99, "the scheduled write on the MCU", 10.0)
                assert LEAD_S - 1.0 <= time.monotonic() - started <= LEAD_S + 5.0
                assert rig.mcu.state["Motor_Speed"] == 4

                def latest() -> object:
                    path = f"/app/scheduler/{created.body['id']}/logs"
                    return cloud.api("GET", path, appid=appid, token=token).body

                await eventually(lambda: latest() != {}, "the run's log")
                assert latest() == {
                    "datetime": f"{minute:%Y-%m-%dT%H:%M:%S}",
                    "status": "succeed",
                    "detail": {rig.did: True},
                }

        run(scenario(), 60)
    finally:
        cloud.close()
        shutil.rmtree(base, ignore_errors=True)
