"""Prometheus metrics (``--metrics HOST:PORT``) for the bridge and the cloud: a registry, its HTTP server, and the
HTTP request metrics. What the parts already count (link stats, report counts, presence) is read at scrape time by
collectors (``new_registry(producer, …)``; the bridge's are in :mod:`gizdev.bridge.metrics`), so nothing extra runs
per frame; HTTP requests are observed by a middleware into prometheus_client's Counter and Histogram. Served by
prometheus_client's own HTTP server (a daemon thread: a scrape never waits on the event loop), loopback unless
configured. Below the bridge and the cloud; imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import Metric

from gizdev.errors import ConfigError
from gizdev.loopback import is_loopback_host

__all__ = ["HttpMetrics", "MetricsServer", "new_registry", "serve_metrics"]


class _Collector:
    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterable[Metric]:
        return list(self._produce())


class HttpMetrics:
    """HTTP requests by route and status, and their latency, for an aiohttp middleware to observe."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gizdev_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gizdev_http_request_seconds",
            "HTTP request handling time by route",
            ["route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)


@dataclass
class MetricsServer:
    """The running exposition server; ``close()`` stops it."""

    registry: CollectorRegistry
    server: Any
    thread: Any

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def new_registry(*producers: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) holding a collector per producer."""
    registry = CollectorRegistry(auto_describe=False)
    for produce in producers:
        registry.register(_Collector(produce))
    return registry


def serve_metrics(registry: CollectorRegistry, host: str, port: int, *, allow_remote: bool = False) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics``; a non-loopback host needs ``allow_remote``."""
    if not is_loopback_host(host) and not allow_remote:
        raise ConfigError(f"metrics on {host}: not a loopback address (allow it explicitly to expose the metrics)")
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return MetricsServer(registry, server, thread)
