#!/usr/bin/env python3
"""Load generator for the local cloud: N GAgent-like devices reporting, apps controlling them, for a bounded time.

It starts the cloud itself, as a user would (``gizdev cloud serve`` in a temporary data dir, loopback only): by
default one worker with the embedded defaults (SQLite + the managed Mosquitto). Then, through the public
interfaces only:

1. registers ``--devices`` devices over HTTP exactly as GAgent does (``POST /dev/devices``, form body), creates
   one app user and binds every device to it (``POST /app/bindings`` in batches);
2. connects every device over MQTT 3.1 (``MQIsdp``/3, username DID, password passcode, subscribe
   ``app2dev/<did>/#``), ``--connect-rate`` per second, and waits until the cloud counts them all online (the
   worker's ``gizdev_devices_online``);
3. for ``--duration`` seconds: every device publishes a 0x0091 status report every ``--report-interval`` seconds
   (phases spread evenly), and ``--control-rate`` controls per second go through ``POST /app/control/{did}`` to
   random devices; a control's latency is from just before its HTTP request is written to the moment the
   device's socket delivers the 0x0090 PUBLISH;
4. prints connected devices, reports stored per second (the cloud's own counter, from its metrics endpoint),
   control p50/p99, errors (refused connections, HTTP errors, controls that never arrived within 5 s, devices
   dropped), and the worker processes' CPU (% of one core, averaged over the run) and RSS.

``--json`` prints one JSON object instead: ``devices_connected``, ``reports_per_s``, ``control_p50_ms``,
``control_p99_ms``, ``errors``, ``cpu_percent``, ``rss_mib`` (sums over the workers), ``workers_cpu_percent`` and
``reports_by_worker`` (one entry per worker), and a few descriptive keys.

``--workers W`` > 1 (needs ``--database postgresql://…``) runs the scaled set-up of ``hw/deploy-scaled.md`` with
Mosquitto as the broker:

* one Mosquitto of the tool's own (``gizdev.cloud.broker.ManagedMosquitto`` with ``pin_client_ids=False``, on
  this tool's event loop), not managed by any worker;
* W workers, all alike: ``gizdev cloud serve --broker mqtt://<service login>@127.0.0.1:PORT --worker-group load
  --database …`` with a data dir and HTTP and metrics ports each; every worker logs in as the service user with
  a client id of its own, and each device message reaches one worker (``$share/load/…``);
* registrations go round-robin to the workers; then the tool gives its Mosquitto every device's login in one
  reload (``set_devices``; an external broker's accounts are not the cloud's to manage);
* an external Mosquitto sends the cloud no connection events, so the cloud knows a device is online from its
  traffic: each device sends one status report as soon as it is subscribed, and the tool waits until the database
  holds every device online (``gizdev cloud device list``: each worker's ``gizdev_devices_online`` counts only
  the devices it heard) and every one of those reports is stored; they are not counted in ``reports_per_s``;
* the controls go round-robin to the workers' HTTP ports, so about (W-1)/W of them reach a device through a
  worker that never handled its frames (Mosquitto deals the shared messages out in turn, and the reports come in a
  fixed order: a device's reports tend to reach the same worker), which then finds it online in the database.
  ``broker_cpu_percent`` is the Mosquitto's CPU (not in ``cpu_percent``).

    .venv/bin/python tools/load_cloud.py --devices 10000 --report-interval 60 --control-rate 50 --duration 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import free_port, machine

from gizdev.cloud.broker import DeviceAccount, ManagedMosquitto
from gizdev.codec.envelope import encode_envelope
from gizdev.codec.p0 import Product, load_product
from gizdev.mqtt.packets import MQTT_31, PUBLISH, SUBSCRIBE, connect_packet, encode_string, packet
from gizdev.protocol.identifiers import new_passcode
from gizdev.sim.mcu import initial_state

ROOT = Path(__file__).resolve().parent.parent
GOKIT = ROOT / "protocols" / "gokit.json"
MAX_DEVICES = 60_000  # bounded: one process holds every device's socket
MAX_DURATION_S = 3_600
ARRIVAL_TIMEOUT_S = 5.0
# Devices register independently; the managed broker reloads its accounts once per burst (~0.7 s at 10,000
# devices), so what bounds the registration rate is how many wait at once: 32 at a time took 238 s for 10,000.
REGISTER_CONCURRENCY = 200
WORKER_GROUP = "load"
ONLINE_TIMEOUT_S = 60.0  # plus ONLINE_S_PER_DEVICE for each device: a burst of connects takes its time to store
ONLINE_S_PER_DEVICE = 0.02
HELLO_AGAIN_S = 10.0
KEEPALIVE_S = 120
PINGREQ = bytes([0xC0, 0x00])
CONTROL_BODY = json.dumps({"attrs": {"LED_OnOff": True, "Motor_Speed": 3}}).encode()


@dataclass
class Device:
    """A GAgent-like MQTT 3.1 client: reports on a timer, timestamps every PUBLISH it receives."""

    did: str
    passcode: str
    arrivals: asyncio.Queue[float] = field(default_factory=asyncio.Queue)
    writer: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    connected: bool = False
    dropped: bool = False

    async def connect(self, port: int, hello: bytes | None = None) -> None:
        """Log in and subscribe; then publish ``hello`` (a report) if given: the only way a cloud on an external
        Mosquitto learns that the device is online."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer = writer
        writer.write(
            connect_packet(
                self.did, username=self.did, password=self.passcode, keepalive_s=KEEPALIVE_S, protocol=MQTT_31
            )
        )
        writer.write(
            packet(SUBSCRIBE, (1).to_bytes(2, "big") + encode_string(f"app2dev/{self.did}/#") + b"\x00", flags=2)
        )
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), 10)
        if connack != b"\x20\x02\x00\x00":
            raise ConnectionError(f"device {self.did} refused: CONNACK {connack.hex()}")
        await asyncio.wait_for(reader.readexactly(5), 10)  # SUBACK
        if hello is not None:
            self.say(hello)
            await writer.drain()
        self.connected = True
        self.tasks.append(asyncio.get_running_loop().create_task(self._read(reader)))
        self.tasks.append(asyncio.get_running_loop().create_task(self._ping(writer)))

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        """PINGREQ at half the keepalive, as GAgent does: the broker drops a client silent for 1.5 keepalives."""
        while not self.dropped:
            await asyncio.sleep(KEEPALIVE_S / 2)
            writer.write(PINGREQ)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(1)
                length, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                await reader.readexactly(length)
                if header[0] >> 4 == 3:
                    self.arrivals.put_nowait(time.perf_counter())
        except (asyncio.IncompleteReadError, ConnectionError):
            self.dropped = True

    def say(self, frame: bytes) -> None:
        """Publish one report now."""
        if self.writer is not None:
            self.writer.write(packet(PUBLISH, encode_string(f"dev2app/{self.did}") + frame))

    def start_reports(self, frame: bytes, interval_s: float, first_s: float, until: float) -> None:
        topic = f"dev2app/{self.did}"
        report_packet = packet(PUBLISH, encode_string(topic) + frame)

        async def report() -> None:
            await asyncio.sleep(first_s)
            while time.monotonic() < until and self.writer is not None and not self.dropped:
                self.writer.write(report_packet)
                await asyncio.sleep(interval_s)

        self.tasks.append(asyncio.get_running_loop().create_task(report()))

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.writer is not None:
            self.writer.close()


