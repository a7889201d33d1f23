"""The bridge: one MCU on a serial port, a cloud uplink and a LAN server — a software GAgent.

Data flow::

    MCU ──UART── ModuleConnection/ModuleSession ──┬── CloudUplink (MQTT: dev2app / app2dev)
                                                  └── LanServer   (TCP 12416: 0x0091 to every app)

* Apps' P0 (cloud 0x0090/0x0093, LAN) goes through one :class:`ModuleSessionLanDevice`: checked against the
  schema, then written or read on the link. The answer follows GAgent (gagent-wire-observations §3.4): a 0x0090
  gets a 0x0091 on ``dev2app/<did>`` (empty for a write's ACK, the status for a read), a 0x0093 a 0x0094 with the
  same sn to the requester. The MCU unreachable: no answer (the protocol has no error frame), logged.
* MCU reports go to the LAN apps and to the cloud as 0x0091, byte for byte as the MCU sent them; the last status
  is kept.
* MCU gone (port unplugged, heartbeats missed): the uplink disconnects, so the cloud shows the device offline;
  the serial side reopens the port with backoff and re-handshakes; then the uplink reconnects and publishes the
  MCU's current status (read afresh, nothing stale).
* The WiFi status word tells the MCU what is really up: station, router (an uplink or the LAN server works),
  cloud (MQTT connected), binding window, apps (LAN logins or the cloud's 0x0210 count).
* The MCU's requests: module reset clears the identity and registers anew; binding mode opens the passcode
  window; config mode has no meaning on a wired gateway (logged, window opened); module restart reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from gizdev.bridge.config import BridgeConfig
from gizdev.bridge.identity import Identity, load_identity, new_identity, save_identity
from gizdev.bridge.lan import LanIdentity, LanServer, LanSettings
from gizdev.bridge.lan_device import BindingWindow, ModuleSessionLanDevice
from gizdev.bridge.uplink import AppCommand, CloudUplink, UplinkSettings, cancel_and_wait
from gizdev.codec.commands import WifiStatus
from gizdev.codec.envelope import BusinessCmd
from gizdev.codec.p0 import P0Message, Product, load_product
from gizdev.errors import ConfigError, GizdevError
from gizdev.link import ModuleSession
from gizdev.link.connection import ModuleConnection, Opener
from gizdev.link.module import ModuleEvent

__all__ = ["Bridge"]

_LOGGER = logging.getLogger(__name__)


class Bridge:
    """Build with a :class:`BridgeConfig`; ``await start()``, ``await close()`` (or ``async with``)."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        product: Product | None = None,
        opener: Opener | None = None,
        uplink_settings: UplinkSettings | None = None,
        lan_settings: LanSettings | None = None,
        port_options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.product = product or load_product(config.product)
        self.session = ModuleSession(self.product, heartbeat_interval=config.heartbeat_s, name="mcu")
        self.session.on_report = self._on_report
        options = {"baudrate": config.baudrate, **(port_options or {})}
        self.connection = ModuleConnection(self.session, config.port, opener=opener, **options)
        self.identity = load_identity(config.state_dir) or new_identity(config.mac or None)
        if config.mac and self.identity.mac != config.mac.upper():
            _LOGGER.warning("configured mac %s differs from the saved identity's %s; keeping the saved one",
                            config.mac.upper(), self.identity.mac)  # fmt: skip
        self.binding = BindingWindow(config.lan.binding_window_s)
        self.device = ModuleSessionLanDevice(self.session, self._lan_identity(), self.binding)
        self.lan: LanServer | None = None
        if config.lan.enabled:
            self.lan = LanServer(
                self.device,
                lan_settings
                or LanSettings(
                    hosts=config.lan.hosts,
                    udp_port=config.lan.udp_port,
                    tcp_port=config.lan.tcp_port,
                    broadcast_address=config.lan.broadcast_address,
                    broadcast_port=config.lan.broadcast_port,
                    broadcast_rounds=config.lan.broadcast_rounds,
                ),
            )
        self.uplink: CloudUplink | None = None
        if config.cloud:
            self.uplink = CloudUplink(
                uplink_settings or UplinkSettings(cloud=config.cloud.rstrip("/"), encrypted=config.encrypted),
                identity=lambda: self.identity,
                save_identity=self._save_identity,
                product_secret=self._product_secret,
                on_command=self._cloud_command,
                on_connected=self._publish_current_state,
                on_change=self._status_changed,
            )
        self.status: dict[str, Any] = {}  # the MCU's last reported or read status (app values)
        self.reports_relayed = 0
        self.report_listeners: list[Callable[[dict[str, Any]], None]] = []  # e.g. the demo's live view
        self._tasks: list[asyncio.Task[None]] = []
        self._status_dirty = asyncio.Event()
        self._wifi_sent: WifiStatus | None = None

    # -- life cycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        save_identity(self.config.state_dir, self.identity)
        loop = asyncio.get_running_loop()
        if self.lan is not None:
            await self.lan.start()
        self.connection.start()
        self._tasks = [
            loop.create_task(self._events(), name="bridge-events"),
            loop.create_task(self._wifi_status(), name="bridge-wifi-status"),
        ]
        if self.uplink is not None:
            self.uplink.start()
        _LOGGER.info(
            "bridge up: MCU on %s, cloud %s, LAN %s, identity %s",
            self.config.port,
            self.config.cloud or "none",
            ", ".join(f"{h}:{p}" for h, p in self.lan.tcp_addresses) if self.lan else "off",
            self.identity.did or "(not registered yet)",
        )

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self.uplink is not None:
            await self.uplink.close()
        if self.lan is not None:
            await self.lan.close()
        await self.connection.close()

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- identity -------------------------------------------------------------------------------------------------

    def _lan_identity(self) -> LanIdentity:
        return LanIdentity(
            did=self.identity.did,
            mac=bytes.fromhex(self.identity.mac),
            product_key=self.identity.product_key or (self.product.product_key or ""),
            passcode=self.identity.passcode,
            wifi_hardware_version="GIZDEV01",
            wifi_software_version="04020006",
        )

    def _save_identity(self, identity: Identity) -> None:
        self.identity = identity
        save_identity(self.config.state_dir, identity)
        self.device.identity = self._lan_identity()

    def _product_secret(self) -> str:
        if self.config.product_secret:
            return self.config.product_secret
        info = self.session.device_info
        if info is None or not info.product_secret:
            raise ConfigError("the encrypted device API needs the product secret (the MCU did not send one)")
        return info.product_secret

    def _mcu_up(self) -> None:
        info = self.session.device_info
        if info is not None and info.product_key != self.identity.product_key:
            if self.identity.product_key:
                _LOGGER.warning(
                    "the MCU is now product %s (was %s): registering as a new device",
                    info.product_key,
                    self.identity.product_key,
                )
            self._save_identity(dataclasses.replace(self.identity, product_key=info.product_key, did="", cloud=""))
        if info is not None and self.product.product_key and info.product_key != self.product.product_key:
            _LOGGER.warning("the MCU reports product %s, the schema is %s", info.product_key, self.product.product_key)
        if self.uplink is not None:
            self.uplink.set_active(True)
        self._status_changed()

    # -- the MCU's side ---------------------------------------------------------------------------------------------

    async def _events(self) -> None:
        # The connection's first handshake produces no event; later ones do (mcu_offline / mcu_online).
        await self.connection.ready.wait()
        self._mcu_up()
        while True:
            event = await self.session.events.get()
            try:
                await self._event(event)
            except GizdevError as exc:
                _LOGGER.warning("handling %s failed: %s", event.kind, exc)

    async def _event(self, event: ModuleEvent) -> None:
        kind = event.kind
        if kind == "mcu_online":
            self._mcu_up()
        elif kind == "mcu_offline":
            _LOGGER.warning("the MCU is offline; the cloud will show the device offline until it returns")
            if self.uplink is not None:
                self.uplink.set_active(False)
            self._status_changed()
        elif kind == "module_reset":
            _LOGGER.warning("the MCU asked for a module reset: new passcode, registering again")
            self._save_identity(self.identity.reset())
            if self.uplink is not None:
                self.uplink.restart()
        elif kind in ("binding_mode", "config_mode"):
            if kind == "config_mode":
                _LOGGER.info("the MCU asked for config mode %s: nothing to configure on a gateway", event.data)
            self.device.handle_event(ModuleEvent("binding_mode"))
            self._status_changed()
        elif kind == "module_restart":
            _LOGGER.info("the MCU asked the module to restart: reconnecting the uplink")
            if self.uplink is not None:
                self.uplink.restart()
        elif kind == "passthrough":
            _LOGGER.debug("pass-through data from the MCU: %s", bytes(event.data).hex())
        else:
            _LOGGER.info("MCU event %s %s", kind, event.data if event.data is not None else "")

    def _on_report(self, p0: bytes, message: P0Message) -> None:
        """An MCU report (already acknowledged): relayed as the MCU sent it, as GAgent does."""
        self.status.update(message.attrs)
        for listener in self.report_listeners:
            listener(dict(message.attrs))
        self.reports_relayed += 1
        if self.lan is not None:
            self.lan.push_report(p0)
        if self.uplink is not None:
            self.uplink.publish_report_nowait(p0)

    # -- apps' side ----------------------------------------------------------------------------------------------

    async def _cloud_command(self, command: AppCommand) -> None:
        assert self.uplink is not None
        try:
            reply = await self.device.control(command.p0)
        except GizdevError as exc:
            # The MCU did not take it (down, refused P0): GAgent sends nothing back either.
            _LOGGER.warning("cloud command from %s not delivered: %s", command.client_id, exc)
            return
        if command.cmd == BusinessCmd.CONTROL and command.sn is not None:
            await self.uplink.publish_ack(command.client_id, command.sn, reply or b"")
        else:
            await self.uplink.publish_report(reply or b"")

    async def _publish_current_state(self) -> None:
        """On (re)connecting: the MCU's status now, read afresh (a report held while offline would be stale)."""
        assert self.uplink is not None
        if not self.session.mcu_online:
            return
        try:
            status = await self.session.read()
        except GizdevError as exc:
            _LOGGER.info("could not read the MCU's status after connecting: %s", exc)
            return
        self.status.update(status)
        await self.uplink.publish_report(self.product.encode("read_reply", status))

    # -- WiFi status word -------------------------------------------------------------------------------------------

    def _status_changed(self) -> None:
        self._status_dirty.set()

    def wifi_status(self) -> WifiStatus:
        cloud = self.uplink is not None and self.uplink.connected
        apps = (self.lan.logged_in_clients if self.lan else 0) + (self.uplink.online_apps if self.uplink else 0)
        return WifiStatus(
            station=True,
            router_connected=cloud or self.lan is not None,
            cloud_connected=cloud,
            binding=self.binding.is_open(),
            app_connected=apps > 0,
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
