#!/usr/bin/env python3
"""Benchmark: ``POST /app/control/{did}`` throughput and HTTP→MQTT latency with 1,000 devices connected.

Set-up (one process, loopback only): a :class:`CloudServer` on SQLite in a temp dir with its managed Mosquitto;
one app, the GoKit product, N devices registered and bound to one user; every device connected over MQTT 3.1 as
GAgent does (raw CONNECT ``MQIsdp``/3, subscribe ``app2dev/<did>/#``) and waited for online. Then:

* latency: one control at a time to a random device; time from just before the HTTP request is written to the
  moment the device's socket delivers the 0x0090 PUBLISH (p50/p99 over ``--requests``);
* throughput: ``--concurrency`` clients sending controls back to back (keep-alive) for ``--requests``; requests/s.

Baseline, in the same process against the same broker and devices: a bare aiohttp handler that parses the JSON
body and publishes a fixed 0x0090 frame through the cloud's own MQTT connection, with no app/token/binding check,
no schema validation and no database. Ratios = cloud / baseline (what the real work costs).

    .venv/bin/python tools/bench_cloud.py [--devices 1000] [--requests 1000] [--concurrency 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from benchlib import free_port, machine

from gizdev.cloud.broker import DeviceAccount
from gizdev.cloud.devicebus import DeviceBus
from gizdev.cloud.security import KdfParams, new_app_id, new_app_secret
from gizdev.cloud.server import CloudConfig, CloudServer
from gizdev.mqtt.packets import MQTT_31, SUBSCRIBE, connect_packet, encode_string, packet
from gizdev.protocol.identifiers import new_passcode
from gizdev.schema.loader import load_schema

ROOT = Path(__file__).resolve().parent.parent
GOKIT = ROOT / "protocols" / "gokit.json"
FAST_KDF = KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1)  # one user is created; not measured


@dataclass
class Device:
    """A GAgent-like MQTT 3.1 client that timestamps every PUBLISH it receives."""

    did: str
    passcode: str
    arrivals: asyncio.Queue[float] = field(default_factory=asyncio.Queue)
    writer: asyncio.StreamWriter | None = None
    reader_task: asyncio.Task[None] | None = None

    async def connect(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer = writer
        writer.write(
            connect_packet(self.did, username=self.did, password=self.passcode, keepalive_s=120, protocol=MQTT_31)
        )
        topic = f"app2dev/{self.did}/#"
        writer.write(packet(SUBSCRIBE, (1).to_bytes(2, "big") + encode_string(topic) + b"\x00", flags=2))
        await writer.drain()
        connack = await reader.readexactly(4)
        if connack != b"\x20\x02\x00\x00":
            raise RuntimeError(f"device {self.did} refused: {connack.hex()}")
        await reader.readexactly(5)  # SUBACK
        self.reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
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

    def close(self) -> None:
        if self.reader_task is not None:
            self.reader_task.cancel()
        if self.writer is not None:
            self.writer.close()


@dataclass
class Target:
    url: str
    headers: dict[str, str]
    body: bytes


async def latency_run(
    session: aiohttp.ClientSession, devices: list[Device], target: Callable[[Device], Target], count: int
) -> list[float]:
    samples: list[float] = []
    for _ in range(count):
        device = random.choice(devices)
        t = target(device)
        start = time.perf_counter()
        async with session.post(t.url, data=t.body, headers=t.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{t.url}: {response.status} {await response.text()}")
            await response.read()
        arrived = await asyncio.wait_for(device.arrivals.get(), 5)
        samples.append(arrived - start)
    return samples


async def throughput_run(
    session: aiohttp.ClientSession,
    devices: list[Device],
    target: Callable[[Device], Target],
    count: int,
    concurrency: int,
) -> float:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t = target(random.choice(devices))
            async with session.post(t.url, data=t.body, headers=t.headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"{t.url}: {response.status} {await response.text()}")
                await response.read()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    for device in devices:  # drain what arrived so the latency runs start clean
        while not device.arrivals.empty():
            device.arrivals.get_nowait()
    return count / elapsed


async def baseline_app(bus: DeviceBus) -> tuple[web.AppRunner, int]:
    """A bare handler: parse the JSON body, publish a fixed 0x0090 through the cloud's own MQTT connection."""
    p0 = bytes.fromhex("0101") + bytes(9)

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        assert isinstance(body, dict)
        await bus.send_control(request.match_info["did"], p0, "bench")
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/app/control/{did}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.devices + 256)), hard))
    base = Path(tempfile.mkdtemp(prefix="gizdev-bench-cloud-"))
    base.chmod(0o711)
    config = CloudConfig(data_dir=base / "data", http_port=0, mqtt_port=free_port(), kdf=FAST_KDF)
    server = CloudServer(config)
    devices: list[Device] = []
    try:
        await server.start()
        assert server.storage is not None and server.broker is not None
        storage = server.storage
        schema = load_schema(GOKIT)
        assert schema.product_key is not None
        await storage.add_product(schema.product_key, "0" * 32, schema.name, schema)
        # The app serves the product (apps reach only their products' devices).
        appid = (await storage.add_app(new_app_id(), new_app_secret(), "bench", [schema.product_key])).appid
        print(f"registering {args.devices} devices ...", flush=True)
        for index in range(args.devices):
            reg = await storage.register_device(f"{index:012X}", schema.product_key, new_passcode())
            devices.append(Device(reg.did, reg.device.passcode))
        await server.broker.set_devices(DeviceAccount(d.did, d.passcode, schema.product_key) for d in devices)
        async with aiohttp.ClientSession() as session:
            reply = await session.post(
                f"{server.http_url}/app/users",
                json={"username": "bench", "password": "123456"},
                headers={"X-Gizwits-Application-Id": appid},
            )
            user = await reply.json()
            for device in devices:
                await storage.bind(user["uid"], device.did)
            print(f"connecting {args.devices} devices over MQTT 3.1 ...", flush=True)
            start = time.perf_counter()
            for chunk in range(0, len(devices), 100):
                await asyncio.gather(*(d.connect(config.mqtt_port) for d in devices[chunk : chunk + 100]))
            while True:
                online = len([d for d in await storage.list_devices(limit=1000) if d.is_online])
                if online >= len(devices):
                    break
                await asyncio.sleep(0.1)
            print(f"all online after {time.perf_counter() - start:.1f} s", flush=True)

            body = json.dumps({"attrs": {"LED_OnOff": True, "Motor_Speed": 3}}).encode()
            headers = {
                "X-Gizwits-Application-Id": appid,
                "X-Gizwits-User-token": user["token"],
                "Content-Type": "application/json",
            }

            def cloud_target(device: Device) -> Target:
                return Target(f"{server.http_url}/app/control/{device.did}", headers, body)

            assert server.bus is not None
            runner, base_port = await baseline_app(server.bus)

            def base_target(device: Device) -> Target:
                return Target(f"http://127.0.0.1:{base_port}/app/control/{device.did}", headers, body)

            results: dict[str, dict[str, list[float]]] = {"cloud": {}, "baseline": {}}
            for run in range(args.runs):
                for name, target in (("baseline", base_target), ("cloud", cloud_target)):
                    lat = await latency_run(session, devices, target, args.requests)
                    rate = await throughput_run(session, devices, target, args.requests, args.concurrency)
                    slot = results[name]
                    slot.setdefault("p50", []).append(pct(lat, 0.5))
                    slot.setdefault("p99", []).append(pct(lat, 0.99))
                    slot.setdefault("rate", []).append(rate)
                    p50, p99 = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3
                    print(
                        f"run {run + 1} {name:8s}: p50 {p50:6.2f} ms, p99 {p99:6.2f} ms, {rate:7.0f} req/s", flush=True
                    )
            await runner.cleanup()
        med = {name: {key: statistics.median(values) for key, values in slot.items()} for name, slot in results.items()}
        print()
        print(f"machine: {machine()}")
        print(f"{args.devices} devices connected, {args.requests} requests per run, median of {args.runs} runs")
        for key, label, scale in (("p50", "latency p50", 1e3), ("p99", "latency p99", 1e3)):
            c, b = med["cloud"][key], med["baseline"][key]
            print(f"{label}: cloud {c * scale:.2f} ms, baseline {b * scale:.2f} ms ({c / b:.2f}x the baseline's time)")
        c, b = med["cloud"]["rate"], med["baseline"]["rate"]
        print(f"throughput ({args.concurrency} clients): cloud {c:.0f} req/s, baseline {b:.0f} req/s ({c / b:.2f}x)")
    finally:
        for device in devices:
            device.close()
        await server.stop()
        shutil.rmtree(base, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
