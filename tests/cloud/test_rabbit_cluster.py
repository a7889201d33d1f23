"""The cloud on a real three-node RabbitMQ cluster (tests/cloud/rabbit_fixtures.py): GAgent's MQTT 3.1 logins and
topic ACLs through the cloud's HTTP auth, reports and controls through the MQTT plugin and AMQP, two workers sharing
the device queue, presence and control when a node stops and the devices move to another."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gizdev.cloud.deviceevents import DeviceEvent, DeviceFrame
from gizdev.cloud.scheduler.runner import SchedulerSettings
from gizdev.cloud.server import CloudConfig
from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.rabbit_fixtures import RabbitCluster, rabbit_cluster_fixture  # noqa: F401
from tests.cloud.scheduler.helpers import AnsweringDevice, Clock, utc
from tests.cloud.server_fixtures import FAST_KDF, TEMP_HUMI_SCHEMA, CloudThread
from tests.cloud.test_cloud_e2e import CONNACK_OK, PASSCODE, PK, register, user_with_binding, wait_for
from tests.cloud.test_open_api_seed import bind
from tests.guards import run

REPORT = "0000000306000091041537"  # 0x0091, P0 04 = report, temp 21, humi 55
CONTROL_TEMP_10 = "00000003070000900101" + "0a00"  # 0x0090, action 01, flags 01, temp 10 (humi 0)


def make_worker(
    cluster: RabbitCluster,
    database: str,
    data_dir: Path,
    *,
    http_port: int = 0,
    first_node: int = 1,
    clock: Callable[[], float] = time.time,
    scheduler: SchedulerSettings | None = None,
) -> CloudThread:
    """A cloud worker consuming the cluster over AMQP, first trying ``first_node`` (then the others in turn)."""
    urls = cluster.amqp_urls
    order = urls[first_node - 1 :] + urls[: first_node - 1]
    config = CloudConfig(
        data_dir=data_dir,
        http_port=http_port,
        database=database,
        kdf=FAST_KDF,
        amqp_urls=order,
        public_mqtt_host="127.0.0.1",
        public_mqtt_port=cluster.node(1).mqtt_port,
        scheduler=scheduler or SchedulerSettings(),
    )
    thread = CloudThread(config, clock)
    thread.start()
    return thread


@pytest.fixture(name="data_dir")
def data_dir_fixture() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gizdev-rabbit-cloud-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(name="worker")
def worker_fixture(rabbit_cluster: RabbitCluster, data_dir: Path) -> Iterator[CloudThread]:
    """One worker on SQLite, at the address the cluster's HTTP auth asks."""
    thread = make_worker(
        rabbit_cluster,
        f"sqlite+aiosqlite:///{data_dir / 'cloud.db'}",
        data_dir / "w1",
        http_port=rabbit_cluster.auth_port,
    )
    try:
        yield thread
    finally:
        thread.close()


def online(cloud: CloudThread, did: str) -> bool:
    return cloud.call(cloud.storage.get_device(did)).is_online


async def device_on(node_port: int, did: str, passcode: str = PASSCODE) -> RawMqtt31:
    """A GAgent-like device: MQTT 3.1 login, then its three subscriptions (each granted at QoS 0)."""
    device = await RawMqtt31.open("127.0.0.1", node_port)
    assert await device.connect(did, did, passcode) == CONNACK_OK
    for message_id, topic in enumerate((f"ser2cli_noti/{PK}", f"ser2cli_res/{did}", f"app2dev/{did}/#"), start=1):
        assert await device.subscribe(message_id, topic) == bytes([0x90, 3, 0, message_id, 0])
    return device


def test_cluster_is_three_nodes_on_loopback_only(rabbit_cluster: RabbitCluster) -> None:
    status = json.loads(rabbit_cluster.running_nodes())
    assert sorted(status["running_nodes"]) == [f"rabbit-{i}@localhost" for i in (1, 2, 3)]
    pids = {str(pid) for pid in rabbit_cluster.beam_pids()}
    assert len(pids) == 3
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines()
    ours = [line for line in listening if any(f"pid={pid}," in line for pid in pids) or '"epmd"' in line]
    assert len(ours) >= 3 * 3  # AMQP, MQTT and distribution of each node, at least
    for line in ours:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::1]:")), line


