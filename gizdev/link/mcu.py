"""The MCU's side of the link: answers the module as the vendor SDK does (without its bugs), and sends reports
and requests of its own. The device behind it (state, report policy) is injected: see :mod:`gizdev.sim.mcu`.

As the SDK: a read request is answered whatever follows its action byte (fixed length) or its flags (variable
length); an illegal-message notice from the module (0x11) gets no answer (the link treats it as a notice).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from gizdev.codec.commands import (
    Command,
    ConfigMode,
    ConfigModeKind,
    DeviceInfo,
    IllegalMessageCode,
    ModuleInfo,
    ModuleInfoRequest,
    NetworkTime,
    WifiStatus,
    decode_payload,
    encode_payload,
)
from gizdev.codec.frame import Frame
from gizdev.codec.p0 import Action, Product
from gizdev.codec.values import Value
from gizdev.errors import LinkClosed, PayloadError
from gizdev.link.protocol import ACK_TIMEOUT_S, DEFAULT_RESENDS, Role, SerialLink

__all__ = ["McuDevice", "McuSession"]

_LOGGER = logging.getLogger(__name__)


class McuDevice(Protocol):
    """What an MCU session needs from the device it speaks for."""

    def device_info(self) -> DeviceInfo: ...

    def status(self) -> Mapping[str, Value]: ...

    def apply_write(self, attrs: Mapping[str, Value]) -> None: ...

    def on_passthrough(self, data: bytes) -> None: ...

    def on_wifi_status(self, status: WifiStatus) -> None: ...

    def on_restart(self) -> None: ...


class McuSession:
    """Serial protocol in the MCU role for one device; a fresh link per connection."""

    def __init__(
        self,
        product: Product,
        device: McuDevice,
        *,
        ack_timeout: float = ACK_TIMEOUT_S,
        resends: int = DEFAULT_RESENDS,
        name: str = "mcu",
    ) -> None:
        self.product = product
        self.device = device
        self.ack_timeout = ack_timeout
        self.resends = resends
        self.name = name
        self.link: SerialLink | None = None

    def protocol_factory(self) -> SerialLink:
        """A fresh link for a new connection (pass to the transport opener)."""
        self.link = SerialLink(
            Role.MCU, self._handle, ack_timeout=self.ack_timeout, resends=self.resends, name=self.name
        )
        return self.link

    def _require_link(self) -> SerialLink:
        if self.link is None or not self.link.is_open:
            raise LinkClosed(f"{self.name}: no module link")
        return self.link

    # ---- requests to the module ---------------------------------------------------------------------------

    async def report(self, attrs: Mapping[str, object], *, flags: int | None = None) -> None:
        """A status report (0x05): the full status (fixed length) or the given points (variable length)."""
        p0 = self.product.encode("report", attrs, flags=flags)
        await self._require_link().request(Command.P0_UP, p0)

    async def passthrough(self, data: bytes) -> None:
        await self._require_link().request(Command.P0_UP, self.product.encode("transparent_up", data=data))

    async def request_time(self) -> NetworkTime:
        reply = await self._require_link().request(Command.NETWORK_TIME_REQUEST)
        value = decode_payload(Command.NETWORK_TIME_REPLY, reply.payload)
        if not isinstance(value, NetworkTime):
            raise PayloadError("network time reply without payload", data=reply.payload)
        return value

    async def module_info(self) -> ModuleInfo:
        payload = encode_payload(Command.MODULE_INFO_REQUEST, ModuleInfoRequest(0))
        reply = await self._require_link().request(Command.MODULE_INFO_REQUEST, payload)
        value = decode_payload(Command.MODULE_INFO_REPLY, reply.payload)
        if not isinstance(value, ModuleInfo):
            raise PayloadError("module info reply without payload", data=reply.payload)
        return value

    async def config_mode(self, mode: ConfigModeKind) -> None:
        payload = encode_payload(Command.CONFIG_MODE, ConfigMode(mode))
        await self._require_link().request(Command.CONFIG_MODE, payload)

    async def reset_module(self) -> None:
        await self._require_link().request(Command.MODULE_RESET)

    async def test_mode(self) -> None:
        await self._require_link().request(Command.TEST_MODE)

    async def binding_mode(self) -> None:
        await self._require_link().request(Command.BINDING_MODE)

    async def restart_module(self) -> None:
        await self._require_link().request(Command.MODULE_RESTART)

    # ---- requests from the module ---------------------------------------------------------------------------

    def _handle(self, frame: Frame) -> bytes | IllegalMessageCode | None:
        cmd = frame.cmd
        if cmd == Command.DEVICE_INFO_REQUEST:
            return encode_payload(Command.DEVICE_INFO_REPLY, self.device.device_info())
        if cmd == Command.P0_DOWN:
            return self._p0_down(frame.payload)
        if cmd == Command.HEARTBEAT:
            return b""
        if cmd == Command.WIFI_STATUS:
            try:
                status = decode_payload(cmd, frame.payload)
            except PayloadError as exc:
                _LOGGER.warning("%s: bad WiFi status: %s", self.name, exc)
                return IllegalMessageCode.OTHER
            assert isinstance(status, WifiStatus)
            self.device.on_wifi_status(status)
            return b""
        if cmd == Command.MCU_RESTART:
            # Acknowledge first, restart after (the SDK acks, waits ~600 ms, then resets).
            asyncio.get_running_loop().call_soon(self.device.on_restart)
            return b""
        return None

    def _p0_down(self, p0: bytes) -> bytes | IllegalMessageCode:
        known = p0[:1] and p0[0] in {int(a) for a in Action}
        if not known:
            return b""  # the SDK acknowledges unknown actions with an empty 0x04 (vector p0_unknown_action_ack)
        # The SDK reads a read request's action byte (and the flags after it) and nothing more: trailing bytes
        # do not make it malformed.
        varlen = self.product.varlen
        if varlen is None and p0[0] == Action.READ:
            p0 = p0[:1]
        elif varlen is not None and p0[0] == Action.VAR_READ:
            p0 = p0[: 1 + varlen.flags_len]
        try:
            message = self.product.decode(p0)
        except PayloadError as exc:
            _LOGGER.warning("%s: malformed P0 from the module: %s", self.name, exc)
            return IllegalMessageCode.OTHER
        action = message.action
        if action in (Action.WRITE, Action.VAR_WRITE):
            bad = {anomaly.name for anomaly in message.anomalies}
            # Unlike the SDK, values outside the schema are not applied (the rest of the write is).
            accepted = {name: value for name, value in message.attrs.items() if name not in bad}
            if bad:
                _LOGGER.warning("%s: write with values the schema does not allow: %s", self.name, message.anomalies)
            if accepted:
                self.device.apply_write(accepted)
            return b""
        if action in (Action.READ, Action.VAR_READ):
            status = self.device.status()
            if action is Action.READ:
                return self.product.encode("read_reply", status)
            wanted = {name: status[name] for name in message.requested}
            return self.product.encode("read_reply", wanted)
        if action is Action.TRANSPARENT_DOWN:
            self.device.on_passthrough(message.data)
            return b""
        _LOGGER.warning("%s: the module sent a P0 %s, which only an MCU sends", self.name, action.name)
        return b""
