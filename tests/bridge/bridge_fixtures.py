"""The whole chain for bridge tests: local cloud (SQLite + managed Mosquitto) <-> Bridge <-> VirtualMcu on a pty.

The cloud runs on its own thread (:class:`CloudThread`), the bridge and the virtual MCU on the test's event loop.
The bridge opens the MCU through a symlink (``<tmp>/mcu``) to the pty's slave, as a udev rule gives a USB adapter a
stable name: unplugging closes the pty, replugging makes a new one and points the link at it.

Short heartbeats and keepalives come through the settings, so that faults are noticed in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gizdev.bridge.config import BridgeConfig, LanConfig
from gizdev.bridge.factory import build_bridge
from gizdev.bridge.gateway import Bridge
from gizdev.bridge.lan import LanServer, LanSettings
from gizdev.bridge.lan_uplink import LanUplink
from gizdev.bridge.uplink import CloudUplink, UplinkSettings
from gizdev.cloud.server import CloudConfig
from gizdev.codec.p0 import Product, load_product
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import PtyPair, open_pty_pair
from tests.cloud.broker_fixtures import free_port, wait_until_async
from tests.cloud.server_fixtures import FAST_KDF, CloudThread, world_searchable_dir
from tests.conftest import product_path

__all__ = [
    "GOKIT_PK",
    "GOKIT_SCHEMA",
    "GOKIT_SECRET",
    "CloudPlace",
    "Rig",
    "bridge_rig",
    "cloud_place_fixture",
    "eventually",
    "start_cloud",
]

GOKIT_PATH = product_path("gokit")
GOKIT_SCHEMA: dict[str, Any] = json.loads(GOKIT_PATH.read_text())
GOKIT_PK: str = GOKIT_SCHEMA["product_key"]
# The product secret the virtual GoKit reports in its device info (the SDK's default): the bridge registers through
# the encrypted device API with it, so the cloud's product must have the same.
GOKIT_SECRET = "0" * 32
HEARTBEAT_S = 0.3  # three misses (each 0.2 s + resends) make the MCU offline in ~2-3 s
KEEPALIVE_S = 2
BACKOFF_MAX_S = 1.0
PATIENCE_S = 10.0  # the acceptance: recovered within 10 s of the peer's return


@dataclass
class CloudPlace:
    """Where a cloud lives: its data dir, database and ports, so that it can be stopped and started again."""

    base: Path
    mosquitto_binary: str
    http_port: int = 0
    mqtt_port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def database(self) -> str:
        return f"sqlite+aiosqlite:///{self.base / 'cloud.db'}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def start_cloud(place: CloudPlace) -> CloudThread:
    """A cloud on ``place`` (the first start picks a free HTTP port, later ones reuse it)."""
    config = CloudConfig(
        data_dir=place.data_dir,
        http_port=place.http_port,
        mqtt_port=place.mqtt_port,
        database=place.database,
        kdf=FAST_KDF,
        mosquitto_binary=place.mosquitto_binary,
    )
    thread = CloudThread(config)
    thread.start()
    place.http_port = thread.http_port
    return thread


@pytest.fixture(name="cloud_place")
def cloud_place_fixture(mosquitto_binary: str) -> Iterator[CloudPlace]:
    base = world_searchable_dir()
    try:
        yield CloudPlace(base, mosquitto_binary)
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def eventually(predicate: Callable[[], bool], what: str, timeout_s: float = PATIENCE_S) -> None:
    await wait_until_async(predicate, timeout_s, what)


@dataclass
class Rig:
    cloud: CloudThread
    product: Product
    mcu: VirtualMcu
    bridge: Bridge
    state_dir: Path
    mcu_link: Path  # the stable name the bridge opens
    pty: PtyPair

    @property
    def did(self) -> str:
        return self.bridge.identity.did

    @property
    def cloud_uplink(self) -> CloudUplink:
        uplink = self.bridge.find_uplink(CloudUplink)
        assert uplink is not None
        return uplink

    @property
    def lan(self) -> LanServer | None:
        uplink = self.bridge.find_uplink(LanUplink)
        return None if uplink is None else uplink.server

    async def api(self, method: str, path: str, payload: Any = None, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.cloud.api, method, path, payload, **kwargs)

    def device(self) -> Any:
        return self.cloud.call(self.cloud.storage.get_device(self.did))

    def latest(self) -> dict[str, Any] | None:
        latest = self.cloud.call(self.cloud.storage.get_latest(self.did))
        return None if latest is None else dict(latest.attrs)

    def online(self) -> bool:
        return bool(self.bridge.identity.did) and bool(self.device().is_online)

    async def up(self) -> None:
        """Registered, connected, and the cloud sees the device online."""
        uplink = self.cloud_uplink
        await eventually(lambda: uplink.connected, "the bridge's MQTT connection")
        await asyncio.to_thread(self._wait_online, True)

    def _wait_online(self, wanted: bool) -> None:
        import time

        deadline = time.monotonic() + PATIENCE_S
        while self.online() is not wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"the cloud did not show the device {'online' if wanted else 'offline'}")
            time.sleep(0.05)

    async def wait_online(self, wanted: bool) -> None:
        await asyncio.to_thread(self._wait_online, wanted)

    async def unplug(self) -> None:
        """The USB adapter goes away: the pty is gone, and so is the name the bridge opens."""
        self.mcu_link.unlink()
        link = self.mcu.session.link
        assert link is not None
        link.close()  # the master side: the bridge's slave side hears the hang-up
        self.pty.close()

    async def replug(self) -> None:
        self.pty = open_pty_pair()
        await self.pty.connect_master(self.mcu.protocol_factory)
        self.mcu_link.symlink_to(self.pty.slave_path)

    def user_token(self, appid: str, username: str = "alice") -> str:
        """A user bound to the device (with the passcode the bridge registered)."""
        reply = self.cloud.api("POST", "/app/users", {"username": username, "password": "123456"}, appid=appid)
        assert reply.status == 201, reply
        token: str = reply.body["token"]
        devices = [{"did": self.did, "passcode": self.bridge.identity.passcode}]
        bound = self.cloud.api("POST", "/app/bindings", {"devices": devices}, appid=appid, token=token)
        assert bound.status == 200 and bound.body["success"] == [self.did], bound
        return token


def bridge_config(state_dir: Path, port: Path, cloud_url: str, **overrides: Any) -> BridgeConfig:
    return BridgeConfig(
        port=str(port),
        product=GOKIT_PATH,
        cloud=cloud_url,
        state_dir=state_dir,
        heartbeat_s=HEARTBEAT_S,
        lan=LanConfig(hosts=("127.0.0.1",), udp_port=0, tcp_port=0, broadcast_rounds=0),
        **overrides,
    )


def make_bridge(config: BridgeConfig, cloud_url: str) -> Bridge:
    return build_bridge(
        config,
        cloud_settings=UplinkSettings(
            cloud=cloud_url,
            encrypted=config.encrypted,
            keepalive_s=KEEPALIVE_S,
            backoff_initial_s=0.1,
            backoff_max_s=BACKOFF_MAX_S,
        ),
        lan=LanSettings(hosts=("127.0.0.1",), udp_port=0, tcp_port=0, broadcast_rounds=0),
        port_options={"backoff_max": 0.5},
    )


@contextlib.asynccontextmanager
async def bridge_rig(
    cloud: CloudThread,
    state_dir: Path,
    *,
    mcu_kwargs: dict[str, Any] | None = None,
    start: bool = True,
    encrypted: bool = True,
) -> AsyncIterator[Rig]:
    """A virtual GoKit on a pty and a bridge on it, connected to ``cloud`` (whose product list gets GoKit);
    ``encrypted=False``: the bridge uses GAgent's plain device API."""
    if GOKIT_PK not in {p.product_key for p in cloud.call(cloud.storage.list_products())}:
        cloud.add_product(GOKIT_SCHEMA, secret=GOKIT_SECRET)
    product = load_product(GOKIT_PATH)
    mcu = VirtualMcu(product, **(mcu_kwargs or {}))
    mcu_link = state_dir.parent / f"{state_dir.name}-mcu"
    cloud_url = f"http://127.0.0.1:{cloud.http_port}"
    bridge = make_bridge(bridge_config(state_dir, mcu_link, cloud_url, encrypted=encrypted), cloud_url)
    rig = Rig(cloud, product, mcu, bridge, state_dir, mcu_link, open_pty_pair())
    try:
        await rig.pty.connect_master(mcu.protocol_factory)
        mcu_link.symlink_to(rig.pty.slave_path)
        mcu.start()
        if start:
            await bridge.start()
        yield rig
    finally:
        await rig.bridge.close()
        await mcu.close()
        rig.pty.close()
        mcu_link.unlink(missing_ok=True)