def test_gagent_logs_in_reports_and_is_controlled(worker: CloudThread, rabbit_cluster: RabbitCluster) -> None:
    assert worker.server.broker is None  # no managed Mosquitto next to RabbitMQ
    appid = worker.add_app()
    worker.add_product()
    did = register(worker)
    other = register(worker, mac="001122334455", passcode="OTHERPASS")
    token = user_with_binding(worker, appid, did)
    port = rabbit_cluster.node(1).mqtt_port

    async def scenario() -> None:
        intruder = await RawMqtt31.open("127.0.0.1", port)
        refused = await intruder.connect(did, did, "WRONGPASS")
        assert refused[:3] == b"\x20\x02\x00" and refused[3] in (4, 5)  # bad user name or password / not authorised
        await intruder.close()
        squatter = await RawMqtt31.open("127.0.0.1", port)  # the right password, another device's client id
        assert (await squatter.connect(other, did, PASSCODE))[3] in (4, 5)
        await squatter.close()

        device = await device_on(port, did)
        await asyncio.to_thread(wait_for, lambda: online(worker, did), 5.0, "online from the event exchange")
        await device.publish(f"dev2app/{did}", bytes.fromhex(REPORT))

        def latest() -> Any:
            return worker.api("GET", f"/app/devdata/{did}/latest", appid=appid, token=token)

        await asyncio.to_thread(wait_for, lambda: latest().body["attr"] != {}, 10.0, "the report stored")
        assert latest().body["attr"] == {"temp": 21, "humi": 55}

        control = await asyncio.to_thread(
            worker.api, "POST", f"/app/control/{did}", {"attrs": {"temp": 10}}, appid=appid, token=token
        )
        assert control.status == 200 and control.body == {}
        topic, payload = await device.read_publish()
        assert topic.startswith(f"app2dev/{did}/") and payload == bytes.fromhex(CONTROL_TEMP_10)

        await device.send(b"\xe0\x00")  # DISCONNECT
        await asyncio.to_thread(wait_for, lambda: not online(worker, did), 5.0, "offline after DISCONNECT")
        await device.close()

    run(scenario())


def test_another_devices_topics_are_refused(worker: CloudThread, rabbit_cluster: RabbitCluster) -> None:
    """RabbitMQ closes the connection of a device that subscribes or publishes beyond its own topics."""
    worker.add_product()
    did = register(worker)
    other = register(worker, mac="001122334455", passcode="OTHERPASS")
    port = rabbit_cluster.node(1).mqtt_port

    async def scenario() -> None:
        peer = await device_on(port, other, "OTHERPASS")
        try:
            for topic in (f"app2dev/{other}/#", "app2dev/#", f"ser2cli_res/{other}", "ser2cli_noti/#"):
                device = await device_on(port, did)
                try:
                    await device.subscribe(9, topic)
                    pytest.fail(f"subscribing {topic} was granted")
                except asyncio.IncompleteReadError:
                    pass  # closed by the broker
                finally:
                    await device.close()
            device = await device_on(port, did)
            try:
                await device.publish(f"dev2app/{other}", bytes.fromhex("0000000306000091046363"))
                with pytest.raises(asyncio.IncompleteReadError):
                    await device.read_packet()
            finally:
                await device.close()
            await peer.publish(f"dev2app/{other}", bytes.fromhex("0000000306000091040102"))
            await asyncio.to_thread(
                wait_for, lambda: worker.call(worker.storage.get_latest(other)) is not None, 10.0, "the real report"
            )
            latest = worker.call(worker.storage.get_latest(other))
            assert latest is not None and latest.attrs == {"temp": 1, "humi": 2}  # only the real device's report
        finally:
            await peer.close()

    run(scenario())


@pytest.fixture(name="workers")
def workers_fixture(
    rabbit_cluster: RabbitCluster, db_url: str, data_dir: Path
) -> Iterator[tuple[CloudThread, CloudThread]]:
    """Two workers on one PostgreSQL: the first answers the cluster's HTTP auth and consumes through node 2,
    the second through node 3."""
    first = make_worker(rabbit_cluster, db_url, data_dir / "w1", http_port=rabbit_cluster.auth_port, first_node=2)
    try:
        second = make_worker(rabbit_cluster, db_url, data_dir / "w2", first_node=3)
    except BaseException:
        first.close()
        raise
    try:
        yield first, second
    finally:
        second.close()
        first.close()


class FrameCounter:
    """A device listener (the realtime hub's interface) that counts the frames it hears."""

    def __init__(self) -> None:
        self.frames = 0

    def device_event(self, event: DeviceEvent) -> None:
        if isinstance(event, DeviceFrame):
            self.frames += 1