@dataclass
class Worker:
    """One ``gizdev cloud serve`` process."""

    process: subprocess.Popen[bytes]
    http_port: int
    metrics_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def gizdev(*args: str, data_dir: Path, database: str | None) -> Any:
    command = [sys.executable, "-m", "gizdev.cli.main", "cloud", *args, "--data-dir", str(data_dir)]
    if database:
        command += ["--database", database]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(done.stdout)


def start_worker(
    data_dir: Path, database: str | None, mqtt_port: int, broker: str | None, log: Path, *, devices: int
) -> Worker:
    """One ``gizdev cloud serve``: with its managed Mosquitto on ``mqtt_port``, or on the shared ``broker`` URL as
    one of the worker group."""
    http_port, metrics_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "gizdev.cli.main",
        "cloud",
        "serve",
        "--data-dir",
        str(data_dir),
        "--http",
        f"127.0.0.1:{http_port}",
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        # Every device registers from 127.0.0.1: the default limit (100 an hour per address, counted in the
        # database, so for all workers together) would refuse all but the first hundred with 9041.
        "--limit",
        f"device-registrations={max(100, devices)}/3600",
    ]
    command += ["--broker", broker, "--worker-group", WORKER_GROUP] if broker else ["--mqtt", f"127.0.0.1:{mqtt_port}"]
    if database:
        command += ["--database", database]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Worker(process, http_port, metrics_port, log)


