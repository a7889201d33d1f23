"""The bridge: one MCU on a serial port and any number of uplinks — a software GAgent.

Data flow::

    MCU ──UART── ModuleConnection/ModuleSession ── Bridge ──┬── CloudUplink (MQTT: dev2app / app2dev)
                                                            ├── LanUplink   (TCP 12416: 0x0091 to every app)
                                                            └── ...         (any :class:`Uplink`)

The bridge owns the MCU side and knows its uplinks only through :class:`~gizdev.bridge.interface.Uplink`; they
are built elsewhere (:func:`gizdev.bridge.factory.build_bridge` from a config, or by a test) and handed in.

* MCU reports go to every uplink as they arrive, in the link's callback (no queue hop): the P0 as the MCU sent it
  and its decoding. The last status is kept.
* Apps' commands reach the MCU through one :class:`~gizdev.bridge.mcu.SessionMcu` shared by the uplinks, which
  checks them against the schema.
* MCU gone (port unplugged, heartbeats missed): the uplinks hear ``mcu_offline`` (the cloud uplink disconnects,
  so the cloud shows the device offline); the serial side reopens the port with backoff and re-handshakes; then
  ``mcu_online`` with the device info.
* The WiFi status word tells the MCU what is really up: station, router and cloud bits and the app count from
  the uplinks' :meth:`~gizdev.bridge.interface.Uplink.status`, and the binding window.
* The MCU's requests: module reset renews the identity (new passcode, no DID; the cloud uplink registers anew);
  binding mode opens the passcode window; config mode has no meaning on a wired gateway (logged, window opened);
  every request is then passed to the uplinks (module restart: the cloud uplink reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from gizdev.bridge.identity import Identity, IdentityStore
from gizdev.bridge.interface import Uplink
from gizdev.bridge.lan_device import BindingWindow
from gizdev.bridge.mcu import SessionMcu
from gizdev.bridge.uplink import cancel_and_wait
from gizdev.codec.commands import WifiStatus
from gizdev.codec.p0 import P0Message
from gizdev.errors import GizdevError
from gizdev.link.connection import ModuleConnection
from gizdev.link.module import ModuleEvent

__all__ = ["Bridge"]

_LOGGER = logging.getLogger(__name__)

_U = TypeVar("_U")


class Bridge:
    """The MCU behind ``connection`` served to ``uplinks``; ``await start()``, ``await close()`` (or ``async with``).

    ``binding`` is the module's binding window (the LAN server's passcode rule and a bit of the WiFi status word);
    by default always open.
    """

    def __init__(
        self,
        connection: ModuleConnection,
        uplinks: Sequence[Uplink],
        identities: IdentityStore,
        *,
        binding: BindingWindow | None = None,
    ) -> None:
        self.connection = connection
        self.session = connection.session
        self.product = self.session.product
        self.uplinks = tuple(uplinks)
        self.identities = identities
        self.binding = binding or BindingWindow(0)
        self.mcu = SessionMcu(self.session, on_uplink_change=self._status_changed)
        self.session.on_report = self._on_report
        self.status = self.mcu.status  # the MCU's last reported or read status (app values)
        self.reports_relayed = 0
        self.report_listeners: list[Callable[[dict[str, Any]], None]] = []  # e.g. the demo's live view
        self._tasks: list[asyncio.Task[None]] = []
        self._status_dirty = asyncio.Event()
        self._wifi_sent: WifiStatus | None = None

    @property
    def identity(self) -> Identity:
        """The device's identity now (DID, passcode, MAC)."""
        return self.identities.identity

    def find_uplink(self, kind: type[_U]) -> _U | None:
        """The first uplink that is a ``kind`` (e.g. to show the LAN server's address), None if there is none."""
        return next((uplink for uplink in self.uplinks if isinstance(uplink, kind)), None)

    # -- life cycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self.identities.save()
            for uplink in self.uplinks:
                await uplink.start(self.mcu)
        except BaseException:
            await self.close()
            raise
        loop = asyncio.get_running_loop()
        self.connection.start()
        self._tasks = [
            loop.create_task(self._events(), name="bridge-events"),
            loop.create_task(self._wifi_status(), name="bridge-wifi-status"),
        ]
        _LOGGER.info(
            "bridge up: MCU on %s, %s, identity %s",
            self.connection.url,
            "; ".join(uplink.describe() for uplink in self.uplinks) or "no uplinks",
            self.identity.did or "(not registered yet)",
        )

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for uplink in reversed(self.uplinks):
            await uplink.close()
        await self.connection.close()

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the MCU's side ---------------------------------------------------------------------------------------------

    def _mcu_up(self) -> None:
        info = self.session.device_info
        identity = self.identities.identity
        if info is not None and info.product_key != identity.product_key:
            if identity.product_key:
                _LOGGER.warning(
                    "the MCU is now product %s (was %s): registering as a new device",
                    info.product_key,
                    identity.product_key,
                )
            self.identities.update(dataclasses.replace(identity, product_key=info.product_key, did="", cloud=""))
        if info is not None and self.product.product_key and info.product_key != self.product.product_key:
            _LOGGER.warning("the MCU reports product %s, the schema is %s", info.product_key, self.product.product_key)
        for uplink in self.uplinks:
            uplink.mcu_online(info)
        self._status_changed()

    async def _events(self) -> None:
        # The connection's first handshake produces no event; later ones do (mcu_offline / mcu_online).
        await self.connection.ready.wait()
        self._mcu_up()
        while True:
            event = await self.session.events.get()
            try:
                self._event(event)
            except GizdevError as exc:
                _LOGGER.warning("handling %s failed: %s", event.kind, exc)

    def _event(self, event: ModuleEvent) -> None:
        kind = event.kind
        if kind == "mcu_online":
            self._mcu_up()
            return
        if kind == "mcu_offline":
            _LOGGER.warning("the MCU is offline; the uplinks show the device offline until it returns")
            for uplink in self.uplinks:
                uplink.mcu_offline()
            self._status_changed()
            return
        if kind == "module_reset":
            _LOGGER.warning("the MCU asked for a module reset: new passcode, registering again")
            self.identities.reset()
        elif kind in ("binding_mode", "config_mode"):
            if kind == "config_mode":
                _LOGGER.info("the MCU asked for config mode %s: nothing to configure on a gateway", event.data)
            _LOGGER.info("binding window opened by the MCU")
            self.binding.open()
            self._status_changed()
        elif kind == "module_restart":
            _LOGGER.info("the MCU asked the module to restart: the uplinks reconnect")
        elif kind == "passthrough":
            _LOGGER.debug("pass-through data from the MCU: %s", bytes(event.data).hex())
        else:
            _LOGGER.info("MCU event %s %s", kind, event.data if event.data is not None else "")
        for uplink in self.uplinks:
            uplink.mcu_event(event)

    def _on_report(self, p0: bytes, message: P0Message) -> None:
        """An MCU report (already acknowledged): relayed as the MCU sent it, as GAgent does."""
        self.status.update(message.attrs)
        for listener in self.report_listeners:
            listener(dict(message.attrs))
        self.reports_relayed += 1
        for uplink in self.uplinks:
            uplink.mcu_report(p0, message)

    # -- WiFi status word -------------------------------------------------------------------------------------------

    def _status_changed(self) -> None:
        self._status_dirty.set()

    def wifi_status(self) -> WifiStatus:
        """The status word the uplinks and the binding window make now (serial protocol §2.4)."""
        statuses = [uplink.status() for uplink in self.uplinks]
        return WifiStatus(
            station=True,
            router_connected=any(status.router for status in statuses),
            cloud_connected=any(status.cloud for status in statuses),
            binding=self.binding.is_open(),
            app_connected=sum(status.apps for status in statuses) > 0,
        )

    async def _wifi_status(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # LAN logins and the binding window change without an event
                    await self._status_dirty.wait()
            self._status_dirty.clear()
            if not self.session.mcu_online:
                self._wifi_sent = None
                continue
            status = self.wifi_status()
            if status == self._wifi_sent:
                continue
            try:
                await self.session.send_wifi_status(status)
                self._wifi_sent = status
                _LOGGER.debug("WiFi status 0x%04x sent to the MCU", status.word)
            except GizdevError as exc:
                _LOGGER.info("WiFi status not delivered: %s", exc)
