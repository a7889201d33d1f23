"""The home-automation uplink end to end: a virtual GoKit on a pty, the bridge with ``--mqtt`` and no cloud, a plain
Mosquitto, and an observer on the broker that sees what Home Assistant would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gizdev.bridge.config import BridgeConfig, LanConfig, MqttConfig
from gizdev.bridge.factory import build_bridge
from gizdev.bridge.mqtt_uplink import MqttJsonUplink
from gizdev.codec.commands import Command
from gizdev.errors import ConfigError
from gizdev.mqtt import MqttClient
from tests.bridge.bridge_fixtures import GOKIT_PATH, HEARTBEAT_S, eventually
from tests.bridge.test_uplinks import Board, board
from tests.cloud.broker_fixtures import mosquitto_binary_fixture  # noqa: F401
from tests.link.helpers import record_requests, run
from tests.mqtt.plain_broker import PlainBroker, plain_broker_fixture  # noqa: F401

DEVICE = "kitchen"
BASE = f"gizdev/{DEVICE}"


class Observer:
    """A client subscribed to everything; ``last[topic]`` is the newest payload seen there."""

    def __init__(self, port: int) -> None:
        self.client = MqttClient("127.0.0.1", port, client_id="observer")
        self.last: dict[str, bytes] = {}
        self.seen: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.connect()
        await self.client.subscribe("#")
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def _collect(self) -> None:
        async for message in self.client.messages():
            self.last[message.topic] = message.payload
            self.seen.append((message.topic, message.payload))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.last.get(f"{BASE}/state", b"{}")))

    def errors(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for topic, payload in self.seen if topic == f"{BASE}/error"]


def config(tmp_path: Path, b: Board, broker: PlainBroker, **mqtt: Any) -> BridgeConfig:
    return BridgeConfig(
        port=str(b.path),
        product=GOKIT_PATH,
        state_dir=tmp_path / "state",
        heartbeat_s=HEARTBEAT_S,
        lan=LanConfig(enabled=False),
        mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", device=DEVICE, **mqtt),
    )


@asynccontextmanager
async def observing(broker: PlainBroker) -> AsyncIterator[Observer]:
    observer = Observer(broker.port)
    await observer.start()
    try:
        yield observer
    finally:
        await observer.close()


def test_state_discovery_commands_errors_and_availability(tmp_path: Path, plain_broker: PlainBroker) -> None:
    async def scenario() -> None:
        async with board(tmp_path) as b, observing(plain_broker) as seen:
            bridge = build_bridge(config(tmp_path, b, plain_broker), port_options={"backoff_max": 0.5})
            uplink = bridge.find_uplink(MqttJsonUplink)
            assert uplink is not None and [type(u) for u in bridge.uplinks] == [MqttJsonUplink]  # no cloud, no LAN
            async with bridge:
                # Discovery: one retained config per datapoint, with the MCU's versions once it is up.
                await eventually(
                    lambda: sum(t.startswith("homeassistant/") for t in seen.last) == 15, "15 discovery configs"
                )
                await eventually(lambda: seen.last.get(f"{BASE}/availability") == b"online", "online")
                await eventually(lambda: seen.state().get("LED_R") == 0x12, "the MCU's state")
                switch = json.loads(
                    seen.last["homeassistant/switch/" + uplink.ha_device.identifier + "/LED_OnOff/config"]
                )
                assert switch["device"]["sw_version"] == b.mcu.device_info().software_version
                assert switch["availability_topic"] == f"{BASE}/availability"

                # An MCU change appears on the state topic, in app units.
                b.mcu.set_values({"Motor_Speed": -4, "LED_Color": "Pink"})
                await eventually(lambda: seen.state().get("Motor_Speed") == -4, "the report on the state topic")
                assert seen.state()["LED_Color"] == "Pink"

                # A set reaches the MCU, and its report comes back on the state topic.
                await seen.client.publish(f"{BASE}/set", b'{"LED_R": 200, "LED_OnOff": true}')
                await eventually(lambda: b.mcu.state["LED_R"] == 200, "the write on the MCU")
                assert b.mcu.state["LED_OnOff"] is True
                await eventually(lambda: seen.state().get("LED_R") == 200, "the written value on the state topic")

                # Invalid sets: an error message each, and no frame on the serial line.
                assert b.mcu.session.link is not None
                requests = record_requests(b.mcu.session.link)
                bad = [b'{"LED_R": 999}', b'{"Temperature": 30}', b'{"Nope": 1}', b"not json", b"[1]", b"{}"]
                for payload in bad:
                    await seen.client.publish(f"{BASE}/set", payload)
                await eventually(lambda: len(seen.errors()) == len(bad), "an error per refused command")
                errors = seen.errors()
                assert [e["command"] for e in errors] == [p.decode() for p in bad]
                assert errors[0]["path"] == "attrs/LED_R" and "read-only" in errors[1]["error"]
                assert errors[2]["path"] == "attrs/Nope"
                assert requests[Command.P0_DOWN] == 0

                # get: the bridge reads the MCU and publishes.
                await seen.client.publish(f"{BASE}/get", b"")
                await eventually(lambda: requests[Command.P0_DOWN] == 1, "a read on the serial line")

                # HA restarts: the discovery comes again.
                before = sum(topic.endswith("/config") for topic, _ in seen.seen)
                await seen.client.publish("homeassistant/status", b"online")
                await eventually(
                    lambda: sum(topic.endswith("/config") for topic, _ in seen.seen) == before + 15, "rediscovery"
                )

                # The MCU goes silent: offline; back: online.
                b.unplug()
                await eventually(lambda: seen.last[f"{BASE}/availability"] == b"offline", "offline with the MCU gone")
                await b.replug()
                await eventually(lambda: seen.last[f"{BASE}/availability"] == b"online", "online again")
            # A clean stop says offline too.
            await eventually(lambda: seen.last[f"{BASE}/availability"] == b"offline", "offline after close")

    run(scenario(), timeout=90)


def test_broker_restart_republishes_the_latest_state(
    tmp_path: Path, plain_broker: PlainBroker, mosquitto_binary: str
) -> None:
    async def scenario() -> None:
        async with board(tmp_path) as b:
            settings = config(tmp_path, b, plain_broker)
            bridge = build_bridge(settings, port_options={"backoff_max": 0.5})
            uplink = bridge.find_uplink(MqttJsonUplink)
            assert uplink is not None
            async with bridge:
                await eventually(lambda: uplink.connected, "connected")
                plain_broker.kill()  # persistence off: the retained state is gone with it
                await eventually(lambda: not uplink.connected, "the broker is gone")
                b.mcu.set_values({"LED_G": 77})  # reported while the broker is away
                await asyncio.sleep(0.3)
                plain_broker.start(mosquitto_binary)
                async with observing(plain_broker) as seen:
                    await eventually(lambda: seen.state().get("LED_G") == 77, "the state made while away", 20)
                    assert seen.last[f"{BASE}/availability"] == b"online"

    run(scenario(), timeout=90)


def test_bridge_process_killed_leaves_its_will(tmp_path: Path, plain_broker: PlainBroker) -> None:
    async def scenario() -> None:
        async with board(tmp_path) as b, observing(plain_broker) as seen:
            command = [sys.executable, "-m", "gizdev", "bridge", "--port", str(b.path), "--product", str(GOKIT_PATH),
                       "--state-dir", str(tmp_path / "state"), "--no-lan", "--mqtt", f"mqtt://127.0.0.1:{plain_broker.port}",
                       "--mqtt-device", DEVICE]  # fmt: skip
            process = subprocess.Popen(command, stderr=subprocess.PIPE)
            try:
                await eventually(lambda: seen.last.get(f"{BASE}/availability") == b"online", "online", 30)
                os.kill(process.pid, signal.SIGKILL)
                await eventually(lambda: seen.last[f"{BASE}/availability"] == b"offline", "the will", 10)
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(10)
                assert process.stderr is not None
                process.stderr.close()

    run(scenario(), timeout=90)


def test_retire_empties_the_retained_topics(tmp_path: Path, plain_broker: PlainBroker) -> None:
    async def scenario() -> None:
        async with board(tmp_path) as b:
            settings = config(tmp_path, b, plain_broker)
            bridge = build_bridge(settings, port_options={"backoff_max": 0.5})
            async with bridge, observing(plain_broker) as seen:
                await eventually(lambda: sum(t.startswith("homeassistant/") for t in seen.last) == 15, "discovery")
            arguments = ["bridge", "--port", str(b.path), "--product", str(GOKIT_PATH), "--state-dir",
                         str(tmp_path / "state"), "--mqtt", f"mqtt://127.0.0.1:{plain_broker.port}",
                         "--mqtt-device", DEVICE, "--retire"]  # fmt: skip
            process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gizdev", *arguments)
            assert await process.wait() == 0
            async with observing(plain_broker) as later:
                await asyncio.sleep(0.5)  # retained messages arrive at once on subscribing; none should be left
                assert not [t for t in later.last if t.startswith(("homeassistant/", "gizdev/"))]

    run(scenario(), timeout=90)


@pytest.mark.parametrize(
    ("mqtt", "words"),
    [
        ({"url": "http://x"}, "mqtt://"),
        ({"url": "mqtt://"}, "mqtt://"),
        ({"url": "mqtt://h:99999"}, "(?i)port"),
        ({"url": "mqtt://h", "prefix": "a/#"}, "wildcards"),
        ({"url": "mqtt://h", "device": "my device"}, "letters"),
        ({"url": "mqtt://h", "qos": 2}, "qos"),
    ],
)
def test_bad_mqtt_settings_are_config_errors(tmp_path: Path, mqtt: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        build_bridge(
            BridgeConfig(
                port="/dev/null",
                product=GOKIT_PATH,
                state_dir=tmp_path,
                lan=LanConfig(enabled=False),
                mqtt=MqttConfig(**mqtt),
            )
        )