def stats(*workers: CloudThread) -> list[int]:
    return [worker.server.bus.stats.reports for worker in workers if worker.server.bus is not None]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_store_each_report_once(
    workers: tuple[CloudThread, CloudThread], rabbit_cluster: RabbitCluster
) -> None:
    first, second = workers
    first.add_product()
    dids = [register(first, mac=f"0000000000{i:02X}", passcode=f"PASS{i:06d}") for i in range(4)]
    per_device = 25
    listeners = [FrameCounter(), FrameCounter()]
    for worker, listener in zip(workers, listeners, strict=True):  # as the realtime hub listens
        assert worker.server.bus is not None
        worker.server.bus.add_listener(listener)

    async def scenario() -> None:
        devices = [
            await device_on(rabbit_cluster.node(1 + i % 3).mqtt_port, did, f"PASS{i:06d}") for i, did in enumerate(dids)
        ]
        try:
            for n in range(per_device):
                for device, did in zip(devices, dids, strict=True):
                    await device.publish(f"dev2app/{did}", bytes.fromhex("000000030600009104") + bytes([n, 100 - n]))
            expected = per_device * len(dids)
            await asyncio.to_thread(
                wait_for, lambda: sum(stats(first, second)) >= expected, 20.0, f"{expected} reports stored"
            )
            await asyncio.sleep(0.5)  # a duplicate would arrive now
            counts = stats(first, second)
            assert sum(counts) == expected, counts
            assert all(count > 0 for count in counts), counts  # the queue is shared, not copied or held by one
            # Each worker's listeners hear every report, whichever worker stored it.
            await asyncio.to_thread(
                wait_for, lambda: min(c.frames for c in listeners) >= expected, 10.0, "every frame on both workers"
            )
            assert [listener.frames for listener in listeners] == [expected, expected]
            for did in dids:  # two workers may store a device's reports out of order: one of its reports
                latest = first.call(first.storage.get_latest(did))
                assert latest is not None and latest.attrs["temp"] + latest.attrs["humi"] == 100
        finally:
            for device in devices:
                await device.close()

    run(scenario())


def bus_online(worker: CloudThread, did: str) -> bool:
    bus = worker.server.bus
    return bus is not None and bus.is_online(did)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_node_stops_devices_move_presence_and_control_recover(
    workers: tuple[CloudThread, CloudThread], rabbit_cluster: RabbitCluster
) -> None:
    """Node 2 (the first worker's AMQP node, and the devices') stops mid-run: the devices reconnect to node 1, the
    first worker to node 3; both workers end with the devices online, reports are stored and controls arrive."""
    first, second = workers
    appid = first.add_app()
    first.add_product()
    dids = [register(first, mac=f"0000000001{i:02X}", passcode=f"MOVE{i:06d}") for i in range(2)]
    token = user_with_binding(first, appid, dids[0], "MOVE000000")

    def everywhere_online(did: str) -> bool:
        return online(first, did) and bus_online(first, did) and bus_online(second, did)

    async def scenario() -> None:
        devices = [await device_on(rabbit_cluster.node(2).mqtt_port, did, f"MOVE{i:06d}") for i, did in enumerate(dids)]
        moved: list[RawMqtt31] = []
        try:
            for did in dids:
                await asyncio.to_thread(wait_for, lambda did=did: everywhere_online(did), 10.0, "online on node 2")
            before = sum(stats(first, second))
            for device, did in zip(devices, dids, strict=True):
                await device.publish(f"dev2app/{did}", bytes.fromhex(REPORT))
            await asyncio.to_thread(wait_for, lambda: sum(stats(first, second)) >= before + 2, 10.0, "reports")

            await asyncio.to_thread(rabbit_cluster.stop_node, 2)
            for device in devices:  # the node closed them
                with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                    await device.read_packet(timeout_s=10.0)
            # They come back on node 1, as GAgent does on its next attempt (a load balancer in front of the nodes).
            moved = [
                await device_on(rabbit_cluster.node(1).mqtt_port, did, f"MOVE{i:06d}") for i, did in enumerate(dids)
            ]
            for did in dids:
                await asyncio.to_thread(wait_for, lambda did=did: everywhere_online(did), 20.0, "online on node 1")
            first_bus = first.server.bus
            assert first_bus is not None
            await asyncio.to_thread(wait_for, lambda: first_bus.connected, 30.0, "worker 1 on another node")
            assert first_bus.stats.connects >= 2  # it lost node 2 and consumes through another

            before = sum(stats(first, second))
            for device, did in zip(moved, dids, strict=True):
                await device.publish(f"dev2app/{did}", bytes.fromhex(REPORT))
            await asyncio.to_thread(wait_for, lambda: sum(stats(first, second)) >= before + 2, 20.0, "reports after")

            for worker in (first, second):  # a control through either worker reaches the moved device
                control = await asyncio.to_thread(
                    worker.api, "POST", f"/app/control/{dids[0]}", {"attrs": {"temp": 10}}, appid=appid, token=token
                )
                assert control.status == 200 and control.body == {}, control
                topic, payload = await moved[0].read_publish(timeout_s=10.0)
                assert topic.startswith(f"app2dev/{dids[0]}/") and payload == bytes.fromhex(CONTROL_TEMP_10)

            # Presence still follows the broker: a clean disconnect on the new node takes the device offline.
            await moved[1].send(b"\xe0\x00")
            await asyncio.to_thread(wait_for, lambda: not online(first, dids[1]), 10.0, "offline after DISCONNECT")
            await asyncio.to_thread(wait_for, lambda: not bus_online(second, dids[1]), 10.0, "offline for worker 2")
            assert online(first, dids[0])
        finally:
            for device in (*devices, *moved):
                await device.close()
            await asyncio.to_thread(rabbit_cluster.restart_node, 2)  # the other tests of the module want three

    run(scenario())


