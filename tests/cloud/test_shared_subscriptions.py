"""Several workers on one external Mosquitto: ``--worker-group`` subscribes the device topics as ``$share/<group>/``
(Mosquitto 2 supports shared subscriptions for MQTT 3.1.1 clients), so each device message is handled once."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gizdev.cloud.broker import ManagedMosquitto
from gizdev.cloud.feeds.mqtt import MqttFeed
from gizdev.cloud.scheduler.runner import SchedulerSettings
from tests.cloud.broker_fixtures import BrokerThread, RawMqtt31, free_port
from tests.cloud.realtime_helpers import new_user, ws_client
from tests.cloud.scheduler.helpers import AnsweringDevice, Clock, utc
from tests.cloud.server_fixtures import CloudThread, make_cloud, world_searchable_dir
from tests.cloud.test_cloud_e2e import (
    CONNACK_OK,
    PASSCODE,
    PK,
    device_online,
    register,
    user_with_binding,
    wait_for,
)
from tests.guards import run


@pytest.fixture(name="open_mosquitto")
def open_mosquitto_fixture(mosquitto_binary: str) -> Iterator[BrokerThread]:
    """A Mosquitto that does not pin client ids to usernames: each worker logs in as the service user with its own."""
    base = world_searchable_dir()
    thread = BrokerThread(
        ManagedMosquitto(base / "broker", port=free_port(), binary=mosquitto_binary, pin_client_ids=False)
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.close()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def workers_of_group(
    db_url: str, broker: BrokerThread, names: tuple[str, ...], **overrides: Any
) -> Iterator[list[CloudThread]]:
    """Workers in the group ``gizdev`` on ``broker``, logged in as its service user; closed afterwards."""
    url = broker.settings.url(show_password=True)
    base = world_searchable_dir()
    workers: list[CloudThread] = []
    try:
        for name in names:
            workers.append(make_cloud(db_url, base / name, broker_url=url, worker_group="gizdev", **overrides))
        yield workers
    finally:
        for worker in workers:
            worker.close()
        shutil.rmtree(base, ignore_errors=True)


def group_of_two(
    db_url: str, broker: BrokerThread, **overrides: Any
) -> contextlib.AbstractContextManager[list[CloudThread]]:
    return workers_of_group(db_url, broker, ("w1", "w2"), **overrides)


@contextlib.contextmanager
def late_worker(db_url: str, broker: BrokerThread, **overrides: Any) -> Iterator[CloudThread]:
    """One more worker of the group, started now: it has heard none of the frames sent before."""
    with workers_of_group(db_url, broker, ("late",), **overrides) as (worker,):
        yield worker


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_in_a_group_store_each_report_once(db_url: str, open_mosquitto: BrokerThread) -> None:
    with group_of_two(db_url, open_mosquitto) as workers:
        first = workers[0]
        feeds = [w.server.bus.feed for w in workers if w.server.bus is not None]
        assert all(isinstance(feed, MqttFeed) for feed in feeds)
        assert len({feed.client_id for feed in feeds if isinstance(feed, MqttFeed)}) == 2  # one session each
        first.add_product()
        did = register(first)
        open_mosquitto.add_device_sync(did, PASSCODE, PK)

        def reports() -> list[int]:
            return [w.server.bus.stats.reports for w in workers if w.server.bus is not None]

        async def scenario() -> None:
            device = await RawMqtt31.open("127.0.0.1", open_mosquitto.port)
            try:
                assert await device.connect(did, did, PASSCODE) == CONNACK_OK
                for n in range(40):
                    await device.publish(f"dev2app/{did}", bytes.fromhex("000000030600009104") + bytes([n, 1]))
                await asyncio.to_thread(wait_for, lambda: sum(reports()) >= 40, 10.0, "40 reports stored")
                await asyncio.sleep(0.5)  # a copy to the other worker would arrive now
            finally:
                await device.close()

        run(scenario())
        counts = reports()
        assert sum(counts) == 40 and all(count > 0 for count in counts), counts


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_realtime_clients_of_every_worker_hear_every_report(db_url: str, open_mosquitto: BrokerThread) -> None:
    """Each report is handled by one worker, but a WebSocket client on any worker gets it (behind a load balancer
    an app's WebSocket lands on either): each worker observes every frame on a connection of its own."""
    with group_of_two(db_url, open_mosquitto) as workers:
        assert all(w.server.bus is not None and w.server.bus.feed.fans_out for w in workers)
        first = workers[0]
        appid = first.add_app()
        first.add_product()
        did = register(first)
        uid, token = new_user(first, appid, "carol", (did, PASSCODE))
        open_mosquitto.add_device_sync(did, PASSCODE, PK)

        def reports() -> list[int]:
            return [w.server.bus.stats.reports for w in workers if w.server.bus is not None]

        async def scenario() -> None:
            async with ws_client(workers[0]) as ws1, ws_client(workers[1]) as ws2:
                for ws in (ws1, ws2):
                    await ws.login(appid, uid, token)
                device = await RawMqtt31.open("127.0.0.1", open_mosquitto.port)
                try:
                    assert await device.connect(did, did, PASSCODE) == CONNACK_OK
                    for n in range(20):
                        await device.publish(f"dev2app/{did}", bytes.fromhex("000000030600009104") + bytes([n, 1]))
                    for ws in (ws1, ws2):
                        # The device's first frame tells every worker it is online, whichever handled it: each
                        # client hears so once, before any report (after "offline", if its subscription at login
                        # came before that frame).
                        statuses = []
                        while (message := await ws.receive())["cmd"] == "s2c_online_status":
                            assert message["data"]["did"] == did
                            statuses.append(message["data"]["online"])
                        assert statuses in ([False, True], [True]), statuses
                        heard = []
                        for n in range(20):
                            noti = message if n == 0 else await ws.receive()
                            assert noti["cmd"] == "s2c_noti", noti
                            assert noti["data"]["did"] == did
                            heard.append(noti["data"]["attrs"]["temp"])
                        # Every report, in the order sent, none twice (a worker's own share is not heard again).
                        assert heard == list(range(20))
                        await ws.nothing(0.5)
                finally:
                    await device.close()

        run(scenario())
        counts = reports()
        assert sum(counts) == 20 and all(count > 0 for count in counts), counts


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_each_worker_of_a_group_hears_the_answers_to_its_commands(db_url: str, open_mosquitto: BrokerThread) -> None:
    """A 0x0094 on dev2app/<did>/<clientid> would go to any one worker of the group; each worker sends its 0x0093
    under a <clientid> of its own and subscribes it unshared, so every confirmed command is confirmed to its
    sender (the scheduler's delivery)."""
    with group_of_two(db_url, open_mosquitto) as workers:
        buses = [w.server.bus for w in workers]
        assert all(bus is not None for bus in buses)
        assert len({bus.reply_client_id for bus in buses if bus is not None}) == 2
        workers[0].add_product()
        did = register(workers[0])
        open_mosquitto.add_device_sync(did, PASSCODE, PK)

        async def scenario() -> None:
            client = await RawMqtt31.open("127.0.0.1", open_mosquitto.port)
            assert await client.connect(did, did, PASSCODE) == CONNACK_OK
            await client.subscribe(1, f"app2dev/{did}/#")
            device = AnsweringDevice(client, did).start()
            try:
                for worker in workers:
                    for n in range(10):
                        bus = worker.server.bus
                        assert bus is not None
                        assert await worker.run(bus.deliver(did, bytes([0x01, 0x01, n, 0]), timeout_s=2.0))
                        assert await device.next_command() == bytes([0x01, 0x01, n, 0])
            finally:
                await device.close()

        run(scenario(), 90)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_every_worker_of_a_group_hears_a_device_and_controls_it(db_url: str, open_mosquitto: BrokerThread) -> None:
    """One worker handles each frame, all observe it: each holds the device online from its traffic; a worker that
    starts afterwards has it from the database."""
    with group_of_two(db_url, open_mosquitto) as workers:
        first = workers[0]
        appid = first.add_app()
        first.add_product()
        did = register(first)
        token = user_with_binding(first, appid, did)
        open_mosquitto.add_device_sync(did, PASSCODE, PK)

        def heard() -> list[bool]:
            return [w.server.bus.is_online(did) for w in workers if w.server.bus is not None]

        async def scenario() -> None:
            device = await RawMqtt31.open("127.0.0.1", open_mosquitto.port)
            stack = contextlib.ExitStack()
            try:
                assert await device.connect(did, did, PASSCODE) == CONNACK_OK
                assert await device.subscribe(1, f"app2dev/{did}/#") == bytes.fromhex("9003000100")
                await device.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091041537"))
                await asyncio.to_thread(wait_for, lambda: device_online(first, did), 5.0, "online in the database")
                await asyncio.to_thread(wait_for, lambda: heard() == [True, True], 5.0, "the report heard by both")
                late = await asyncio.to_thread(stack.enter_context, late_worker(db_url, open_mosquitto))
                assert late.server.bus is not None and late.server.bus.is_online(did)
                for worker in [*workers, late]:
                    await control_reaches(worker, device, did, appid, token)
            finally:
                await device.close()
                await asyncio.to_thread(stack.close)

        run(scenario())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_worker_that_missed_a_devices_frames_asks_the_database(db_url: str, open_mosquitto: BrokerThread) -> None:
    """No worker heard the device here (it sent nothing): what the database says decides, read fresh, as when a
    worker's observing connection was down while another worker stored the device online."""
    with group_of_two(db_url, open_mosquitto) as workers:
        first = workers[0]
        appid = first.add_app()
        first.add_product()
        did = register(first)
        token = user_with_binding(first, appid, did)
        open_mosquitto.add_device_sync(did, PASSCODE, PK)

        async def scenario() -> None:
            device = await RawMqtt31.open("127.0.0.1", open_mosquitto.port)
            try:
                assert await device.connect(did, did, PASSCODE) == CONNACK_OK
                assert await device.subscribe(1, f"app2dev/{did}/#") == bytes.fromhex("9003000100")
                for worker in workers:
                    refused = await asyncio.to_thread(
                        worker.api, "POST", f"/app/control/{did}", {"attrs": {"temp": 10}}, appid=appid, token=token
                    )
                    assert (refused.status, refused.body["error_code"]) == (400, 9042), refused  # offline, as stored
                assert await first.run(first.storage.set_online(did, True, int(time.time())))
                for worker in workers:
                    assert worker.server.bus is not None and not worker.server.bus.is_online(did)
                    await control_reaches(worker, device, did, appid, token)
            finally:
                await device.close()

        run(scenario())


async def control_reaches(worker: CloudThread, device: RawMqtt31, did: str, appid: str, token: str) -> None:
    """POST /app/control through ``worker``: 200, and the frame reaches ``device``."""
    reply = await asyncio.to_thread(
        worker.api, "POST", f"/app/control/{did}", {"attrs": {"temp": 10}}, appid=appid, token=token
    )
    assert reply.status == 200 and reply.body == {}, reply
    topic, payload = await device.read_publish()
    assert topic.startswith(f"app2dev/{did}/usr")  # the user's client id (control.app_client_id)
    assert payload == bytes.fromhex("00000003070000900101" + "0a00")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_schedule_run_by_the_worker_that_never_heard_the_device_reaches_it(
    db_url: str, open_mosquitto: BrokerThread
) -> None:
    """The runner of any worker asks whether a device is reachable as /app/control does: a worker of the group
    that never heard the device (online in the database only) still delivers its scheduled command (and hears the
    0x0094 for it)."""
    clock = Clock(utc("2026-03-02T07:59:00"))
    with group_of_two(db_url, open_mosquitto, clock=clock, scheduler=SchedulerSettings(tick_s=None)) as workers:
        first = workers[0]
        appid = first.add_app()
        first.add_product()
        did = register(first)
        token = user_with_binding(first, appid, did)
        open_mosquitto.add_device_sync(did, PASSCODE, PK)
        task = {"did": did, "product_key": PK, "attrs": {"temp": 10}}
        body = {"date": "2026-03-02", "time": "08:00", "repeat": "none", "task": [task], "retry_count": 0}
        created = first.api("POST", "/app/scheduler", body | {"retry_task": "all"}, appid=appid, token=token)
        assert created.status == 201, created

        async def scenario() -> None:
            client = await RawMqtt31.open("127.0.0.1", open_mosquitto.port)
            assert await client.connect(did, did, PASSCODE) == CONNACK_OK
            await client.subscribe(1, f"app2dev/{did}/#")
            # As another worker stores a device it heard while this one's observing connection was down.
            assert await first.run(first.storage.set_online(did, True, int(clock())))
            device = AnsweringDevice(client, did).start()
            try:
                deaf = workers[1]
                assert deaf.server.bus is not None and not deaf.server.bus.is_online(did)
                clock.set(utc("2026-03-02T08:00:00"))
                scheduler = deaf.server.scheduler
                assert scheduler is not None
                report = await deaf.run(scheduler.tick())
                assert (report.attempts, report.delivered) == (1, 1)
                assert await device.next_command() == bytes.fromhex("01010a00")
            finally:
                await device.close()

        run(scenario())
        logs = first.api("GET", f"/app/scheduler/{created.body['id']}/logs", appid=appid, token=token)
        assert logs.body == {"datetime": "2026-03-02T08:00:00", "status": "succeed", "detail": {did: True}}
