"""The runner with a clock the test moves (the cloud's clock; ticks triggered by the test), a real managed
Mosquitto and GAgent-like raw MQTT 3.1 devices: what reaches the devices, when, and what the logs say.

Commands arrive as 0x0093 (read by hand: helpers.parse_0093) carrying the TEMP_HUMI write laid out by hand
(helpers.p0_write); the devices answer each with its 0x0094, as GAgent does, unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gizdev.cloud.scheduler.runner import SchedulerSettings
from gizdev.errors import ConfigError
from tests.cloud.scheduler.helpers import (
    PASSCODES,
    AnsweringDevice,
    Clock,
    World,
    legacy_body,
    make_world,
    p0_write,
    utc,
)
from tests.cloud.server_fixtures import CloudThread, Reply, make_cloud, world_searchable_dir
from tests.cloud.test_open_api_seed import api, online_device
from tests.guards import run

MANUAL = SchedulerSettings(tick_s=None)  # retry interval 30 s and grace 5 min: the defaults


@dataclass
class Place:
    base: Path
    database: str
    mosquitto_binary: str
    clock: Clock

    def start(self, scheduler: SchedulerSettings = MANUAL) -> CloudThread:
        return make_cloud(
            self.database,
            self.base / "data",
            clock=self.clock,
            mosquitto_binary=self.mosquitto_binary,
            scheduler=scheduler,
        )


@pytest.fixture(name="place")
def place_fixture(db_url: str, mosquitto_binary: str) -> Iterator[Place]:
    base = world_searchable_dir()
    try:
        yield Place(base, db_url, mosquitto_binary, Clock(utc("2026-03-01T23:59:00")))  # a Sunday, UTC
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(name="clocked")
def clocked_fixture(place: Place) -> Iterator[CloudThread]:
    cloud = place.start()
    try:
        yield cloud
    finally:
        cloud.close()


async def tick(cloud: CloudThread) -> None:
    scheduler = cloud.server.scheduler
    assert scheduler is not None
    await cloud.run(scheduler.tick())


async def create(cloud: CloudThread, world: World, body: dict[str, Any]) -> str:
    reply = await api(cloud, "POST", "/app/scheduler", body, appid=world.appid, token=world.token)
    assert reply.status == 201, reply
    schedule_id: str = reply.body["id"]
    return schedule_id


async def logs(cloud: CloudThread, world: World, schedule_id: str, query: str = "") -> Reply:
    return await api(cloud, "GET", f"/app/scheduler/{schedule_id}/logs{query}", appid=world.appid, token=world.token)


async def answering(cloud: CloudThread, did: str, passcode: str, *, answers: bool = True) -> AnsweringDevice:
    return AnsweringDevice(await online_device(cloud, did, passcode), did, answers).start()


async def devices_online(cloud: CloudThread, world: World, count: int) -> list[AnsweringDevice]:
    return [await answering(cloud, did, PASSCODES[index]) for index, did in enumerate(world.dids[:count])]


async def close_all(devices: list[AnsweringDevice]) -> None:
    for device in devices:
        await device.close()


def test_a_one_off_across_the_utc_day_boundary_runs_once(clocked: CloudThread, place: Place) -> None:
    world = make_world(clocked, devices=1)
    did = world.dids[0]

    async def scenario() -> None:
        (device,) = await devices_online(clocked, world, 1)
        sid = await create(clocked, world, legacy_body([did], date="2026-03-02", time="00:00"))
        for at in ("2026-03-01T23:59:00", "2026-03-01T23:59:59"):
            place.clock.set(utc(at))
            await tick(clocked)
        await device.assert_silent()
        assert (await logs(clocked, world, sid)).body == {}

        place.clock.set(utc("2026-03-02T00:00:00"))
        await tick(clocked)
        assert await device.next_command() == p0_write(10, 20)
        latest = await logs(clocked, world, sid)
        assert latest.status == 200
        assert latest.body == {"datetime": "2026-03-02T00:00:00", "status": "succeed", "detail": {did: True}}

        for seconds in (1, 60, 86_400, 7 * 86_400):  # never again
            place.clock.advance(seconds)
            await tick(clocked)
        await device.assert_silent()
        assert (await logs(clocked, world, sid, "?limit=10")).body == [latest.body]
        await device.close()

    run(scenario())


def test_weekly_runs_on_the_utc_weekday_across_midnight(clocked: CloudThread, place: Place) -> None:
    world = make_world(clocked, devices=1)
    did = world.dids[0]
    place.clock.set(utc("2026-03-01T23:30:00"))  # Sunday evening in UTC (already Monday in Beijing)

    async def scenario() -> None:
        (device,) = await devices_online(clocked, world, 1)
        sid = await create(clocked, world, legacy_body([did], date=None, time="00:15", repeat="mon"))
        frame = p0_write(10, 20)
        for at, expected in (
            ("2026-03-01T23:59:59", None),
            ("2026-03-02T00:14:59", None),
            ("2026-03-02T00:15:00", frame),  # Monday 00:15 UTC
            ("2026-03-02T00:16:00", None),
            ("2026-03-08T23:59:00", None),  # Sunday
            ("2026-03-09T00:15:01", frame),  # the next Monday
            ("2026-03-10T00:15:00", None),
        ):
            place.clock.set(utc(at))
            await tick(clocked)
            if expected is None:
                await device.assert_silent(0.2)
            else:
                assert await device.next_command() == expected, at
        history = (await logs(clocked, world, sid, "?limit=20&skip=0")).body
        assert history == [
            {"datetime": "2026-03-09T00:15:00", "status": "succeed", "detail": {did: True}},
            {"datetime": "2026-03-02T00:15:00", "status": "succeed", "detail": {did: True}},
        ]
        assert (await logs(clocked, world, sid, "?skip=1")).body == history[1:]
        assert (await logs(clocked, world, sid)).body == history[0]
        await device.close()

    run(scenario(), 60)


def test_retries_resend_all_or_only_the_failed(clocked: CloudThread, place: Place) -> None:
    world = make_world(clocked, devices=2)
    online, offline = world.dids
    place.clock.set(utc("2026-03-02T07:59:00"))

    async def scenario() -> None:
        (device,) = await devices_online(clocked, world, 1)  # the second device stays offline for now
        every = await create(
            clocked, world, legacy_body(world.dids, date="2026-03-02", time="08:00", retry_count=2, retry_task="all")
        )
        only_failed = await create(
            clocked,
            world,
            legacy_body(
                world.dids, date="2026-03-02", time="09:00", temp=40, humi=50, retry_count=2, retry_task="failed"
            ),
        )
        first = p0_write(10, 20)
        # "all": the first attempt and both retries (30 s apart, the default interval) resend every command; the
        # online device gets three frames, the offline one none; the run ends failed.
        for at, expected in (
            ("2026-03-02T08:00:00", first),
            ("2026-03-02T08:00:29", None),
            ("2026-03-02T08:00:30", first),
            ("2026-03-02T08:01:00", first),
            ("2026-03-02T08:01:30", None),
            ("2026-03-02T08:30:00", None),
        ):
            place.clock.set(utc(at))
            await tick(clocked)
            if expected is None:
                await device.assert_silent(0.2)
            else:
                assert await device.next_command() == expected, at
        failed = {"datetime": "2026-03-02T08:00:00", "status": "failed", "detail": {online: True, offline: False}}
        assert (await logs(clocked, world, every)).body == failed
        attempts = clocked.call(clocked.storage.list_schedule_attempts(every))
        assert [(a.attempt, a.outcome, a.detail) for a in attempts] == [
            (n, "failed", {online: True, offline: False}) for n in (1, 2, 3)
        ]

        # "failed": the first attempt delivers to the online device; the retries send only to the offline one.
        place.clock.set(utc("2026-03-02T09:00:00"))
        await tick(clocked)
        assert await device.next_command() == p0_write(40, 50)
        midway = (await logs(clocked, world, only_failed)).body
        assert midway == {
            "datetime": "2026-03-02T09:00:00",
            "status": "failed",
            "detail": {online: True, offline: False},
        }
        place.clock.set(utc("2026-03-02T09:00:30"))
        await tick(clocked)
        await device.assert_silent(0.3)  # nothing resent to the device that has its command
        late = await answering(clocked, offline, PASSCODES[1])  # the second device comes online
        place.clock.set(utc("2026-03-02T09:01:00"))
        await tick(clocked)
        assert await late.next_command() == p0_write(41, 50)
        await device.assert_silent(0.3)
        done = {"datetime": "2026-03-02T09:00:00", "status": "succeed", "detail": {online: True, offline: True}}
        assert (await logs(clocked, world, only_failed)).body == done
        attempts = clocked.call(clocked.storage.list_schedule_attempts(only_failed))
        assert [(a.attempt, a.outcome, a.detail) for a in attempts] == [
            (1, "failed", {online: True, offline: False}),
            (2, "failed", {offline: False}),
            (3, "delivered", {offline: True}),
        ]
        await close_all([device, late])

    run(scenario(), 60)


def test_a_device_online_whose_mcu_does_not_answer_fails_the_run(place: Place) -> None:
    """Published is not delivered: an online device that never answers the 0x0093 (no 0x0094 within the ack
    timeout) is logged false and retried; the one that answers, true."""
    cloud = place.start(SchedulerSettings(tick_s=None, ack_timeout_s=0.5))
    try:
        world = make_world(cloud, devices=2)
        answers, silent = world.dids
        place.clock.set(utc("2026-03-02T07:59:00"))

        async def scenario() -> None:
            good = await answering(cloud, answers, PASSCODES[0])
            mute = await answering(cloud, silent, PASSCODES[1], answers=False)
            body = legacy_body(world.dids, date="2026-03-02", time="08:00", retry_count=1, retry_task="failed")
            sid = await create(cloud, world, body)
            place.clock.set(utc("2026-03-02T08:00:00"))
            await tick(cloud)
            assert await good.next_command() == p0_write(10, 20)
            assert await mute.next_command() == p0_write(11, 20)  # it arrived; nobody confirmed it
            place.clock.set(utc("2026-03-02T08:00:30"))
            await tick(cloud)
            assert await mute.next_command() == p0_write(11, 20)  # the retry: only the unconfirmed one
            await good.assert_silent(0.2)
            assert (await logs(cloud, world, sid)).body == {
                "datetime": "2026-03-02T08:00:00",
                "status": "failed",
                "detail": {answers: True, silent: False},
            }
            await close_all([good, mute])

        run(scenario(), 60)
    finally:
        cloud.close()


def test_deleting_a_schedule_stops_its_runs(clocked: CloudThread, place: Place) -> None:
    world = make_world(clocked, devices=1)
    did = world.dids[0]

    async def scenario() -> None:
        (device,) = await devices_online(clocked, world, 1)
        sid = await create(clocked, world, legacy_body([did], date=None, time="00:15", repeat="mon,tue"))
        place.clock.set(utc("2026-03-02T00:15:00"))
        await tick(clocked)
        assert await device.next_command() == p0_write(10, 20)
        deleted = await api(clocked, "DELETE", f"/app/scheduler/{sid}", appid=world.appid, token=world.token)
        assert deleted.status == 200
        for at in ("2026-03-03T00:15:00", "2026-03-09T00:15:00", "2026-03-10T00:15:00"):
            place.clock.set(utc(at))
            await tick(clocked)
        await device.assert_silent()
        assert (await logs(clocked, world, sid)).body["error_code"] == 9030
        await device.close()

    run(scenario())


def test_a_restart_runs_what_fell_due_within_the_grace_period_once_and_logs_the_rest_missed(place: Place) -> None:
    place.clock.set(utc("2026-03-02T07:00:00"))
    cloud = place.start()
    try:
        world = make_world(cloud, devices=1)
        did = world.dids[0]
        soon = run(create(cloud, world, legacy_body([did], date="2026-03-02", time="07:10")))
        later = run(create(cloud, world, legacy_body([did], date="2026-03-02", time="07:20", temp=77, humi=7)))
        weekly = run(create(cloud, world, legacy_body([did], date=None, time="07:20", repeat="mon")))
    finally:
        cloud.close()

    async def after_restart(cloud: CloudThread, expected: bytes | None) -> None:
        device = await answering(cloud, did, PASSCODES[0])
        await tick(cloud)
        if expected is None:
            await device.assert_silent()
        else:
            assert await device.next_command() == expected
            await device.assert_silent(0.3)
        await device.close()

    # Down from 07:00 to 07:13: "soon" (07:10) is 3 minutes late, within the 5-minute grace: it runs, once.
    place.clock.set(utc("2026-03-02T07:13:00"))
    cloud = place.start()
    try:
        run(after_restart(cloud, p0_write(10, 20)))
        assert run(logs(cloud, world, soon)).body == {
            "datetime": "2026-03-02T07:10:00",
            "status": "succeed",
            "detail": {did: True},
        }
    finally:
        cloud.close()
    # Down again until 07:26: "later" (07:20) and the weekly one are 6 minutes late: logged missed, nothing sent,
    # and "soon" is not run a second time.
    place.clock.set(utc("2026-03-02T07:26:00"))
    cloud = place.start()
    try:
        run(after_restart(cloud, None))
        missed = {"datetime": "2026-03-02T07:20:00", "status": "missed", "detail": {}}
        assert run(logs(cloud, world, later)).body == missed
        assert run(logs(cloud, world, weekly)).body == missed
        assert len(run(logs(cloud, world, soon, "?limit=5")).body) == 1
        # The weekly schedule goes on: next Monday it runs.
        place.clock.set(utc("2026-03-09T07:20:00"))
        run(after_restart(cloud, p0_write(10, 20)))
        assert [entry["status"] for entry in run(logs(cloud, world, weekly, "?limit=5")).body] == ["succeed", "missed"]
    finally:
        cloud.close()


def test_the_first_tick_after_a_restart_waits_for_the_devices_to_reconnect(place: Place) -> None:
    """The runner's own timer: a run that fell due while the cloud was down is made start_delay_s after start, by
    when a device that reconnects at once is online (the managed broker restarted with the cloud)."""
    place.clock.set(utc("2026-03-02T07:00:00"))
    cloud = place.start()
    try:
        world = make_world(cloud, devices=1)
        did = world.dids[0]
        sid = run(create(cloud, world, legacy_body([did], date="2026-03-02", time="07:01")))
    finally:
        cloud.close()
    place.clock.set(utc("2026-03-02T07:02:00"))  # the clock stands still: only the delay decides
    cloud = place.start(SchedulerSettings(tick_s=0.05, start_delay_s=2.5))

    async def scenario() -> None:
        device = await answering(cloud, did, PASSCODES[0])
        assert (await logs(cloud, world, sid)).body == {}  # not tried before the device was back
        assert await device.next_command() == p0_write(10, 20)
        await device.close()
        # The attempt is recorded just after its command left: wait for the record.
        for _ in range(100):
            if (latest := (await logs(cloud, world, sid)).body) != {}:
                break
            await asyncio.sleep(0.05)
        assert latest == {"datetime": "2026-03-02T07:01:00", "status": "succeed", "detail": {did: True}}

    try:
        run(scenario())
    finally:
        cloud.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ack_timeout_s": 0}, "ack timeout"),
        ({"ack_timeout_s": 21}, "ack timeout"),
        ({"ack_timeout_s": 5, "lease_s": 9}, "lease 9 s"),
    ],
)
def test_scheduler_settings_refuse_an_ack_timeout_the_lease_cannot_hold(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SchedulerSettings(**settings)
    SchedulerSettings(ack_timeout_s=5, lease_s=10)
