"""A whole local cloud (storage + managed Mosquitto + device bus + HTTP) for end-to-end tests.

``cloud`` runs :class:`CloudServer` on a background thread's event loop, on SQLite and on PostgreSQL (through
``db_url``), HTTP on a free loopback port, Mosquitto on another. Tests talk to it like any client: HTTP with
:meth:`CloudThread.api` (stdlib, synchronous), MQTT with ``RawMqtt31`` or :class:`gizdev.mqtt.MqttClient` from
their own event loop.

Import the fixtures into a test module::

    (tests/cloud/conftest.py already does this for the tests in this folder)
    from tests.cloud.server_fixtures import cloud_fixture  # noqa: F401
"""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gizdev.cloud.security import KdfParams, new_app_id, new_app_secret, new_product_secret
from gizdev.cloud.server import CloudConfig, CloudServer
from gizdev.cloud.storage import Storage
from gizdev.schema.loader import parse_schema
from tests.cloud.broker_fixtures import free_port
from tests.loop_thread import LoopThread

__all__ = ["FAST_KDF", "TEMP_HUMI_SCHEMA", "CloudThread", "Reply", "cloud_fixture", "make_cloud"]


# Tests create many users; the production KDF (64 MiB, ~170 ms) would dominate the suite. Same algorithm.
FAST_KDF = KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1)

# The seed document's examples control "temp" and "humi" and read them back; a product with exactly those.
TEMP_HUMI_SCHEMA: dict[str, Any] = {
    "name": "seed-example",
    "product_key": "5eed0000000000000000000000000001",
    "protocolType": "standard",
    "packetVersion": "0x00000004",
    "entities": [
        {
            "id": 0,
            "name": "entity0",
            "display_name": "device",
            "attrs": [
                {
                    "id": 0,
                    "name": "temp",
                    "display_name": "temperature",
                    "type": "status_writable",
                    "data_type": "uint8",
                    "position": {"byte_offset": 0, "bit_offset": 0, "len": 1, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 100, "ratio": 1, "addition": 0},
                    "desc": "",
                },
                {
                    "id": 1,
                    "name": "humi",
                    "display_name": "humidity",
                    "type": "status_writable",
                    "data_type": "uint8",
                    "position": {"byte_offset": 1, "bit_offset": 0, "len": 1, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 100, "ratio": 1, "addition": 0},
                    "desc": "",
                },
            ],
        }
    ],
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # parsed JSON, or the text when the reply is not JSON
    raw: bytes


class CloudThread(LoopThread):
    """A running :class:`CloudServer` on its own loop and thread."""

    def __init__(self, config: CloudConfig, clock: Callable[[], float] = time.time) -> None:
        self.server = CloudServer(config, clock=clock)
        self._serve_every_product: list[str] = []  # apps made by add_app() without products
        super().__init__("cloud-loop", self.server.start, self.server.stop)

    @property
    def storage(self) -> Storage:
        assert self.server.storage is not None
        return self.server.storage

    @property
    def http_port(self) -> int:
        return self.server.http_port

    @property
    def mqtt_port(self) -> int:
        return self.server.config.mqtt_port

    # -- administration (what the CLI does), straight on the server's storage ----------------------------------

    def add_app(self, products: list[str] | None = None) -> str:
        """A new app serving ``products``; None (most tests): every product, those added later included, as an
        admin would link them (`gizdev cloud app link`). The tests of who may reach a device say which."""
        if products is not None:
            return self.call(self.storage.add_app(new_app_id(), new_app_secret(), "test", products)).appid
        every = [product.product_key for product in self.call(self.storage.list_products())]
        appid = self.call(self.storage.add_app(new_app_id(), new_app_secret(), "test", every)).appid
        self._serve_every_product.append(appid)
        return appid

    def add_product(self, schema: dict[str, Any] = TEMP_HUMI_SCHEMA, secret: str | None = None) -> tuple[str, str]:
        parsed = parse_schema(schema)
        assert parsed.product_key is not None
        product = self.call(
            self.storage.add_product(parsed.product_key, secret or new_product_secret(), parsed.name, parsed)
        )
        for appid in self._serve_every_product:
            self.call(self.storage.link_app_product(appid, product.product_key))
        self.forget_cached_apps()
        return product.product_key, product.product_secret

    def forget_cached_apps(self) -> None:
        """What the server has cached of its apps goes (an admin's change from another process would be seen
        within the cache's TTL; a test need not wait for it)."""

        async def forget() -> None:
            if self.server.context is not None:
                self.server.context.apps.drop_where(lambda _appid: True)

        self.call(forget())

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("latin-1")
        return Reply(response.status, parsed, raw)

    def api(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        appid: str | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """An Open API call: JSON body, the Gizwits headers."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        if appid is not None:
            sent["X-Gizwits-Application-Id"] = appid
        if token is not None:
            sent["X-Gizwits-User-token"] = token
        body = None if payload is None else json.dumps(payload).encode()
        return self.request(method, path, body, sent)

    def form(self, method: str, path: str, text: str) -> Reply:
        """A device API call: a form-encoded body, as GAgent sends it."""
        return self.request(
            method,
            path,
            text.encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "Host": "api.gizwits.com"},
        )


def world_searchable_dir() -> Path:
    """A temp dir the ``mosquitto`` user can reach (so a root test run drops privileges as production does)."""
    path = Path(tempfile.mkdtemp(prefix="gizdev-cloud-", dir="/tmp" if Path("/tmp").is_dir() else None))
    path.chmod(0o711)
    return path


def make_cloud(
    database: str, data_dir: Path, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> CloudThread:
    config = CloudConfig(
        data_dir=data_dir,
        http_port=0,
        mqtt_port=free_port(),
        database=database,
        kdf=FAST_KDF,
        **overrides,
    )
    thread = CloudThread(config, clock)
    thread.start()
    return thread


@pytest.fixture(name="cloud")
def cloud_fixture(db_url: str, mosquitto_binary: str) -> Iterator[CloudThread]:
    """A running cloud on ``db_url`` (SQLite, then PostgreSQL) with its own managed Mosquitto."""
    base = world_searchable_dir()
    thread = make_cloud(db_url, base / "data", mosquitto_binary=mosquitto_binary)
    try:
        yield thread
    finally:
        thread.close()
        shutil.rmtree(base, ignore_errors=True)