async def wait_http(session: aiohttp.ClientSession, worker: Worker, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            tail = worker.log.read_text()[-2000:]
            raise SystemExit(f"the cloud worker exited ({worker.process.returncode}):\n{tail}")
        try:
            async with session.get(f"http://127.0.0.1:{worker.http_port}/errors") as reply:
                if reply.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"the cloud did not answer on port {worker.http_port} within {timeout_s:.0f} s")


async def scrape(session: aiohttp.ClientSession, worker: Worker) -> dict[str, float]:
    async with session.get(f"http://127.0.0.1:{worker.metrics_port}/metrics") as reply:
        text = await reply.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("gizdev_reports_stored_total ", "gizdev_devices_online ")):
            name, value = line.split()
            values[name] = float(value)
    return values


async def register(
    session: aiohttp.ClientSession, bases: list[str], product_key: str, count: int, errors: list[str]
) -> list[Device]:
    """Register ``count`` devices as GAgent does (form body, ``did=`` answer), REGISTER_CONCURRENCY at a time,
    the n-th through ``bases[n % len(bases)]``."""
    devices: list[Device] = []
    pending = iter(range(count))

    async def one() -> None:
        for index in pending:
            passcode = new_passcode()
            form = f"passcode={passcode}&mac={index:012X}&product_key={product_key}"
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            base = bases[index % len(bases)]
            async with session.post(f"{base}/dev/devices", data=form, headers=headers) as reply:
                text = await reply.text()
                if reply.status != 201 or not text.startswith("did="):
                    errors.append(f"register: {reply.status} {text[:80]}")
                    continue
            devices.append(Device(text[4:], passcode))

    await asyncio.gather(*(one() for _ in range(REGISTER_CONCURRENCY)))
    return devices


async def user_and_bindings(
    session: aiohttp.ClientSession, base: str, appid: str, devices: list[Device]
) -> dict[str, str]:
    async with session.post(
        f"{base}/app/users",
        json={"username": "load", "password": "load-test-1"},
        headers={"X-Gizwits-Application-Id": appid},
    ) as reply:
        user = await reply.json()
        if reply.status != 201:
            raise SystemExit(f"cannot create the load user: {user}")
    headers = {"X-Gizwits-Application-Id": appid, "X-Gizwits-User-token": user["token"]}
    for start in range(0, len(devices), 100):
        batch = [{"did": d.did, "passcode": d.passcode} for d in devices[start : start + 100]]
        async with session.post(f"{base}/app/bindings", json={"devices": batch}, headers=headers) as reply:
            bound = await reply.json()
            if reply.status != 200 or bound.get("failed"):
                raise SystemExit(f"binding failed: {bound}")
    return {**headers, "Content-Type": "application/json"}


async def connect_all(
    devices: list[Device], port: int, rate: float, errors: list[str], hello: bytes | None = None
) -> None:
    interval = 1.0 / rate
    started = time.monotonic()
    tasks = []
    for index, device in enumerate(devices):
        delay = started + index * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(device.connect(port, hello)))
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, BaseException):
            errors.append(f"connect: {type(outcome).__name__}: {outcome}")


