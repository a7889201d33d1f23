"""The home-automation uplink: the MCU's datapoints as JSON on any MQTT broker, with Home Assistant discovery.

Topics (``prefix`` default ``gizdev``, ``device`` a stable name from the bridge's identity)::

    {prefix}/{device}/state         retained JSON of every datapoint (names, app units, enum labels, binary as hex)
    {prefix}/{device}/availability  retained "online" / "offline"; "offline" is also the connection's will, and is
                                    published while the MCU is silent
    {prefix}/{device}/set           in: JSON of attrs, checked by the codec before anything reaches the UART
    {prefix}/{device}/get           in: anything; the bridge reads the MCU and publishes the state
    {prefix}/{device}/error         out: why a set or get was refused or failed (JSON), not retained
    {discovery_prefix}/…/config     retained HA discovery (gizdev.bridge.homeassistant), again whenever HA's
                                    status topic ({discovery_prefix}/status) says "online"

Publishing never waits in the MCU's callback: a report updates the state and wakes one publisher task, which sends
the latest state (reports that arrive meanwhile are folded into it: the topic is retained state, not a log). While
the broker is away the state is kept and published once the connection is back; the loop reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from gizdev.backoff import Backoff
from gizdev.bridge.homeassistant import (
    DEFAULT_DISCOVERY_PREFIX,
    HaDevice,
    StateTopics,
    discovery_configs,
    retire_configs,
)
from gizdev.bridge.identity import IdentityStore
from gizdev.bridge.interface import Mcu, UplinkStatus
from gizdev.codec.commands import DeviceInfo
from gizdev.codec.p0 import P0Message, Product
from gizdev.codec.values import Value
from gizdev.errors import BrokerError, ConfigError, GizdevError, PayloadError
from gizdev.link.module import ModuleEvent
from gizdev.mqtt import MqttClient
from gizdev.mqtt.client import MqttMessage
from gizdev.mqtt.packets import Will

__all__ = ["MqttJsonSettings", "MqttJsonUplink", "default_device_name", "retire"]

_LOGGER = logging.getLogger(__name__)

ONLINE, OFFLINE = b"online", b"offline"
MAX_COMMAND_BYTES = 64 * 1024
_TOPIC_PART = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class MqttJsonSettings:
    """``url``: ``mqtt://[user:pass@]host[:port]`` or ``mqtts://`` (TLS, port 8883 by default)."""

    url: str
    prefix: str = "gizdev"
    device: str = ""  # default: default_device_name(product, identity)
    discovery: bool = True
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
    qos: int = 0
    retain: bool = True
    client_id: str = ""  # default: gizdev-<device>
    keepalive_s: int = 60
    ca_file: str = ""  # mqtts: a CA bundle to trust instead of the system's
    units: dict[str, str] = field(default_factory=dict)  # datapoint → unit_of_measurement (schemas carry none)
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"mqtt must be mqtt://[user:pass@]host[:port] or mqtts://…, not {self.url!r}")
        try:
            parts.port  # noqa: B018 - raises for a bad port
        except ValueError as exc:
            raise ConfigError(f"mqtt {self.url!r}: {exc}") from None
        if self.qos not in (0, 1):
            raise ConfigError(f"mqtt.qos is 0 or 1, not {self.qos}")
        for name in ("prefix", "discovery_prefix"):
            value = getattr(self, name)
            if not value or any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
                raise ConfigError(f"mqtt.{name} must be a topic prefix without wildcards, not {value!r}")
        if self.device and _TOPIC_PART.search(self.device):
            raise ConfigError(f"mqtt.device is letters, digits, '_' and '-', not {self.device!r}")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def username(self) -> str | None:
        user = urlsplit(self.url).username
        return unquote(user) if user is not None else None

    @property
    def password(self) -> str | None:
        password = urlsplit(self.url).password
        return unquote(password) if password is not None else None

    def tls(self) -> ssl.SSLContext | None:
        if urlsplit(self.url).scheme != "mqtts":
            return None
        return ssl.create_default_context(cafile=self.ca_file or None)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        parts = urlsplit(self.url)
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{parts.hostname}:{self.port}"


