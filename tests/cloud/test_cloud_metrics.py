"""``gizdev cloud serve --metrics``: Prometheus text with HTTP requests by route and status, their latency, devices
online, reports stored and controls sent — scraped from a running cloud with a GAgent-like device connected."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from tests.bridge.test_bridge_metrics import Samples, scrape, value
from tests.cloud.broker_fixtures import mosquitto_binary_fixture  # noqa: F401
from tests.cloud.server_fixtures import make_cloud, world_searchable_dir
from tests.cloud.test_cloud_e2e import connected_device, register, wait_for
from tests.guards import run


def test_cloud_metrics_count_requests_and_devices(mosquitto_binary: str) -> None:
    base = world_searchable_dir()
    cloud = make_cloud(
        f"sqlite+aiosqlite:///{Path(base) / 'cloud.db'}",
        base / "data",
        mosquitto_binary=mosquitto_binary,
        metrics=("127.0.0.1", 0),
    )
    try:
        metrics = cloud.server.metrics
        assert metrics is not None
        url = "http://{}:{}/metrics".format(*metrics.address)
        cloud.add_product()
        did = register(cloud)
        assert cloud.api("GET", "/errors").status == 200
        assert cloud.api("GET", "/no/such/path").status == 404
        assert cloud.api("GET", "/app/users").status == 400  # no app id: 9003 from the error boundary

        async def connect_and_scrape() -> tuple[Samples, Samples]:
            before = await asyncio.to_thread(scrape, url)
            device = await connected_device(cloud, did)
            try:
                await asyncio.to_thread(
                    wait_for, lambda: cloud.server.bus is not None and cloud.server.bus.is_online(did)
                )
                return before, await asyncio.to_thread(scrape, url)
            finally:
                await device.close()

        before, after = run(connect_and_scrape())
        requests = "gizdev_http_requests_total"
        assert value(after, requests, method="POST", route="/dev/devices", status="201") == 1
        assert value(after, requests, method="GET", route="/errors", status="200") == 1
        assert value(after, requests, method="GET", route="unmatched", status="404") == 1
        assert value(after, requests, method="GET", route="/app/users", status="400") == 1
        assert value(after, "gizdev_http_request_seconds_count", route="/errors") == 1
        assert value(before, "gizdev_devices_online") == 0
        assert value(after, "gizdev_devices_online") == 1
        assert (("gizdev_reports_stored_total", ()) in after) and (("gizdev_controls_sent_total", ()) in after)
    finally:
        cloud.close()
        shutil.rmtree(base, ignore_errors=True)