async def control_load(
    session: aiohttp.ClientSession,
    *,
    workers: list[Worker],
    devices: list[Device],
    headers: dict[str, str],
    rate: float,
    until: float,
    errors: list[str],
) -> list[float]:
    latencies: list[float] = []
    online = [d for d in devices if d.connected]
    # One outstanding control per device at a time, so that an arrival is matched to its request.
    busy: set[str] = set()

    async def one(device: Device, worker: Worker) -> None:
        busy.add(device.did)
        try:
            while not device.arrivals.empty():
                device.arrivals.get_nowait()
            started = time.perf_counter()
            url = f"http://127.0.0.1:{worker.http_port}/app/control/{device.did}"
            async with session.post(url, data=CONTROL_BODY, headers=headers) as reply:
                if reply.status != 200:
                    errors.append(f"control: {reply.status} {(await reply.text())[:80]}")
                    return
                await reply.read()
            arrived = await asyncio.wait_for(device.arrivals.get(), ARRIVAL_TIMEOUT_S)
            latencies.append(arrived - started)
        except TimeoutError:
            errors.append(f"control to {device.did}: no frame within {ARRIVAL_TIMEOUT_S:.0f} s")
        except aiohttp.ClientError as exc:
            errors.append(f"control: {type(exc).__name__}: {exc}")
        finally:
            busy.discard(device.did)

    tasks: set[asyncio.Task[None]] = set()
    if rate <= 0 or not online:
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        return latencies
    next_at = time.monotonic()
    sent = 0
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        device = random.choice(online)
        if device.did in busy:
            device = next((d for d in random.sample(online, min(8, len(online))) if d.did not in busy), device)
        task = asyncio.get_running_loop().create_task(one(device, workers[sent % len(workers)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        next_at += 1.0 / rate
    if tasks:
        await asyncio.wait(tasks, timeout=ARRIVAL_TIMEOUT_S + 5)
    return latencies


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_online(
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    workers: list[Worker],
    data_dir: Path,
    *,
    connected: list[Device],
    hello: bytes,
) -> float:
    """Wait (up to ONLINE_TIMEOUT_S + ONLINE_S_PER_DEVICE per device) until the cloud holds ``wanted`` devices
    online; how many it holds.

    One worker with its managed Mosquitto: the worker's gauge, fed by the broker's connection events. A worker group
    on the tool's Mosquitto: each worker's gauge counts only the devices whose frames it handled (a device's hello
    report went to one of them), so the database is asked, which every worker writes; and each hello report must be
    stored, so that none is counted in the measured window. A device the cloud has not seen says hello again every
    HELLO_AGAIN_S, as a GAgent reports again: a worker whose inbound queue overflowed in the burst of connects
    dropped the oldest messages (gizdev.mqtt's bounded queue), and nothing else would tell it of those devices.
    """
    wanted = len(connected)
    next_hello = time.monotonic() + HELLO_AGAIN_S
    deadline = time.monotonic() + ONLINE_TIMEOUT_S + ONLINE_S_PER_DEVICE * wanted
    online = 0.0
    while time.monotonic() < deadline:
        if len(workers) == 1:
            online = (await scrape(session, workers[0])).get("gizdev_devices_online", 0.0)
            if online >= wanted:
                break
        else:
            stored = sum([(await scrape(session, w)).get("gizdev_reports_stored_total", 0.0) for w in workers])
            listed = await asyncio.to_thread(gizdev, "device", "list", data_dir=data_dir, database=args.database)
            seen = {device["did"] for device in listed if device["is_online"]}
            online = float(len(seen))
            if online >= wanted and stored >= wanted:
                break
            if time.monotonic() >= next_hello:
                for device in connected:
                    if device.did not in seen:
                        device.say(hello)
                next_hello = time.monotonic() + HELLO_AGAIN_S
            await asyncio.sleep(2.0)  # listing every device is a process and a query: not too often
        await asyncio.sleep(0.5)
    return online


async def run(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.devices + 1024)), hard))
    base = Path(tempfile.mkdtemp(prefix="gizdev-load-cloud-"))
    base.chmod(0o711)  # searchable: a root run's mosquitto drops to its own user and must reach its files below
    data_dir = base / "data"
    errors: list[str] = []
    workers: list[Worker] = []
    devices: list[Device] = []
    mqtt_port = free_port()
    product = load_product(GOKIT)
    frame = encode_envelope(0x0091, product_report(product))
    scaled = args.workers > 1
    # A worker group needs a broker none of its workers manages: this one, on our own event loop.
    broker = ManagedMosquitto(base / "broker", port=mqtt_port, pin_client_ids=False) if scaled else None
    try:
        broker_url = None
        if broker is not None:
            await broker.start()
            broker_url = broker.settings.url(show_password=True)
        for number in range(1, args.workers + 1):
            worker_dir = data_dir if number == 1 else base / f"data-{number}"
            log = base / f"worker-{number}.log"
            workers.append(start_worker(worker_dir, args.database, mqtt_port, broker_url, log, devices=args.devices))
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for worker in workers:
                await wait_http(session, worker)
            added = gizdev("product", "add", str(GOKIT), data_dir=data_dir, database=args.database)
            product_key = str(added["product_key"])
            # An app reaches the devices of the products it is linked to only.
            app = gizdev("app", "add", "load", "--product", product_key, data_dir=data_dir, database=args.database)
            say(args, f"registering {args.devices} devices over HTTP ...")
            t0 = time.monotonic()
            devices = await register(session, [w.url for w in workers], product_key, args.devices, errors)
            if broker is not None:
                # One password and ACL file write and one reload for every device (~1.6 s for 10,000).
                await broker.set_devices(DeviceAccount(d.did, d.passcode, product_key) for d in devices)
            headers = await user_and_bindings(session, workers[0].url, str(app["appid"]), devices)
            say(args, f"  {len(devices)} registered and bound in {time.monotonic() - t0:.1f} s")
            say(args, f"connecting them over MQTT 3.1 at {args.connect_rate:.0f}/s ...")
            t0 = time.monotonic()
            await connect_all(devices, mqtt_port, args.connect_rate, errors, frame if scaled else None)
            connected = [d for d in devices if d.connected]
            online = await wait_online(session, args, workers, data_dir, connected=connected, hello=frame)
            online_s = time.monotonic() - t0
            say(
                args,
                f"  {len(connected)} connected, {online:.0f} online in the cloud after {online_s:.1f} s",
            )

            plan = f"reports every {args.report_interval:g} s, {args.control_rate:g} controls/s"
            say(args, f"load for {args.duration:.0f} s: {plan}")
            start = time.monotonic()
            until = start + args.duration
            for index, device in enumerate(connected):
                device.start_reports(frame, args.report_interval, args.report_interval * index / len(connected), until)
            cpu_before = [w.cpu_seconds() for w in workers]
            broker_before = cpu_seconds(broker.pid) if broker is not None and broker.pid else 0.0
            stored_before = [(await scrape(session, w)).get("gizdev_reports_stored_total", 0.0) for w in workers]
            latencies = await control_load(
                session,
                workers=workers,
                devices=devices,
                headers=headers,
                rate=args.control_rate,
                until=until,
                errors=errors,
            )
            elapsed = time.monotonic() - start
            cpu_after = [w.cpu_seconds() for w in workers]
            broker_after = cpu_seconds(broker.pid) if broker is not None and broker.pid else 0.0
            stored_after = [(await scrape(session, w)).get("gizdev_reports_stored_total", 0.0) for w in workers]
            rss = [w.rss_mib() for w in workers]
        dropped = sum(1 for d in connected if d.dropped)
        if dropped:
            errors.append(f"{dropped} devices lost their connection during the run")
        still = len(connected) - dropped
        by_worker = [after - before for after, before in zip(stored_after, stored_before, strict=True)]
        cpu = [(after - before) / elapsed * 100 for after, before in zip(cpu_after, cpu_before, strict=True)]
        result = {
            "devices": args.devices,
            "devices_connected": still,
            "online_after_s": round(online_s, 1),  # from the first connect until the cloud held them all online
            "reports_per_s": round(sum(by_worker) / elapsed, 1),
            "reports_expected_per_s": round(still / args.report_interval, 1),
            "controls": len(latencies),
            "control_p50_ms": round(pct(latencies, 0.5) * 1e3, 2),
            "control_p99_ms": round(pct(latencies, 0.99) * 1e3, 2),
            "errors": len(errors),
            "error_samples": sorted(set(errors))[:5],
            "cpu_percent": round(sum(cpu), 1),
            "rss_mib": round(sum(rss), 1),
            "workers_cpu_percent": [round(value, 1) for value in cpu],
            "reports_by_worker": [int(count) for count in by_worker],
            "workers": len(workers),
            "database": "postgresql" if args.database else "sqlite",
            "duration_s": round(elapsed, 1),
            "machine": machine(),
        }
        if broker is not None:
            result["broker_cpu_percent"] = round((broker_after - broker_before) / elapsed * 100, 1)
        return result
    finally:
        for device in devices:
            device.close()
        for worker in workers:
            if worker.process.poll() is None:
                os.killpg(worker.process.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.process.pid, signal.SIGKILL)
        if broker is not None:
            await broker.stop()  # after the workers: they would only log its going away
        shutil.rmtree(base, ignore_errors=True)