def default_device_name(product: Product, mac: str) -> str:
    """``<product>_<last 6 MAC digits>``: stable across restarts (the MAC is kept in the state dir)."""
    stem = _TOPIC_PART.sub("_", product.name).strip("_").lower() or "device"
    return f"{stem}_{mac[-6:].lower()}"


class MqttJsonUplink:
    """An :class:`~gizdev.bridge.interface.Uplink` publishing JSON state and taking JSON commands over MQTT."""

    def __init__(self, settings: MqttJsonSettings, identities: IdentityStore, product: Product) -> None:
        self.settings = settings
        self.identities = identities
        self.product = product
        mac = identities.identity.mac
        self.device = settings.device or default_device_name(product, mac)
        self.topics = StateTopics(settings.prefix, self.device, dict(settings.units))
        self.ha_device = HaDevice(f"gizdev_{mac.lower()}", self.device, product.name)
        self.client_id = settings.client_id or f"gizdev-{self.device}"[:64]
        self.connects = 0
        self.commands_refused = 0
        self._mcu: Mcu | None = None
        self._client: MqttClient | None = None
        self._state: dict[str, Value] = {}
        self._online = False
        self._dirty = asyncio.Event()  # state, availability or discovery to (re)publish
        self._discovery_due = True
        self._task: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[MqttMessage] = asyncio.Queue(maxsize=100)

    # -- Uplink ---------------------------------------------------------------------------------------------------

    async def start(self, mcu: Mcu) -> None:
        self._mcu = mcu
        self._state.update(mcu.status)
        self._online = mcu.online
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mqtt-json-{self.device}")

    async def close(self) -> None:
        client = self._client
        if client is not None and client.connected:
            # A clean stop says so, retained (the DISCONNECT that follows suppresses the will).
            with contextlib.suppress(BrokerError, OSError):
                await client.publish(self.topics.availability, OFFLINE, retain=True, qos=self.settings.qos)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def mcu_report(self, p0: bytes, message: P0Message) -> None:
        self._state.update(message.attrs)
        self._dirty.set()

    def mcu_online(self, info: DeviceInfo | None) -> None:
        self._online = True
        if info is not None:
            self.ha_device = dataclasses.replace(
                self.ha_device, sw_version=info.software_version, hw_version=info.hardware_version
            )
        self._discovery_due = True
        self._dirty.set()
        self._read_soon()  # the state now, read afresh (what was kept from before may be stale)

    def mcu_offline(self) -> None:
        self._online = False
        self._dirty.set()

    def mcu_event(self, event: ModuleEvent) -> None:
        return None

    def status(self) -> UplinkStatus:
        return UplinkStatus(router=self.connected)

    def describe(self) -> str:
        return f"MQTT {self.settings.safe_url} as {self.topics.base}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    # -- the connection -------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        while True:
            client = self.new_client(will=Will(self.topics.availability, OFFLINE, retain=True, qos=self.settings.qos))
            try:
                await client.connect()
                for topic in (self.topics.set, f"{self.topics.base}/get", f"{self.settings.discovery_prefix}/status"):
                    await client.subscribe(topic, qos=self.settings.qos)
                self._client = client
                self.connects += 1
                backoff.reset()
                _LOGGER.info("MQTT: connected to %s as %s", self.settings.safe_url, self.topics.base)
                self._discovery_due = True
                self._dirty.set()
                self._mcu_changed()
                if self._online:
                    self._read_soon()
                await self._serve(client)
            except BrokerError as exc:
                _LOGGER.warning("MQTT %s: %s; retrying in %.1f s", self.settings.safe_url, exc, backoff.delay)
            finally:
                self._client = None
                self._mcu_changed()
                await client.close()
            await backoff.wait()

    def new_client(self, will: Will | None = None) -> MqttClient:
        """A client for the configured broker, as this uplink (client id, credentials, TLS, keepalive)."""
        return MqttClient(
            self.settings.host,
            self.settings.port,
            client_id=self.client_id,
            username=self.settings.username,
            password=self.settings.password,
            keepalive_s=self.settings.keepalive_s,
            tls=self.settings.tls(),
            will=will,
        )

    def _read_soon(self) -> None:
        """Queue a read of the MCU (as a ``get`` would), published once the connection serves commands."""
        with contextlib.suppress(asyncio.QueueFull):
            self._commands.put_nowait(MqttMessage(f"{self.topics.base}/get", b""))

    def _mcu_changed(self) -> None:
        if self._mcu is not None:
            self._mcu.uplink_changed()

    async def _serve(self, client: MqttClient) -> None:
        loop = asyncio.get_running_loop()
        helpers = [
            loop.create_task(self._publisher(client), name=f"mqtt-json-publish-{self.device}"),
            loop.create_task(self._command_runner(client), name=f"mqtt-json-commands-{self.device}"),
        ]
        try:
            async for message in client.messages():  # raises BrokerError when the connection ends
                if message.topic == f"{self.settings.discovery_prefix}/status":
                    if message.payload == ONLINE:  # HA (re)started: publish the discovery again
                        self._discovery_due = True
                        self._dirty.set()
                    continue
                try:
                    self._commands.put_nowait(message)
                except asyncio.QueueFull:
                    self._refuse(client, message, "too many commands waiting for the MCU; this one was dropped")
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _publisher(self, client: MqttClient) -> None:
        qos, retain = self.settings.qos, self.settings.retain
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                if self._discovery_due and self.settings.discovery:
                    self._discovery_due = False
                    for topic, config in discovery_configs(
                        self.product.schema, self.ha_device, self.topics, self.settings.discovery_prefix
                    ):
                        await client.publish(topic, json.dumps(config).encode(), retain=True, qos=qos)
                online = ONLINE if self._online else OFFLINE
                await client.publish(self.topics.availability, online, retain=True, qos=qos)
                if self._state:
                    state = json.dumps(self.product.attrs_to_json(self._state)).encode()
                    await client.publish(self.topics.state, state, retain=retain, qos=qos)
        except BrokerError as exc:  # the connection is going: end it, so that the loop reconnects and republishes
            _LOGGER.info("MQTT: publishing failed (%s)", exc)
            self._dirty.set()
            await client.close()

    async def _command_runner(self, client: MqttClient) -> None:
        while True:
            message = await self._commands.get()
            try:
                await self._command(message)
            except GizdevError as exc:
                self._refuse(client, message, str(exc), getattr(exc, "path", None))

    async def _command(self, message: MqttMessage) -> None:
        mcu = self._mcu
        assert mcu is not None
        if message.topic == self.topics.set:
            # Encoded against the schema first: a refused value never reaches the UART; the MCU's report that
            # follows the write updates the state.
            await mcu.write(self._parse_set(message.payload))
            return
        self._state.update(await mcu.read())  # {prefix}/{device}/get
        self._dirty.set()

    def _parse_set(self, payload: bytes) -> dict[str, object]:
        if len(payload) > MAX_COMMAND_BYTES:
            raise PayloadError(f"a command is at most {MAX_COMMAND_BYTES} bytes", data=payload[:64])
        try:
            document = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PayloadError(f"a command is a JSON object of datapoint values ({exc})", data=payload[:64]) from None
        if not isinstance(document, dict) or not document:
            raise PayloadError("a command is a non-empty JSON object of datapoint values", data=payload[:64])
        return self.product.attrs_from_json(document)

    def _refuse(self, client: MqttClient, message: MqttMessage, reason: str, path: str | None = None) -> None:
        self.commands_refused += 1
        _LOGGER.info("MQTT: %s on %s refused: %s", message.payload[:200], message.topic, reason)
        error: dict[str, Any] = {"topic": message.topic, "error": reason}
        if path:
            error["path"] = path
        error["command"] = message.payload[:1024].decode("utf-8", "replace")
        with contextlib.suppress(BrokerError):
            client.publish_nowait(f"{self.topics.base}/error", json.dumps(error).encode())


async def retire(settings: MqttJsonSettings, identities: IdentityStore, product: Product) -> list[str]:
    """Remove the device from HA and the broker: empty retained discovery configs, state and availability."""
    uplink = MqttJsonUplink(settings, identities, product)
    client = uplink.new_client()
    await client.connect()
    emptied = [*retire_configs(product.schema, uplink.ha_device, settings.discovery_prefix)]
    emptied += [uplink.topics.state, uplink.topics.availability]
    try:
        for topic in emptied:
            await client.publish(topic, b"", retain=True, qos=1)  # acknowledged: the retire really happened
    finally:
        await client.close()
    return emptied
