#!/usr/bin/env python3
"""Benchmark: CPU time per QoS-0 PUBLISH, aiomqtt against gizdev's small client, in one process, same broker.

Both publish the same 19-byte device report to a Mosquitto on loopback (started here, anonymous, a free port),
``--count`` times per run; the figure is this process's CPU time (``time.process_time``) divided by the count,
median of ``--runs``. This is the measurement behind replacing aiomqtt on the bridge's and the cloud's hot paths.

    .venv/bin/python tools/bench_mqtt.py [--count 5000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt
from benchlib import free_port, machine

from gizdev.cloud.broker import find_mosquitto
from gizdev.mqtt import MQTT_31, MqttClient

PAYLOAD = bytes.fromhex("000000030e000091040100000005000d000000")


async def with_aiomqtt(port: int, count: int) -> float:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-aiomqtt", protocol=aiomqtt.ProtocolVersion.V31) as c:
        start = time.process_time()
        for _ in range(count):
            await c.publish("dev2app/bench", PAYLOAD)
        return (time.process_time() - start) / count


async def with_gizdev(port: int, count: int) -> float:
    client = MqttClient("127.0.0.1", port, client_id="bench-gizdev", protocol=MQTT_31)
    await client.connect()
    try:
        start = time.process_time()
        for _ in range(count):
            await client.publish("dev2app/bench", PAYLOAD)
            await asyncio.sleep(0)  # give the loop its turn, as a real relay does between reports
        return (time.process_time() - start) / count
    finally:
        await client.close()


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="gizdev-bench-mqtt-"))
    port = free_port()
    (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([find_mosquitto(), "-c", str(work / "mosquitto.conf")], stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(0.5)
        results: dict[str, list[float]] = {"aiomqtt": [], "gizdev": []}
        for _ in range(args.runs):
            results["aiomqtt"].append(await with_aiomqtt(port, args.count))
            results["gizdev"].append(await with_gizdev(port, args.count))
        a, g = (statistics.median(results[k]) for k in ("aiomqtt", "gizdev"))
        print(f"machine: {machine()}")
        print(f"CPU per PUBLISH, median of {args.runs} x {args.count}: aiomqtt {a * 1e6:.1f} us, "
              f"gizdev.mqtt {g * 1e6:.1f} us ({a / g:.0f}x less)")  # fmt: skip
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
