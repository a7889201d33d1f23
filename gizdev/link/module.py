"""The module's side of an MCU link (what GAgent does, and what the bridge uses).

One :class:`ModuleSession` lives as long as the bridge; every (re)connection gets a fresh :class:`SerialLink`
from :meth:`ModuleSession.protocol_factory`. Reports and events go into queues that survive reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gizdev.codec.commands import (
    Command,
    ConfigMode,
    DeviceInfo,
    ModuleInfo,
    NetworkTime,
    WifiStatus,
    decode_payload,
    encode_payload,
)
from gizdev.codec.frame import Frame
from gizdev.codec.p0 import Action, P0Message, Product
from gizdev.codec.values import Value
from gizdev.errors import AckTimeout, GizdevError, HandshakeError, LinkClosed, PayloadError
from gizdev.link.protocol import ACK_TIMEOUT_S, DEFAULT_RESENDS, LinkStats, Role, SerialLink

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_MODULE_INFO",
    "HANDSHAKE_ATTEMPTS",
    "MISSED_HEARTBEATS_OFFLINE",
    "ModuleEvent",
    "ModuleSession",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL_S = 55.0  # serial protocol §2.2: GAgent MCU_HEARTBEAT
MISSED_HEARTBEATS_OFFLINE = 3  # serial protocol §2.2: "alarms after 3 consecutive missing replies"
HANDSHAKE_ATTEMPTS = 10  # serial protocol §2.1: GAgent asks up to 10 times at boot

DEFAULT_MODULE_INFO = ModuleInfo(
    module_type=1,  # WiFi
    protocol_version="00000004",
    hardware_version="GIZDEV01",
    software_version="04020006",
    mac="000000000000",
    ip="0.0.0.0",
    device_attributes=bytes(8),
)


@dataclass(frozen=True, slots=True)
class ModuleEvent:
    """Something the MCU asked of the module, or a change of the MCU's liveness.

    kinds: ``config_mode`` (data: ConfigMode), ``module_reset``, ``test_mode``, ``binding_mode``,
    ``module_restart``, ``passthrough`` (data: bytes), ``illegal_message`` (data: IllegalMessage),
    ``mcu_offline``, ``mcu_online``.
    """

    kind: str
    data: Any = None


_EVENT_OF_REQUEST = {
    Command.CONFIG_MODE: "config_mode",
    Command.MODULE_RESET: "module_reset",
    Command.TEST_MODE: "test_mode",
    Command.BINDING_MODE: "binding_mode",
    Command.MODULE_RESTART: "module_restart",
}


def network_time(now: float) -> NetworkTime:
    """The 0x18 answer for ``now``: local calendar time of this machine and Unix seconds (§2.6)."""
    local = time.localtime(now)
    return NetworkTime(
        year=local.tm_year,
        month=local.tm_mon,
        day=local.tm_mday,
        hour=local.tm_hour,
        minute=local.tm_min,
        second=local.tm_sec,
        ntp=int(now),
    )


class ModuleSession:
    """Handshake, heartbeats, read/write, reports, WiFi status and the MCU's requests, over reconnections."""

    def __init__(
        self,
        product: Product,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        missed_heartbeats: int = MISSED_HEARTBEATS_OFFLINE,
        ack_timeout: float = ACK_TIMEOUT_S,
        resends: int = DEFAULT_RESENDS,
        module_info: ModuleInfo = DEFAULT_MODULE_INFO,
        clock: Callable[[], float] = time.time,
        name: str = "module",
    ) -> None:
        self.product = product
        self.heartbeat_interval = heartbeat_interval
        self.missed_heartbeats = missed_heartbeats
        self.ack_timeout = ack_timeout
        self.resends = resends
        self.module_info = module_info
        self.clock = clock
        self.name = name
        self.device_info: DeviceInfo | None = None
        self.mcu_online = False
        self.missed = 0
        self.heartbeats_missed = 0  # every unanswered heartbeat since the start (``missed`` counts the current run)
        self.stats = LinkStats()  # the counters of every link this session had, across reconnections
        self.reports_queue: asyncio.Queue[P0Message] = asyncio.Queue()
        # Set to take reports as they arrive, raw P0 with its decoding, instead of through reports_queue (a
        # relay forwards the MCU's bytes unchanged, as GAgent does, without a queue hop per report).
        self.on_report: Callable[[bytes, P0Message], None] | None = None
        self.events: asyncio.Queue[ModuleEvent] = asyncio.Queue()
        self.link: SerialLink | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._was_online = False

    # ---- connection ----------------------------------------------------------------------------------------

    def protocol_factory(self) -> SerialLink:
        """A fresh link for a new connection (pass to the transport opener)."""
        link = SerialLink(
            Role.MODULE,
            self._handle,
            ack_timeout=self.ack_timeout,
            resends=self.resends,
            name=self.name,
            on_frame=self._frame_seen,
            stats=self.stats,
        )
        # Only the current link may take the MCU offline: an old one can finish closing after its replacement is up.
        link.set_lost_callback(lambda exc: self._link_lost(link, exc))
        self.link = link
        return link

    def _require_link(self) -> SerialLink:
        if self.link is None or not self.link.is_open:
            raise LinkClosed(f"{self.name}: no MCU link")
        return self.link

    async def handshake(self, attempts: int = HANDSHAKE_ATTEMPTS) -> DeviceInfo:
        """Ask for device info until the MCU answers; check its product key against the schema."""
        link = self._require_link()
        last: AckTimeout | PayloadError | None = None
        for _ in range(attempts):
            try:
                reply = await link.request(Command.DEVICE_INFO_REQUEST)
                info = decode_payload(Command.DEVICE_INFO_REPLY, reply.payload)
            except (AckTimeout, PayloadError) as exc:
                # A reply damaged in a way the 8-bit checksum misses is one more failed attempt, not the end.
                last = exc
                continue
            if isinstance(info, DeviceInfo):
                break
            last = PayloadError("device info reply without payload", data=reply.payload)
        else:
            assert last is not None
            raise last
        expected = self.product.product_key
        if expected is not None and info.product_key.lower() != expected.lower():
            raise HandshakeError(
                f"{self.name}: the MCU reports product key {info.product_key}, but the schema "
                f"{self.product.name!r} is for {expected}"
            )
        self.device_info = info
        self._set_online(True)
        _LOGGER.info(
            "%s: MCU %s, protocol %s, P0 %s, hw %s, sw %s",
            self.name,
            info.product_key,
            info.protocol_version,
            info.p0_version,
            info.hardware_version,
            info.software_version,
        )
        return info

    def start_heartbeats(self) -> None:
        """Ping the MCU every heartbeat_interval; after missed_heartbeats misses report it offline."""
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeats(), name="heartbeats")

    async def close(self) -> None:
        """Stop the heartbeats and close the link."""
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.link is not None:
            self.link.close()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            link = self.link
            if link is None or not link.is_open:
                continue
            try:
                await link.request(Command.HEARTBEAT)
            except AckTimeout:
                self.missed += 1
                self.heartbeats_missed += 1
                _LOGGER.info("%s: heartbeat %d unanswered", self.name, self.missed)
                if self.missed >= self.missed_heartbeats:
                    self._set_online(False)
            except LinkClosed:
                continue
            else:
                self.missed = 0
                self._set_online(True)

    def _set_online(self, online: bool, *, expected: bool = False) -> None:
        if online != self.mcu_online:
            self.mcu_online = online
            # First contact and our own close are routine; losing or regaining a board mid-run is not.
            routine = expected or (online and not self._was_online)
            _LOGGER.log(
                logging.INFO if routine else logging.WARNING,
                "%s: MCU %s",
                self.name,
                ("back online" if self._was_online else "online") if online else "offline",
            )
            self._was_online = self._was_online or online
            self.events.put_nowait(ModuleEvent("mcu_online" if online else "mcu_offline"))

    def _frame_seen(self, frame: Frame) -> None:
        # Any good frame from the MCU proves it alive (GAgent resets its miss counter the same way).
        self.missed = 0
        if self.device_info is not None:
            self._set_online(True)

    def _link_lost(self, link: SerialLink, exc: Exception | None) -> None:
        if link is self.link:
            self._set_online(False, expected=exc is None)

    # ---- requests to the MCU -----------------------------------------------------------------------------

    async def read(self) -> dict[str, Value]:
        """The MCU's current status (all datapoints)."""
        link = self._require_link()
        reply = await link.request(Command.P0_DOWN, self.product.encode("read"))
        message = self.product.decode(reply.payload)
        if message.action not in (Action.READ_REPLY, Action.VAR_READ_REPLY):
            raise PayloadError(f"read answered with {message.action.name}", data=reply.payload)
        return message.attrs

    async def write(self, attrs: Mapping[str, object]) -> None:
        """Write datapoints; returns once the MCU acknowledged (AckTimeout after the resends)."""
        p0 = self.product.encode("write", attrs)
        await self._require_link().request(Command.P0_DOWN, p0)

    async def passthrough(self, data: bytes) -> None:
        """Send pass-through bytes to the MCU (P0 action 0x05)."""
        await self._require_link().request(Command.P0_DOWN, self.product.encode("transparent_down", data=data))

    async def send_wifi_status(self, status: WifiStatus) -> None:
        """Tell the MCU the module's status word (0x0D)."""
        await self._require_link().request(Command.WIFI_STATUS, encode_payload(Command.WIFI_STATUS, status))

    async def restart_mcu(self) -> None:
        """Ask the MCU to restart (0x0F)."""
        await self._require_link().request(Command.MCU_RESTART)

    async def reports(self) -> AsyncIterator[P0Message]:
        """Reports (0x05 actions 0x04/0x14) as they arrive, decoded."""
        while True:
            yield await self.reports_queue.get()

    # ---- requests from the MCU ---------------------------------------------------------------------------

    def _handle(self, frame: Frame) -> bytes | None:
        cmd = frame.cmd
        if cmd == Command.P0_UP:
            self._p0_up(frame.payload)
            return b""
        if cmd in _EVENT_OF_REQUEST:
            data: Any = None
            if cmd == Command.CONFIG_MODE:
                try:
                    data = decode_payload(cmd, frame.payload)
                except PayloadError:
                    data = ConfigMode(frame.payload[0] if frame.payload else 0)
            self.events.put_nowait(ModuleEvent(_EVENT_OF_REQUEST[Command(cmd)], data))
            return b""
        if cmd == Command.NETWORK_TIME_REQUEST:
            return encode_payload(Command.NETWORK_TIME_REPLY, network_time(self.clock()))
        if cmd == Command.MODULE_INFO_REQUEST:
            info = self.module_info
            if self.device_info is not None and self.device_info.device_attributes is not None:
                info = dataclasses.replace(info, device_attributes=self.device_info.device_attributes)
            return encode_payload(Command.MODULE_INFO_REPLY, info)
        return None

    def _p0_up(self, payload: bytes) -> None:
        try:
            message = self.product.decode(payload)
        except GizdevError as exc:
            # Still acknowledged (GAgent relays what it gets); the bad report is logged, not fatal.
            _LOGGER.warning("%s: undecodable report: %s", self.name, exc)
            return
        if message.action is Action.TRANSPARENT_UP:
            self.events.put_nowait(ModuleEvent("passthrough", message.data))
        elif message.action in (Action.REPORT, Action.VAR_REPORT):
            if message.anomalies:
                _LOGGER.warning("%s: report anomalies: %s", self.name, message.anomalies)
            if self.on_report is not None:
                self.on_report(payload, message)
            else:
                self.reports_queue.put_nowait(message)
        else:
            _LOGGER.warning("%s: unexpected P0 action %s from the MCU", self.name, message.action.name)
