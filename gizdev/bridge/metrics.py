"""The bridge's metrics, read at scrape time from what the link, the session, the bridge and the uplinks count.

Serial frames in/out by command, bad frames by reason, resends, ACK timeouts, the ACK round-trip histogram (the
session's :class:`~gizdev.link.protocol.LinkStats`, kept across reconnections), heartbeat misses, MCU online, reports
relayed, and each uplink's connected state and connection count.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from gizdev.bridge.gateway import Bridge
from gizdev.bridge.interface import Uplink
from gizdev.codec.commands import Command
from gizdev.link.protocol import Histogram
from gizdev.metrics import new_registry

__all__ = ["bridge_metrics", "bridge_registry", "uplink_name"]


def _command_name(code: int) -> str:
    try:
        return Command(code).name.lower()
    except ValueError:
        return f"0x{code:02x}"


def _histogram(name: str, doc: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=histogram.total)


def uplink_name(uplink: Uplink) -> str:
    """``cloud``, ``lan``, ``mqtt``; another uplink by its class name."""
    kind = type(uplink).__name__
    return {"CloudUplink": "cloud", "LanUplink": "lan", "MqttJsonUplink": "mqtt"}.get(kind, kind.lower())


def bridge_metrics(bridge: Bridge) -> Iterator[Metric]:
    """Every metric family of ``bridge``, now."""
    session = bridge.connection.session
    stats = session.stats
    frames = CounterMetricFamily(
        "gizdev_serial_frames", "Serial frames by direction and command", labels=["direction", "command"]
    )
    for direction, counts in (("in", stats.frames_in_by_cmd), ("out", stats.frames_out_by_cmd)):
        for code, count in sorted(counts.items()):
            frames.add_metric([direction, _command_name(code)], count)
    yield frames
    bad = CounterMetricFamily("gizdev_serial_bad_frames", "Bad serial frames by reason", labels=["reason"])
    for reason in ("checksum", "garbage", "malformed"):
        bad.add_metric([reason], stats.bad_frames_by_reason.get(reason, 0))
    yield bad
    yield CounterMetricFamily("gizdev_serial_resends", "Requests sent again for want of an ACK", value=stats.resends)
    yield CounterMetricFamily(
        "gizdev_serial_ack_timeouts", "Requests given up unacknowledged", value=stats.ack_timeouts
    )
    yield CounterMetricFamily("gizdev_serial_duplicates", "Resent requests answered again", value=stats.duplicates)
    yield _histogram("gizdev_serial_ack_rtt_seconds", "From a request's first transmission to its ACK", stats.ack_rtt)
    yield CounterMetricFamily("gizdev_mcu_heartbeats_missed", "Unanswered heartbeats", value=session.heartbeats_missed)
    yield GaugeMetricFamily("gizdev_mcu_online", "1 while the MCU answers", value=int(session.mcu_online))
    yield CounterMetricFamily(
        "gizdev_reports_relayed", "MCU reports handed to the uplinks", value=bridge.reports_relayed
    )
    connected = GaugeMetricFamily("gizdev_uplink_connected", "1 while the uplink is connected", labels=["uplink"])
    connects = CounterMetricFamily(
        "gizdev_uplink_connects", "Connections made (the first and every reconnection)", labels=["uplink"]
    )
    for uplink in bridge.uplinks:
        status = uplink.status()
        connected.add_metric([uplink_name(uplink)], int(status.cloud or status.router))
        connects.add_metric([uplink_name(uplink)], int(getattr(uplink, "connects", 0)))
    yield connected
    yield connects


def bridge_registry(bridge: Bridge) -> CollectorRegistry:
    """A registry that reads ``bridge`` at every scrape."""
    return new_registry(lambda: bridge_metrics(bridge))