SCHEDULES = 60


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_schedules_run_once_on_two_workers_while_a_node_stops(
    rabbit_cluster: RabbitCluster, db_url: str, data_dir: Path
) -> None:
    """60 schedules due in one minute, two workers ticking at once, node 2 (worker 1's AMQP node and two of the three
    devices') stopped as the minute comes: each due time is one run, each attempt is made by one worker, no command
    arrives more often than attempts sent it, and the retries reach the devices once they are back on node 1."""
    clock = Clock(utc("2026-03-02T07:59:00"))
    manual = SchedulerSettings(tick_s=None, ack_timeout_s=2.0, lease_s=10)
    first = make_worker(
        rabbit_cluster,
        db_url,
        data_dir / "w1",
        http_port=rabbit_cluster.auth_port,
        first_node=2,
        clock=clock,
        scheduler=manual,
    )
    second = make_worker(rabbit_cluster, db_url, data_dir / "w2", first_node=3, clock=clock, scheduler=manual)
    try:
        appid = first.add_app()
        first.add_product()
        passcodes = [f"SCHED{i:05d}" for i in range(3)]
        dids = [register(first, mac=f"0000000002{i:02X}", passcode=code) for i, code in enumerate(passcodes)]
        token = user_with_binding(first, appid, dids[0], passcodes[0])
        for did, code in zip(dids[1:], passcodes[1:], strict=True):
            bind(first, appid, token, did, code)
        schedule_of: dict[tuple[str, bytes], str] = {}
        for n in range(SCHEDULES):
            did = dids[n % 3]
            body = {
                "date": "2026-03-02",
                "time": "08:00",
                "repeat": "none",
                "task": [{"did": did, "product_key": PK, "attrs": {"temp": n}}],
                "retry_count": 3,
                "retry_task": "failed",
            }
            created = first.api("POST", "/app/scheduler", body, appid=appid, token=token)
            assert created.status == 201, created
            schedule_of[(did, bytes([0x01, 0x01, n, 0]))] = created.body["id"]

        def ticks() -> list[Any]:
            """Both workers' runners, to tick at once."""
            pending = []
            for worker in (first, second):
                runner = worker.server.scheduler
                assert runner is not None
                pending.append(worker.run(runner.tick()))
            return pending

        async def scenario() -> list[AnsweringDevice]:
            ports = [rabbit_cluster.node(node).mqtt_port for node in (2, 2, 1)]
            devices = [
                AnsweringDevice(await device_on(port, did, code), did).start()
                for port, did, code in zip(ports, dids, passcodes, strict=True)
            ]
            for did in dids:
                await asyncio.to_thread(
                    wait_for, lambda did=did: bus_online(first, did) and bus_online(second, did), 10.0, "online"
                )
            clock.set(utc("2026-03-02T08:00:00"))
            # The minute comes while node 2 stops: both workers tick at once.
            await asyncio.gather(asyncio.to_thread(rabbit_cluster.stop_node, 2), *ticks())
            # GAgent reconnects: the two devices of node 2 come back on node 1.
            for index in (0, 1):
                devices.append(AnsweringDevice(await device_on(ports[2], dids[index], passcodes[index]), dids[index]))
                devices[-1].start()
            for did in dids:
                await asyncio.to_thread(
                    wait_for, lambda did=did: bus_online(first, did) and bus_online(second, did), 30.0, "back online"
                )
            first_bus = first.server.bus
            assert first_bus is not None
            await asyncio.to_thread(wait_for, lambda: first_bus.connected, 30.0, "worker 1 on another node")
            for seconds in (30, 60, 90):  # the retries, 30 s apart
                clock.set(utc("2026-03-02T08:00:00") + dt.timedelta(seconds=seconds))
                await asyncio.gather(*ticks())
            await asyncio.sleep(0.3)
            for device in devices:
                await device.close()
            return devices

        try:
            devices = run(scenario(), 120)
        finally:
            rabbit_cluster.restart_node(2)  # the other tests of the module want three

        arrived: Counter[tuple[str, bytes]] = Counter()
        for device in devices:
            while not device.commands.empty():
                arrived[(device.did, device.commands.get_nowait())] += 1
        assert set(arrived) <= set(schedule_of), "a command no schedule sent"
        runs_by_schedule: Counter[str] = Counter()
        for (did, _p0), schedule_id in schedule_of.items():
            attempts = first.call(first.storage.list_schedule_attempts(schedule_id))
            numbers = [attempt.attempt for attempt in attempts]
            assert numbers == list(range(1, len(numbers) + 1)), f"{schedule_id}: attempts {numbers}"
            assert all(len(a.detail) == 1 for a in attempts), attempts  # only this schedule's device
            sent = sum(1 for a in attempts if did in a.detail)
            assert arrived[(did, _p0)] <= sent, f"{schedule_id} arrived more often than sent"
            runs = first.call(first.storage.list_schedule_runs(schedule_id, limit=10))
            runs_by_schedule[schedule_id] = len(runs)
            assert [run_.status for run_ in runs] == ["succeed"], (schedule_id, runs, attempts)
            assert arrived[(did, _p0)] >= 1
        assert set(runs_by_schedule.values()) == {1}
        workers_seen = {
            a.worker for sid in schedule_of.values() for a in first.call(first.storage.list_schedule_attempts(sid))
        }
        assert len(workers_seen) == 2, workers_seen  # both workers ran schedules
    finally:
        second.close()
        first.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gizdev.cli.main", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _http(port: int, method: str, path: str, body: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_gizdev_cloud_serve_on_the_cluster(rabbit_cluster: RabbitCluster, data_dir: Path) -> None:
    """The command line as deployed: ``gizdev cloud serve --amqp-url … --public-mqtt …`` answers the cluster's
    HTTP auth, provisions devices to the public MQTT address and sees a device log in on node 3."""
    node3 = rabbit_cluster.node(3)
    cloud_dir = data_dir / "cli"
    err_path = data_dir / "serve.err"
    command = [
        sys.executable, "-m", "gizdev.cli.main", "cloud", "serve", "--data-dir", str(cloud_dir),
        "--http", f"127.0.0.1:{rabbit_cluster.auth_port}",
        *(option for url in reversed(rabbit_cluster.amqp_urls) for option in ("--amqp-url", url)),
        "--public-mqtt", f"127.0.0.1:{node3.mqtt_port}",
    ]  # fmt: skip
    with err_path.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(lambda: "gizdev cloud: Open API on" in err_path.read_text() or proc.poll() is not None, 60, "up")
        assert proc.poll() is None, err_path.read_text()
        said = err_path.read_text()
        assert "RabbitMQ (AMQP 127.0.0.1:" in said and rabbit_cluster.service_password not in said, said
        assert not (cloud_dir / "broker").exists()  # no managed Mosquitto
        schema = data_dir / "product.json"
        schema.write_text(json.dumps(TEMP_HUMI_SCHEMA))
        added = _cli("cloud", "product", "add", str(schema), "--data-dir", str(cloud_dir))
        assert added.returncode == 0, added.stderr
        status, body = _http(
            rabbit_cluster.auth_port, "POST", "/dev/devices", f"passcode={PASSCODE}&mac=AABBCCDDEE77&product_key={PK}"
        )
        assert status == 201, body
        did = body.removeprefix("did=")
        status, body = _http(rabbit_cluster.auth_port, "GET", f"/dev/devices/{did}")
        assert status == 200 and f"host=127.0.0.1&port={node3.mqtt_port}&" in body, body

        def listed_online() -> bool:
            listed = _cli("cloud", "device", "list", "--data-dir", str(cloud_dir))
            return any(d["did"] == did and d["is_online"] for d in json.loads(listed.stdout))

        async def scenario() -> None:
            device = await device_on(node3.mqtt_port, did)
            try:
                await asyncio.to_thread(wait_for, listed_online, 20.0, "online in `gizdev cloud device list`")
            finally:
                await device.close()

        run(scenario())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, err_path.read_text()
