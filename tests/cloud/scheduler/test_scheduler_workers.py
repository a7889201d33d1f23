"""Two cloud workers (separate processes, each with its own storage engine, device bus and runner) on one real
PostgreSQL and one real Mosquitto: 1,000 schedules due in the same minute run exactly once each, and killing one
worker (SIGKILL) mid-run loses no schedule and runs none twice.

The devices are GAgent-like raw MQTT 3.1 clients that count the commands they get and answer each 0x0093 with its
0x0094, as GAgent does. Each schedule writes a P0 of
its own (device i % 10, temp i // 10), so a frame names its schedule. The workers share a clock that stands just
before the minute until everything is set up, then runs at the real rate (worker_main.GoClock).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
import sqlalchemy as sa

from gizdev.cloud.scheduler.recurrence import Recurrence
from gizdev.cloud.scheduler.runner import SchedulerSettings
from gizdev.cloud.storage import ScheduledCommand, ScheduleSpec, Storage
from gizdev.cloud.storage.tables import schedule_attempts, schedule_runs
from gizdev.schema.loader import parse_schema
from tests.cloud.broker_fixtures import RawMqtt31, free_port
from tests.cloud.scheduler.helpers import frame_0094, p0_write, parse_0093
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, world_searchable_dir
from tests.conftest import REPO_ROOT
from tests.guards import run
from tests.processes import stop

DEVICES = 10
SCHEDULES = 1000
BATCH = SchedulerSettings().batch  # runs a worker claims at once: at most this many die with the killed worker
LEASE_S = 3
GO_S = 2.0  # real seconds from the go to the minute (worker_main.HOLD_S)


@dataclass
class Broker:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture(name="plain_broker")
def plain_broker_fixture(mosquitto_binary: str) -> Iterator[Broker]:
    """A Mosquitto that takes any login on loopback: the workers' service connections need client ids of their
    own (the managed broker pins one), and presence comes from traffic, as with any external broker."""
    base = world_searchable_dir()
    port = free_port()
    config = base / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n")
    config.chmod(0o644)
    process = subprocess.Popen(
        [mosquitto_binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            assert time.monotonic() < deadline, "mosquitto did not listen"
            time.sleep(0.05)
        yield Broker(port, process)
    finally:
        stop(process)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Worker:
    process: subprocess.Popen[str]
    name: str
    log: IO[str]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


def launch(name: str, database: str, broker: Broker, base: Path, *, virtual_at: float) -> Worker:
    log = (base / f"{name}.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cloud.scheduler.worker_main",
            *("--database", database, "--broker", broker.url, "--data-dir", str(base / name), "--name", name),
            *("--go-file", str(base / "go"), "--virtual-at", repr(virtual_at), "--lease", str(LEASE_S)),
            *("--batch", str(BATCH)),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    return Worker(process, name, log)


async def ready(worker: Worker) -> None:
    assert worker.process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(worker.process.stdout.readline), 30)
    assert line.startswith("ready "), f"{worker.name} did not start: {line!r}; see its log"
    worker.name = line.split()[1]


async def seed(storage: Storage, minute: dt.datetime) -> tuple[list[str], dict[tuple[str, bytes], str]]:
    """The user, its devices and the schedules; {(did, frame): schedule id}."""
    await storage.add_app("schedapp", "secret", "test")
    parsed = parse_schema(TEMP_HUMI_SCHEMA)
    assert parsed.product_key is not None
    await storage.add_product(parsed.product_key, "0" * 32, parsed.name, parsed)
    user = await storage.create_user("schedapp", phone_id="worker-test")
    dids = []
    for index in range(DEVICES):
        registration = await storage.register_device(f"AABBCCDD{index:04X}", parsed.product_key, "PASS")
        await storage.bind(user.uid, registration.did)
        dids.append(registration.did)
    rule = Recurrence.once(minute.date(), minute.time()).to_json()
    expected: dict[tuple[str, bytes], str] = {}

    async def make(index: int) -> None:
        did, p0 = dids[index % DEVICES], p0_write(index // DEVICES, 0)
        spec = ScheduleSpec(
            did=None,
            request={"note": index},
            rule=rule,
            commands=(ScheduledCommand(did, p0),),
            retry_count=0,
            retry_task="all",
            enabled=True,
            next_due_at=int(minute.timestamp()),
        )
        expected[(did, p0)] = (await storage.create_schedule(user.uid, spec)).id

    for start in range(0, SCHEDULES, 8):  # a few at once: the connection pool's size, about
        await asyncio.gather(*(make(index) for index in range(start, min(start + 8, SCHEDULES))))
    return dids, expected


async def device(broker: Broker, did: str, heard: list[tuple[str, bytes]]) -> tuple[RawMqtt31, asyncio.Task[None]]:
    client = await RawMqtt31.open("127.0.0.1", broker.port)
    assert await client.connect(did, did, "PASS") == bytes.fromhex("20020000")
    await client.subscribe(1, f"app2dev/{did}/#")

    async def listen() -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, TimeoutError):
            while True:
                topic, payload = await client.read_publish(timeout_s=60)
                client_id, sn, p0 = parse_0093(topic, did, payload)
                heard.append((topic, p0))
                await client.publish(f"dev2app/{did}/{client_id}", frame_0094(sn))

    return client, asyncio.get_running_loop().create_task(listen())


async def counts(storage: Storage) -> dict[str, int]:
    async with storage.engine.connect() as conn:
        rows = (
            await conn.execute(sa.select(schedule_runs.c.status, sa.func.count()).group_by(schedule_runs.c.status))
        ).all()
    return {status: int(count) for status, count in rows}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_run_a_thousand_schedules_once_and_survive_a_kill(db_url: str, plain_broker: Broker) -> None:
    base = world_searchable_dir()
    minute_ts = math.ceil(time.time() / 60) * 60 + 60  # any minute: the workers' clock holds before it
    minute = dt.datetime.fromtimestamp(minute_ts, dt.UTC)
    workers: list[Worker] = []

    async def scenario() -> None:
        storage = await Storage.open(db_url)
        clients: list[tuple[RawMqtt31, asyncio.Task[None]]] = []
        try:
            for name in ("a", "b"):  # they start while the schedules are made: nothing is due before the minute
                workers.append(launch(name, db_url, plain_broker, base, virtual_at=minute_ts))
            dids, expected = await seed(storage, minute)
            await asyncio.gather(*(ready(worker) for worker in workers))
            heard: dict[str, list[tuple[str, bytes]]] = {did: [] for did in dids}
            for did in dids:
                clients.append(await device(plain_broker, did, heard[did]))
            await asyncio.sleep(0.5)  # both workers' buses subscribed before the devices speak
            for (client, _), did in zip(clients, dids, strict=True):
                await client.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091040000"))  # a report
            await asyncio.sleep(0.3)  # the reports reach both workers: the devices are online for both
            go = base / "go.tmp"
            go.write_text(repr(time.time() + GO_S))
            go.rename(base / "go")  # at once: a worker never reads half a number

            # Kill worker b once it has delivered some runs, while runs are still due.
            victim = workers[1]
            deadline = time.monotonic() + GO_S + 30
            while True:
                async with storage.engine.connect() as conn:
                    done_by_b = (
                        await conn.execute(sa.select(sa.func.count()).where(schedule_attempts.c.worker == victim.name))
                    ).scalar_one()
                if done_by_b >= BATCH:
                    break
                assert time.monotonic() < deadline, "worker b never ran anything"
                await asyncio.sleep(0.01)
            victim.process.kill()
            victim.process.wait(10)
            at_kill = await counts(storage)
            concluded_at_kill = at_kill.get("succeed", 0) + at_kill.get("failed", 0)
            assert concluded_at_kill < SCHEDULES, f"the kill came after the run: {at_kill}"

            # The survivor finishes the rest, and concludes the killed worker's claims once their lease is over.
            while (now := await counts(storage)).get("succeed", 0) + now.get("failed", 0) < SCHEDULES:
                assert time.monotonic() < deadline + LEASE_S, f"runs left undone: {now}"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # the last frames on their way

            async with storage.engine.connect() as conn:
                runs = (await conn.execute(sa.select(schedule_runs.c.schedule_id, schedule_runs.c.status))).all()
                attempts = (
                    await conn.execute(
                        sa.select(
                            schedule_attempts.c.worker, schedule_attempts.c.outcome, schedule_runs.c.schedule_id
                        ).join(schedule_runs, schedule_runs.c.id == schedule_attempts.c.run_id)
                    )
                ).all()
            status = {schedule_id: state for schedule_id, state in runs}
            assert len(runs) == len(status) == SCHEDULES  # one run per schedule, none lost
            frames = collections.Counter((did, payload) for did, got in heard.items() for _, payload in got)
            assert set(frames) <= set(expected), "a frame no schedule sent"
            assert max(frames.values()) == 1, "a schedule ran twice"
            ran = {expected[key] for key in frames}
            succeeded = {sid for sid, state in status.items() if state == "succeed"}
            assert succeeded <= ran  # every run logged succeed reached its device
            outcomes = collections.Counter((worker, outcome) for worker, outcome, _ in attempts)
            survivor, victim_name = workers[0].name, victim.name
            assert outcomes[(survivor, "delivered")] > 0 and outcomes[(victim_name, "delivered")] >= BATCH
            assert set(outcomes) <= {(survivor, "delivered"), (victim_name, "delivered"), (victim_name, "interrupted")}
            interrupted = {sid for _, outcome, sid in attempts if outcome == "interrupted"}
            # Only what the killed worker held when it died is concluded "interrupted" (failed, not resent: its
            # commands may have left); every other schedule ran once and is logged succeed.
            assert len(interrupted) <= BATCH
            assert {sid for sid, state in status.items() if state == "failed"} == interrupted
            assert len(succeeded) == SCHEDULES - len(interrupted)
            assert len(attempts) == SCHEDULES
        finally:
            for client, listener in clients:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
                await client.close()
            await storage.close()

    try:
        run(scenario(), 90)
    finally:
        for worker in workers:
            worker.close()
        shutil.rmtree(base, ignore_errors=True)