def product_report(product: Product) -> bytes:
    return product.encode("report", initial_state(product))


def say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def positive(kind: type[float] | type[int], high: float) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"must be more than 0 and at most {high:g}")
        return value

    return parse


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=positive(int, MAX_DEVICES), default=1000, help="simulated devices")
    parser.add_argument("--report-interval", type=positive(float, 3600), default=60.0, help="seconds between reports")
    parser.add_argument("--control-rate", type=float, default=10.0, help="controls per second (0: none)")
    parser.add_argument("--duration", type=positive(float, MAX_DURATION_S), default=60.0, help="seconds of load")
    parser.add_argument(
        "--workers",
        type=positive(int, 8),
        default=1,
        help="cloud worker processes; more than 1: a worker group on one Mosquitto the tool runs (see above)",
    )
    parser.add_argument("--database", help="postgresql://… (required for --workers > 1; default SQLite)")
    parser.add_argument("--connect-rate", type=positive(float, 10_000), default=500.0, help="connections per second")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not 0 <= args.control_rate <= 1000:
        parser.error("--control-rate must be between 0 and 1000")
    if args.workers > 1 and not (args.database or "").startswith("postgresql"):
        parser.error("--workers > 1 needs --database postgresql://… (SQLite is one process's database)")
    random.seed(args.seed)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    print()
    print(f"machine: {result['machine']}")
    print(f"workers: {result['workers']} on {result['database']}, {result['duration_s']} s of load")
    print(f"devices connected: {result['devices_connected']} of {result['devices']}")
    print(f"reports stored: {result['reports_per_s']}/s (sent {result['reports_expected_per_s']}/s)")
    print(f"controls: {result['controls']}, p50 {result['control_p50_ms']} ms, p99 {result['control_p99_ms']} ms")
    print(f"errors: {result['errors']}" + "".join(f"\n  {sample}" for sample in result["error_samples"]))
    print(f"worker CPU: {result['cpu_percent']}% of one core, RSS {result['rss_mib']} MiB")
    if result["workers"] > 1:
        print(f"  per worker: CPU {result['workers_cpu_percent']} %, reports stored {result['reports_by_worker']}")
        print(f"the tool's Mosquitto: {result['broker_cpu_percent']}% of one core")


if __name__ == "__main__":
    cli()
