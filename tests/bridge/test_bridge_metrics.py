"""The bridge's Prometheus endpoint, scraped over HTTP while a virtual GoKit misbehaves on a pty: the counters move
as frames are corrupted and requests resent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gizdev.bridge.config import BridgeConfig, LanConfig
from gizdev.bridge.factory import build_bridge
from gizdev.bridge.metrics import bridge_registry
from gizdev.errors import AckTimeout, ConfigError
from gizdev.metrics import serve_metrics
from tests.bridge.bridge_fixtures import GOKIT_PATH, HEARTBEAT_S, eventually
from tests.bridge.test_uplinks import board
from tests.link.helpers import run

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_as_frames_are_corrupted_and_resent(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with board(tmp_path) as b:
            config = BridgeConfig(
                port=str(b.path),
                product=GOKIT_PATH,
                state_dir=tmp_path / "state",
                heartbeat_s=HEARTBEAT_S,
                lan=LanConfig(enabled=False),
            )
            bridge = build_bridge(config, port_options={"backoff_max": 0.5})
            server = serve_metrics(bridge_registry(bridge), "127.0.0.1", 0)
            url = "http://{}:{}/metrics".format(*server.address)
            try:
                async with bridge:
                    await eventually(lambda: bridge.connection.session.mcu_online, "the MCU online")
                    start = await asyncio.to_thread(scrape, url)
                    assert value(start, "gizdev_mcu_online") == 1
                    assert (
                        value(start, "gizdev_serial_frames_total", direction="out", command="device_info_request") >= 1
                    )
                    assert value(start, "gizdev_serial_frames_total", direction="in", command="device_info_reply") >= 1
                    assert value(start, "gizdev_serial_ack_rtt_seconds_count") >= 1

                    # Reports are counted; every frame the MCU sends now carries a bad checksum half the time.
                    b.mcu.set_values({"LED_R": 1})
                    await eventually(lambda: bridge.reports_relayed >= 1, "a report relayed")
                    b.mcu.faults = dataclasses.replace(b.mcu.faults, bad_checksum_every=2)
                    for level in range(2, 8):
                        b.mcu.set_values({"LED_R": level})
                        await asyncio.sleep(0.05)
                    # The MCU stops acknowledging: the bridge's write is resent, then given up.
                    b.mcu.faults = dataclasses.replace(b.mcu.faults, bad_checksum_every=0, drop_acks=1.0)
                    with pytest.raises(AckTimeout):
                        await bridge.mcu.write({"LED_G": 9})
                    later = await asyncio.to_thread(scrape, url)
            finally:
                server.close()
            assert value(later, "gizdev_serial_bad_frames_total", reason="checksum") >= 1
            assert value(later, "gizdev_serial_bad_frames_total", reason="checksum") > value(
                start, "gizdev_serial_bad_frames_total", reason="checksum"
            )
            assert value(later, "gizdev_serial_resends_total") >= value(start, "gizdev_serial_resends_total") + 2
            # At least our write's; on a loaded machine a frame of the bridge's own (heartbeat, WiFi status) sent
            # while the MCU drops ACKs may time out too.
            assert (
                value(later, "gizdev_serial_ack_timeouts_total") >= value(start, "gizdev_serial_ack_timeouts_total") + 1
            )
            assert value(later, "gizdev_reports_relayed_total") >= 1
            assert value(later, "gizdev_serial_frames_total", direction="in", command="p0_up") >= 1
            assert value(later, "gizdev_serial_frames_total", direction="out", command="p0_down") >= 3  # 1 + 2 resends

    run(scenario(), timeout=60)


def test_metrics_listen_on_loopback_unless_allowed() -> None:
    from prometheus_client import CollectorRegistry

    with pytest.raises(ConfigError, match="loopback"):
        serve_metrics(CollectorRegistry(), "0.0.0.0", 0)
    with contextlib.closing(__import__("socket").socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="cannot listen"):
            serve_metrics(CollectorRegistry(), "127.0.0.1", taken.getsockname()[1])
