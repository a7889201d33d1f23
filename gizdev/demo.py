"""``gizdev demo``: the whole chain on one machine — local cloud, virtual GoKit on a pty, bridge — ready for curl.

Start-up: a :class:`CloudServer` (managed Mosquitto, SQLite in the data dir), an app and the product in it, a
:class:`VirtualMcu` on a pseudo-terminal whose temperature and humidity drift as a real board's would, a
:class:`Bridge` on the pty's other end (registers, provisions, connects over MQTT), then a user bound to the device
through the Open API itself. :class:`Demo` exposes what a caller prints: the curl lines and the live reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gizdev.bridge.config import BridgeConfig, LanConfig
from gizdev.bridge.factory import build_bridge
from gizdev.bridge.gateway import Bridge
from gizdev.cloud.security import new_app_id, new_app_secret, new_product_secret
from gizdev.cloud.server import CloudConfig, CloudServer
from gizdev.cloud.storage import AlreadyExists
from gizdev.codec.p0 import Product, load_product
from gizdev.errors import CloudError, ConfigError
from gizdev.sim.mcu import VirtualMcu, default_device_info
from gizdev.transport import PtyPair, open_pty_pair

__all__ = ["Demo", "DemoSettings"]

_LOGGER = logging.getLogger(__name__)

DEMO_USER = "demo"
DEMO_PASSWORD = "gizdev-demo"
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class DemoSettings:
    product: Path
    data_dir: Path | None = None  # None: a temporary directory, removed on exit
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    mqtt_port: int = 18830
    lan_tcp_port: int = 0  # 0: any free port (12416 may belong to a real gateway)
    lan_udp_port: int = 0
    drift_interval_s: float = 5.0  # how often the virtual board's sensors change


@dataclass
class Demo:
    settings: DemoSettings
    on_report: Callable[[dict[str, Any]], None] | None = None
    cloud: CloudServer | None = None
    bridge: Bridge | None = None
    mcu: VirtualMcu | None = None
    did: str = ""
    appid: str = ""
    token: str = ""
    _pair: PtyPair | None = None
    _data_dir: Path | None = None
    _temporary: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        assert self.cloud is not None
        return self.cloud.http_url

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        settings = self.settings
        product = load_product(settings.product)
        if not product.product_key:
            raise ConfigError(f"{settings.product} has no product_key; the demo needs one")
        if settings.data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="gizdev-demo-"))
            # The broker's own user must pass through to cloud/broker (the cloud opens cloud/ to it the same way).
            self._data_dir.chmod(0o711)
            self._temporary = True
        else:
            self._data_dir = settings.data_dir
        self.cloud = CloudServer(
            CloudConfig(
                data_dir=self._data_dir / "cloud",
                http_host=settings.http_host,
                http_port=settings.http_port,
                mqtt_port=settings.mqtt_port,
            )
        )
        await self.cloud.start()
        storage = self.cloud.storage
        assert storage is not None
        with contextlib.suppress(AlreadyExists):  # a kept data dir already has it
            await storage.add_product(product.product_key, new_product_secret(), product.name, product.schema)
        stored = await storage.get_product(product.product_key)
        self.appid = (await storage.add_app(new_app_id(), new_app_secret(), "gizdev demo", [product.product_key])).appid

        # The board's firmware carries its product's secret (the bridge registers through the encrypted device API
        # with it), as a real MCU's does.
        info = default_device_info(product, product_secret=stored.product_secret)
        self.mcu = VirtualMcu(product, name="gokit", device_info=info)
        self._pair = open_pty_pair()
        await self._pair.connect_master(self.mcu.protocol_factory)
        self.mcu.start()
        self.bridge = build_bridge(
            BridgeConfig(
                port=self._pair.slave_path,
                product=settings.product,
                cloud=self.http_url,
                state_dir=self._data_dir / "bridge",
                lan=LanConfig(
                    hosts=("127.0.0.1",),
                    tcp_port=settings.lan_tcp_port,
                    udp_port=settings.lan_udp_port,
                    broadcast_address="127.0.0.1",
                    broadcast_rounds=0,
                ),
            ),
            product=product,
        )
        self.bridge.report_listeners.append(self._report)
        await self.bridge.start()
        self.did = await self._wait_registered()
        await self._bind_user()
        self._tasks.append(asyncio.get_running_loop().create_task(self._drift(product), name="demo-drift"))

    async def _wait_registered(self) -> str:
        assert self.bridge is not None and self.cloud is not None and self.cloud.bus is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            did = self.bridge.identity.did
            if did and self.cloud.bus.is_online(did):
                return did
            await asyncio.sleep(0.05)
        raise CloudError(f"the bridge did not come online within {READY_TIMEOUT_S:.0f} s (see the log with -v)")

    async def _bind_user(self) -> None:
        """A user and a binding, made through the Open API exactly as an app would."""
        assert self.bridge is not None
        headers = {"X-Gizwits-Application-Id": self.appid}
        async with aiohttp.ClientSession(base_url=self.http_url) as http:
            async with http.post(
                "/app/users", json={"username": DEMO_USER, "password": DEMO_PASSWORD}, headers=headers
            ) as r:
                body = await r.json()
            if r.status == 400:  # a kept data dir: the user exists
                async with http.post(
                    "/app/login", json={"username": DEMO_USER, "password": DEMO_PASSWORD}, headers=headers
                ) as r:
                    body = await r.json()
            if "token" not in body:
                raise CloudError(f"cannot create the demo user: {body}")
            self.token = body["token"]
            devices = {"devices": [{"did": self.did, "passcode": self.bridge.identity.passcode, "remark": "demo"}]}
            async with http.post(
                "/app/bindings", json=devices, headers={**headers, "X-Gizwits-User-token": self.token}
            ) as r:
                bound = await r.json()
            if self.did not in bound.get("success", []):
                raise CloudError(f"cannot bind the demo device: {bound}")

    def curl_lines(self) -> list[str]:
        """Working curl commands for the two calls an app makes most."""
        base = self.http_url
        auth = f"-H 'X-Gizwits-Application-Id: {self.appid}' -H 'X-Gizwits-User-token: {self.token}'"
        control = json.dumps({"attrs": {"LED_OnOff": True, "LED_Color": "Pink", "Motor_Speed": 3}})
        return [
            f"curl -s -X POST {base}/app/control/{self.did} {auth} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(control)}",
            f"curl -s {base}/app/devdata/{self.did}/latest {auth}",
        ]

    def _report(self, attrs: dict[str, Any]) -> None:
        if self.on_report is not None:
            self.on_report(attrs)

    async def _drift(self, product: Product) -> None:
        """Move the board's sensors a little now and then, so that reports keep coming as on a real desk."""
        assert self.mcu is not None
        rng = random.Random()
        while True:
            await asyncio.sleep(self.settings.drift_interval_s)
            changes: dict[str, object] = {}
            for name in ("Temperature", "Humidity"):
                codec = product.codecs.get(name)
                if codec is None:
                    continue
                current = self.mcu.state[name]
                assert isinstance(current, int | float)
                low, high = codec.from_raw(codec.raw_min), codec.from_raw(codec.raw_max)
                assert isinstance(low, int | float) and isinstance(high, int | float)
                changes[name] = min(high, max(low, int(current) + rng.choice((-1, 1))))
            if changes:
                self.mcu.set_values(changes)

    async def close(self) -> None:
        """Stop every part that was started, newest first; each step runs even if an earlier one failed."""
        async with contextlib.AsyncExitStack() as stack:
            # Pushed in start order, so that the stack unwinds them in reverse.
            if self._temporary and self._data_dir is not None:
                stack.callback(shutil.rmtree, self._data_dir, ignore_errors=True)
            if self.cloud is not None:
                stack.push_async_callback(self.cloud.stop)
            if self._pair is not None:
                stack.callback(self._pair.close)
            if self.mcu is not None:
                stack.push_async_callback(self.mcu.close)
            if self.bridge is not None:
                stack.push_async_callback(self.bridge.close)
            stack.push_async_callback(self._stop_tasks)

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
