"""The local cloud as one object: storage, broker (managed Mosquitto or external), device bus and HTTP server.

Brokers: the managed Mosquitto (default); an external MQTT broker (``broker_url``; with ``worker_group``, several
workers share its device topics through ``$share`` subscriptions); or a RabbitMQ cluster (``amqp_urls``: the
workers consume device traffic over AMQP, and the cloud answers RabbitMQ's HTTP auth, see ``hw/deploy-scaled.md``).

``async with CloudServer(CloudConfig(data_dir=...)) as cloud:`` starts everything in dependency order and stops it
in reverse; ``cloud.http_url`` and ``cloud.mqtt_port`` say where it listens (port 0 = pick a free one for HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from aiohttp import web
from yarl import URL

from gizdev.cloud.broker import BrokerSettings, DeviceAccount, ManagedMosquitto
from gizdev.cloud.broker.access import LOOPBACK, BrokerAccess, Network
from gizdev.cloud.broker.settings import check_amqp_url, service_login
from gizdev.cloud.codes import CodeSettings
from gizdev.cloud.devicebus import DeviceBus
from gizdev.cloud.feeds import Feed
from gizdev.cloud.feeds.mqtt import MqttFeed
from gizdev.cloud.http import CloudContext, HttpSettings, make_app
from gizdev.cloud.http.api import MAX_REQUEST_LINE
from gizdev.cloud.http.realtime import new_hub
from gizdev.cloud.http.reset import RedactingAccessLogger
from gizdev.cloud.messages import OUTBOX_FILE, Channel, ChannelRouter, Outbox, OutboxSender, Sender
from gizdev.cloud.products import ProductCache
from gizdev.cloud.realtime import RealtimeHub, RealtimeSettings
from gizdev.cloud.scheduler.runner import SchedulerRunner, SchedulerSettings
from gizdev.cloud.security import KDF_DEFAULT, KdfParams, PasswordPolicy
from gizdev.cloud.storage import DATABASE_FILE, Storage, StorageError
from gizdev.cloud.throttle import AbuseLimits
from gizdev.errors import AddressInUse, BrokerError, ConfigError
from gizdev.loopback import is_loopback_host

if TYPE_CHECKING:
    from gizdev.cloud.messages.smtp import SmtpSettings
    from gizdev.cloud.messages.webhook import WebhookSettings
    from gizdev.metrics import HttpMetrics, MetricsServer

__all__ = ["DATABASE_FILE", "CloudConfig", "CloudServer", "database_for"]

_LOGGER = logging.getLogger(__name__)

BROKER_DIR = "broker"
_WILDCARDS = ("0.0.0.0", "::", "")
PRUNE_EVERY_S = 3600
# Throttle windows are an hour at most; an expired code is kept a day so that it is still told apart ("code
# expired!") from a wrong one.
PRUNE_AFTER_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class CloudConfig:
    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8080  # 0: any free port (tests)
    mqtt_host: str = "127.0.0.1"  # the managed broker's listener
    mqtt_port: int = 1883
    broker_url: str | None = None  # an external broker instead of the managed one
    database: str | None = None  # default: SQLite in data_dir
    public_mqtt_host: str | None = None  # what devices are told to connect to (default: the listener's address)
    public_mqtt_port: int | None = None
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    kdf: KdfParams = KDF_DEFAULT
    mosquitto_binary: str | None = None
    metrics: tuple[str, int] | None = None  # (host, port) of a Prometheus /metrics endpoint; loopback only
    amqp_urls: tuple[str, ...] = ()  # a RabbitMQ cluster's nodes (amqp://service-user:password@host:port/)
    worker_group: str | None = None  # several workers on one external MQTT broker: $share/<group>/ subscriptions
    broker_auth: bool = False  # answer the broker's HTTP auth (/broker/auth/*; always on with amqp_urls)
    broker_auth_peers: tuple[Network, ...] = LOOPBACK  # the brokers' addresses: only they may ask
    # What the bindings list announces for TLS (§3.9 port_s, wss_port): a TLS proxy in front of the broker and of
    # the HTTP port (this cloud itself listens for TLS nowhere); 0 = none. ws_port is the HTTP port itself.
    public_mqtts_port: int = 0
    public_wss_port: int = 0
    refuse_plain_registration: bool = False  # POST /dev/devices answers 9048 (device_api.py says why)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)  # the WebSocket API's limits
    limits: AbuseLimits = field(default_factory=AbuseLimits)  # 9041: logins, sign-ups, registrations
    oauth_endpoints: Mapping[str, str] = field(default_factory=dict)  # src (baidu, sina, qq) → token-check URL
    oauth_timeout_s: float = 5.0  # a provider's whole answer
    codes: CodeSettings = field(default_factory=CodeSettings)  # lifetimes and limits of codes, captchas, links
    public_url: str | None = None  # how apps and mail readers reach this cloud (captcha URLs, reset links)
    smtp: SmtpSettings | None = None  # mail over SMTP; None: mails go to the outbox
    sms_webhook: WebhookSettings | None = None  # SMS through a webhook; None: SMS go to the outbox

    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    # The device bus's MQTT client id: the managed broker pins it to the service user's name; workers sharing an
    # external broker need one each (the broker drops the older of two connections with one id).
    broker_client_id: str = "gizdev-cloud"

    console_app_list: bool = True  # the console's sign-in lists the apps (only ever on a loopback HTTP listener)

    def __post_init__(self) -> None:
        if self.public_url is not None:
            check_public_url(self.public_url)
        for url in self.amqp_urls:
            check_amqp_url(url)
        if self.amqp_urls and self.broker_url:
            raise ConfigError("RabbitMQ (AMQP URLs) or an MQTT broker URL, not both")
        if self.amqp_urls and self.worker_group:
            raise ConfigError("the worker group is for MQTT shared subscriptions; RabbitMQ workers share a queue")
        if self.worker_group is not None and not self.broker_url:
            raise ConfigError("a worker group needs an external broker (--broker): a managed one is one worker's")
        if self.worker_group is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", self.worker_group):
            raise ConfigError(f"worker group {self.worker_group!r}: 1-32 of A-Z a-z 0-9 _ -")
        if self.amqp_urls and not (self.public_mqtt_host and self.public_mqtt_port):
            raise ConfigError("with RabbitMQ, say where devices connect: --public-mqtt HOST:PORT (its MQTT listener)")
        if self.broker_auth and self.managed_broker:
            raise ConfigError("broker HTTP auth is for an external broker; the managed Mosquitto has its own files")

    @property
    def managed_broker(self) -> bool:
        """Whether the cloud runs its own Mosquitto (no external MQTT broker, no RabbitMQ)."""
        return not (self.broker_url or self.amqp_urls)

    @property
    def shared_broker(self) -> bool:
        """Whether other workers may use the same broker (so presence is not this worker's alone)."""
        return bool(self.amqp_urls or self.worker_group)


def check_public_url(text: str) -> None:
    """ConfigError unless ``text`` is an http(s) URL with a host and nothing after the path."""
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"the public URL {text!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"the public URL must start with http:// or https:// and name a host, not {text!r}")
    if url.query_string or url.fragment or url.user or url.password:
        raise ConfigError(f"the public URL must not carry a query, a fragment or credentials: {text!r}")


def database_for(config: CloudConfig) -> str | Path:
    return config.database if config.database else config.data_dir / DATABASE_FILE


class CloudServer:
    """Start with ``start()`` (or ``async with``); everything it started is stopped by ``stop()``."""

    def __init__(self, config: CloudConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.storage: Storage | None = None
        self.broker: ManagedMosquitto | None = None
        self.bus: DeviceBus | None = None
        self.context: CloudContext | None = None  # what the HTTP handlers share (its caches, its settings)
        self.realtime: RealtimeHub | None = None
        self.scheduler: SchedulerRunner | None = None
        self._runner: web.AppRunner | None = None
        self.metrics: MetricsServer | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self.http_port = config.http_port

    @property
    def http_url(self) -> str:
        host = self.config.http_host
        host = "127.0.0.1" if host in _WILDCARDS else host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.http_port}"

    @property
    def http_app(self) -> web.Application | None:
        """The running HTTP application (its router lists every route served); None before start."""
        return None if self._runner is None else self._runner.app

    def _feed(self) -> tuple[Feed, str, int, BrokerAccess | None]:
        """Where device traffic comes from, the host/port provisioning hands to devices, the broker HTTP auth."""
        config = self.config
        if config.amqp_urls:
            from gizdev.cloud.feeds.amqp import AmqpFeed  # noqa: PLC0415 - aio-pika only if used

            assert config.public_mqtt_host and config.public_mqtt_port
            username, password, vhost = service_login(config.amqp_urls[0])
            rabbit = BrokerAccess(username, password, vhost=vhost, peers=config.broker_auth_peers)
            return AmqpFeed(config.amqp_urls), config.public_mqtt_host, config.public_mqtt_port, rabbit
        settings, host, port = self._broker_settings()
        access = None
        if config.broker_auth:
            if not settings.username or not settings.password:
                raise ConfigError("broker HTTP auth answers for the cloud's own login: the broker URL needs user:pass")
            access = BrokerAccess(settings.username, settings.password, peers=config.broker_auth_peers)
        return MqttFeed(settings, group=config.worker_group, client_id=config.broker_client_id), host, port, access

    def _broker_settings(self) -> tuple[BrokerSettings, str, int]:
        """How the cloud logs in over MQTT, and the host/port provisioning hands to devices."""
        config = self.config
        if config.broker_url:
            settings = BrokerSettings.from_url(config.broker_url)
            public = (config.public_mqtt_host or settings.host, config.public_mqtt_port or settings.port)
            return settings, *public
        assert self.broker is not None
        listen = config.mqtt_host
        public_host = config.public_mqtt_host or ("127.0.0.1" if listen in _WILDCARDS else listen)
        return self.broker.settings, public_host, config.public_mqtt_port or config.mqtt_port

    async def start(self) -> None:
        config = self.config
        try:
            self._prepare_data_dir()
        except OSError as exc:
            raise ConfigError(f"cannot use data dir {config.data_dir}: {exc}") from exc
        try:
            self.storage = await Storage.open(database_for(config), clock=self.clock)
            feed, public_host, public_port, access = self._feed()
            products = ProductCache(self.storage)
            self.bus = DeviceBus(self.storage, products, feed, shared=config.shared_broker, clock=self.clock)
            if self.broker is not None:
                self.broker.on_log_line = self.bus.on_broker_log
                await self.broker.set_devices(await self._accounts())
                await self._start_broker(self.broker)
            await self.bus.start()
            self._housekeeping = asyncio.get_running_loop().create_task(self._prune(self.storage), name="prune")
            ctx = CloudContext(
                storage=self.storage,
                bus=self.bus,
                products=products,
                accounts=self.broker,
                messages=self._sender(),
                settings=HttpSettings(
                    mqtt_host=public_host,
                    mqtt_port=public_port,
                    mqtt_tls_port=config.public_mqtts_port,
                    ws_port=config.http_port,
                    wss_port=config.public_wss_port,
                    password_policy=config.password_policy,
                    kdf=config.kdf,
                    broker_access=access,
                    codes=config.codes,
                    public_url=config.public_url,
                    refuse_plain_registration=config.refuse_plain_registration,
                    limits=config.limits,
                    oauth_endpoints=dict(config.oauth_endpoints),
                    oauth_timeout_s=config.oauth_timeout_s,
                    console_app_list=config.console_app_list and is_loopback_host(config.http_host),
                ),
                clock=self.clock,
                realtime_settings=config.realtime,
            )
            self.context = ctx
            self.realtime = new_hub(ctx)
            self.bus.add_listener(self.realtime)
            http_metrics = self._start_metrics(config.metrics) if config.metrics else None
            self._runner = web.AppRunner(
                make_app(ctx, http_metrics),
                handle_signals=False,
                access_log_class=RedactingAccessLogger,
                max_line_size=MAX_REQUEST_LINE,
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, config.http_host, config.http_port)
            try:
                await site.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUse(config.http_host, config.http_port, "HTTP") from exc
                raise ConfigError(f"cannot listen on {config.http_host}:{config.http_port}: {exc}") from exc
            self.http_port = _bound_port(site) or config.http_port
            ctx.origin = self.http_url
            if config.smtp is not None and config.public_url is None:
                _LOGGER.warning(
                    "reset links in mails point at %s (no --public-url): only who can reach that address can use them",
                    self.http_url,
                )
            # The realtime API is served on this port (ws_port of the bindings list); port 0 is known only now.
            ctx.settings = dataclasses.replace(ctx.settings, ws_port=self.http_port)
            # Only now: a broker with HTTP auth asks this server whether the cloud's own login may come in.
            await self.bus.wait_ready()
            # Last: its first tick may run what fell due while the cloud was down, through a bus that is up.
            self.scheduler = SchedulerRunner(self.storage, self.bus, config.scheduler, clock=self.clock)
            await self.scheduler.start()
        except BaseException:
            await self.stop()
            raise
        _LOGGER.info(
            "cloud up: HTTP %s, MQTT %s (%s), database %s",
            self.http_url,
            f"{public_host}:{public_port}",
            "managed mosquitto" if self.broker else "external broker",
            "PostgreSQL" if config.database and config.database.startswith("postgres") else "SQLite",
        )
        if config.refuse_plain_registration:
            _LOGGER.info("plain device registration refused (9048): new devices register through the encrypted API")

    async def _prune(self, storage: Storage) -> None:
        """Every hour: forget throttle events, codes, app tokens and captcha pictures of more than a day ago."""
        while True:
            try:
                removed = await storage.prune(int(self.clock()) - PRUNE_AFTER_S)
            except StorageError as exc:  # the database is away for now: try again next time
                _LOGGER.warning("pruning old codes and throttle events failed: %s", exc)
            else:
                if removed:
                    _LOGGER.info("pruned %d old codes, tokens, captchas and throttle events", removed)
            await asyncio.sleep(PRUNE_EVERY_S)

    def _sender(self) -> Sender:
        """The outbox, with SMTP for mail and the webhook for SMS when they are configured."""
        config = self.config
        outbox = OutboxSender(Outbox(config.data_dir / OUTBOX_FILE, clock=self.clock))
        routes: dict[Channel, Sender] = {}
        if config.smtp is not None:
            from gizdev.cloud.messages.smtp import SmtpSender  # noqa: PLC0415 - only when configured

            routes["email"] = SmtpSender(config.smtp)
        if config.sms_webhook is not None:
            from gizdev.cloud.messages.webhook import WebhookSender  # noqa: PLC0415 - only when configured

            routes["sms"] = WebhookSender(config.sms_webhook)
        if config.codes.insecure_test_captcha:
            _LOGGER.warning(
                "--insecure-test-captcha: every captcha's answer is written to the outbox (%s); development only",
                config.data_dir / OUTBOX_FILE,
            )
        return ChannelRouter(outbox, routes) if routes else outbox

    def _prepare_data_dir(self) -> None:
        """The data dir (0700) and, with a managed broker, the way in to its own directory for the broker's user.

        Run as root, mosquitto drops to the ``mosquitto`` user before it reads its password and ACL files in
        ``broker/``, so it must be able to pass through the data dir: the data dir goes to that user's group
        with search permission only (``ManagedMosquitto.grant_search``). Search lets it open a path it knows,
        nothing more; the SQLite database next to ``broker/`` is kept to its owner (0600, and SQLite gives its
        ``-wal``/``-shm`` files the database's mode), so the broker's user cannot read it.
        """
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not config.database:
            _private_file(config.data_dir / DATABASE_FILE)
        if config.managed_broker:
            self.broker = ManagedMosquitto(
                config.data_dir / BROKER_DIR,
                host=config.mqtt_host,
                port=config.mqtt_port,
                binary=config.mosquitto_binary,
            )
            self.broker.grant_search(config.data_dir)

    async def _start_broker(self, broker: ManagedMosquitto) -> None:
        try:
            await broker.start()
        except BrokerError as exc:
            # Mosquitto's own words when its listener's port is taken (e.g. by a mosquitto an earlier run left).
            if "Address already in use" in exc.stderr:
                raise AddressInUse(self.config.mqtt_host, self.config.mqtt_port, "MQTT") from exc
            raise

    async def _accounts(self) -> list[DeviceAccount]:
        assert self.storage is not None
        accounts: list[DeviceAccount] = []
        skip = 0
        while True:
            page = await self.storage.list_devices(include_disabled=False, limit=1000, skip=skip)
            accounts += [
                DeviceAccount(d.did, d.mqtt_password_hash, d.product_key, hashed=True)
                if d.mqtt_password_hash
                else DeviceAccount(d.did, d.passcode, d.product_key)
                for d in page
            ]
            if len(page) < 1000:
                return accounts
            skip += len(page)

    def _start_metrics(self, address: tuple[str, int]) -> HttpMetrics:
        """Serve Prometheus text at /metrics: the HTTP requests, and the device bus's figures read at scrape time."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric  # noqa: PLC0415

        from gizdev.metrics import HttpMetrics, new_registry, serve_metrics  # noqa: PLC0415

        def bus_metrics() -> Iterator[Metric]:
            bus = self.bus
            if bus is None:
                return
            yield GaugeMetricFamily("gizdev_devices_online", "Devices connected now", value=bus.online_count)
            yield CounterMetricFamily("gizdev_reports_stored", "Device reports stored", value=bus.stats.reports)
            yield CounterMetricFamily(
                "gizdev_controls_sent", "Controls published to devices", value=bus.stats.controls_sent
            )
            hub = self.realtime
            if hub is not None:
                yield GaugeMetricFamily(
                    "gizdev_ws_sessions", "WebSocket API clients logged in now", value=hub.session_count
                )
                yield CounterMetricFamily(
                    "gizdev_ws_dropped", "WebSocket API clients dropped for not reading", value=hub.stats.dropped
                )

        registry = new_registry(bus_metrics)
        http = HttpMetrics(registry)
        self.metrics = serve_metrics(registry, *address)
        return http

    async def stop(self) -> None:
        """Stop whatever was started, in reverse order; idempotent."""
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.stop()
        runner, self._runner = self._runner, None
        self.context = None
        if runner is not None:
            await runner.cleanup()
        metrics, self.metrics = self.metrics, None
        if metrics is not None:
            metrics.close()
        housekeeping, self._housekeeping = self._housekeeping, None
        if housekeeping is not None:
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
        hub, self.realtime = self.realtime, None
        bus, self.bus = self.bus, None
        if hub is not None:
            if bus is not None:
                bus.remove_listener(hub)
            await hub.close()
        if bus is not None:
            await bus.stop()
        broker, self.broker = self.broker, None
        if broker is not None:
            await broker.stop()
        storage, self.storage = self.storage, None
        if storage is not None:
            with contextlib.suppress(Exception):
                await storage.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; take group and other bits off it and its
    SQLite companions (``-wal``, ``-shm``) if it does."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        with contextlib.suppress(FileNotFoundError):
            mode = file.stat().st_mode & 0o7777
            if mode & 0o077:
                file.chmod(mode & 0o700)


def _bound_port(site: web.TCPSite) -> int | None:
    server = site._server  # aiohttp exposes the bound sockets only through the asyncio server
    sockets = getattr(server, "sockets", None) or []
    for sock in sockets:
        return int(sock.getsockname()[1])
    return None
