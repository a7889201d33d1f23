#!/usr/bin/env python3
"""Benchmark: the bridge as a separate process between a virtual GoKit and the local cloud (all on loopback).

This process runs the cloud (:class:`CloudServer`: Open API, managed Mosquitto, SQLite in a temp dir) and a
:class:`VirtualMcu` on the master side of a pty; ``gizdev bridge`` runs as a child process on the pty's slave
path, as it would on a gateway. The pty is not throttled, so no UART wire time is in the figures.

* control latency: ``POST /app/control/{did}`` (one at a time) until the write frame has arrived on the MCU's
  side of the pty and been parsed there; p50/p99 over ``--requests`` (targets: p50 <= 5 ms, p99 <= 20 ms).
* CPU per relayed report: the bridge process's user+system CPU time (``/proc/<pid>/stat``) while the MCU sends
  ``--reports`` reports (each acknowledged, relayed to the cloud, stored), divided by the count (target
  <= 200 us); the cloud counts what arrived.
* RSS of the bridge after the runs (``VmRSS``), and its CPU use while idle for ``--idle`` seconds.

    .venv/bin/python tools/bench_bridge.py [--requests 1000] [--reports 2000] [--idle 10] [--runs 3]

With ``BENCH_PROFILE=FILE`` in the environment the bridge runs under cProfile and writes its profile to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from benchlib import free_port, machine

from gizdev.cloud.security import KdfParams, new_app_id, new_app_secret
from gizdev.cloud.server import CloudConfig, CloudServer
from gizdev.codec.p0 import load_product
from gizdev.codec.values import Value
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_pty_pair

ROOT = Path(__file__).resolve().parent.parent
GOKIT = ROOT / "protocols" / "gokit.json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime (fields 14 and 15)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class WriteClock:
    """Wraps the virtual MCU's write hook: the time each write reached the board."""

    def __init__(self, mcu: VirtualMcu) -> None:
        self.arrivals: asyncio.Queue[float] = asyncio.Queue()
        inner = mcu.apply_write

        def timed(attrs: dict[str, Value]) -> None:
            self.arrivals.put_nowait(time.perf_counter())
            inner(attrs)

        mcu.apply_write = timed  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="gizdev-bench-bridge-"))
    base.chmod(0o711)
    (base / "cloud").mkdir(mode=0o711)
    cloud = CloudServer(
        CloudConfig(data_dir=base / "cloud", http_port=0, mqtt_port=free_port(), kdf=KdfParams(1, 8 * 1024, 1))
    )
    product = load_product(GOKIT)
    mcu = VirtualMcu(product, name="bench-mcu")
    pair = open_pty_pair()
    bridge: subprocess.Popen[bytes] | None = None
    try:
        await cloud.start()
        assert cloud.storage is not None and cloud.bus is not None
        appid = (await cloud.storage.add_app(new_app_id(), new_app_secret(), "bench")).appid
        assert product.product_key is not None
        await cloud.storage.add_product(product.product_key, "0" * 32, product.name, product.schema)
        await pair.connect_master(mcu.protocol_factory)
        mcu.start()
        clock = WriteClock(mcu)
        profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if "BENCH_PROFILE" in os.environ else []
        bridge = subprocess.Popen(
            [sys.executable, *profile, "-m", "gizdev", "bridge", "--port", pair.slave_path, "--product", str(GOKIT),
             "--cloud", cloud.http_url, "--state-dir", str(base / "bridge"), "--no-lan"],
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        state = base / "bridge" / "identity.json"
        did = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if state.exists():
                did = json.loads(state.read_text()).get("did", "")
                if did and cloud.bus.is_online(did):
                    break
            await asyncio.sleep(0.05)
        else:
            raise SystemExit("the bridge did not come online within 30 s")
        device = await cloud.storage.get_device(did)
        headers = {"X-Gizwits-Application-Id": appid}
        async with aiohttp.ClientSession(base_url=cloud.http_url) as http:
            async with http.post("/app/users", json={"username": "bench", "password": "123456"}, headers=headers) as r:
                user = await r.json()
            headers["X-Gizwits-User-token"] = user["token"]
            await cloud.storage.bind(user["uid"], did)
            await asyncio.sleep(1)  # let the bridge's start-up traffic settle

            latencies: list[list[float]] = []
            cpu_per_report: list[float] = []
            for run in range(args.runs):
                samples: list[float] = []
                for index in range(args.requests):
                    body = {"attrs": {"LED_OnOff": index % 2 == 0, "Motor_Speed": index % 5}}
                    start = time.perf_counter()
                    async with http.post(f"/app/control/{did}", json=body, headers=headers) as response:
                        if response.status != 200:
                            raise SystemExit(f"control failed: {response.status} {await response.text()}")
                        await response.read()
                    arrived = await asyncio.wait_for(clock.arrivals.get(), 10)
                    samples.append(arrived - start)
                    await asyncio.sleep(0.002)  # let the report of this write go out before the next one
                latencies.append(samples)
                await asyncio.sleep(0.5)

                reports_before = cloud.bus.stats.reports
                sent_before = mcu.reports_sent
                cpu_before = cpu_seconds(bridge.pid)
                for index in range(args.reports):
                    mcu.set_values({"LED_OnOff": index % 2 == 1})
                    await asyncio.sleep(0.001)  # changes faster than the ACK round trip would merge into one report
                await asyncio.sleep(0.5)
                sent = mcu.reports_sent - sent_before
                deadline = time.monotonic() + 30
                while cloud.bus.stats.reports - reports_before < sent and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                relayed = cloud.bus.stats.reports - reports_before
                cpu = cpu_seconds(bridge.pid) - cpu_before
                cpu_per_report.append(cpu / max(relayed, 1))
                p50, p99 = pct(samples, 0.5) * 1e3, pct(samples, 0.99) * 1e3
                print(
                    f"run {run + 1}: control p50 {p50:.2f} ms, p99 {p99:.2f} ms; {relayed} reports relayed, "
                    f"{cpu_per_report[-1] * 1e6:.0f} us CPU each",
                    flush=True,
                )
            idle_before = cpu_seconds(bridge.pid)
            await asyncio.sleep(args.idle)
            idle = cpu_seconds(bridge.pid) - idle_before
            rss = rss_kib(bridge.pid)
        print()
        print(f"machine: {machine()}")
        print(
            f"device {device.did}; {args.requests} controls and {args.reports} reports per run, median of {args.runs}"
        )
        print(
            f"control latency HTTP -> MCU: p50 {statistics.median(pct(s, 0.5) for s in latencies) * 1e3:.2f} ms "
            f"(target <= 5), p99 {statistics.median(pct(s, 0.99) for s in latencies) * 1e3:.2f} ms (target <= 20)"
        )
        print(f"bridge CPU per relayed report: {statistics.median(cpu_per_report) * 1e6:.0f} us (target <= 200)")
        print(f"bridge RSS {rss / 1024:.1f} MiB; idle CPU {idle / args.idle * 100:.2f} % over {args.idle:.0f} s")
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(10)
        await mcu.close()
        pair.close()
        await cloud.stop()
        shutil.rmtree(base, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
