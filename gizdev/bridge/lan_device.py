"""The LAN server's view of the device, implemented over a :class:`~gizdev.link.ModuleSession`.

An app's P0 goes to the MCU through :class:`~gizdev.bridge.mcu.SessionMcu` (checked against the schema first).
Reports come out of the session decoded; :func:`encode_report` turns them back into P0 for the LAN server. The
bridge serves its LAN apps through :class:`~gizdev.bridge.lan_uplink.LanUplink` instead; this device serves a LAN
server on a bare session (tests, the LAN benchmark).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from gizdev.bridge.lan import LanIdentity
from gizdev.bridge.mcu import SessionMcu
from gizdev.codec.commands import DeviceInfo
from gizdev.codec.p0 import P0Message, Product
from gizdev.errors import GizdevError
from gizdev.link.module import ModuleEvent, ModuleSession

__all__ = ["BindingWindow", "ModuleSessionLanDevice", "encode_report", "forward_reports", "with_device_info"]

_LOGGER = logging.getLogger(__name__)


class BindingWindow:
    """GAgent's binding mode: open at start, closes ``timeout_s`` later (0 = stays open); the MCU reopens it."""

    def __init__(self, timeout_s: float, *, clock: Callable[[], float] = time.monotonic, open_now: bool = True) -> None:
        if timeout_s < 0:
            raise ValueError("timeout_s must be >= 0")
        self.timeout_s = timeout_s
        self.clock = clock
        self._opened_at: float | None = clock() if open_now else None

    def open(self) -> None:
        """(Re)open the window for another ``timeout_s``."""
        self._opened_at = self.clock()

    def close(self) -> None:
        self._opened_at = None

    def is_open(self) -> bool:
        if self._opened_at is None:
            return False
        return self.timeout_s == 0 or self.clock() - self._opened_at < self.timeout_s


def with_device_info(identity: LanIdentity, info: DeviceInfo | None) -> LanIdentity:
    """``identity`` with what the MCU said in its handshake (product key, versions, attributes), if it did."""
    if info is None:
        return identity
    return dataclasses.replace(
        identity,
        product_key=info.product_key,
        mcu_hardware_version=info.hardware_version,
        mcu_software_version=info.software_version,
        p0_version=info.p0_version,
        mcu_attributes=info.device_attributes or identity.mcu_attributes,
    )


class ModuleSessionLanDevice:
    """A :class:`~gizdev.bridge.lan.LanDevice` over a bare ModuleSession."""

    def __init__(self, session: ModuleSession, identity: LanIdentity, binding: BindingWindow) -> None:
        self.session = session
        self.identity = identity
        self.binding = binding
        self._mcu = SessionMcu(session)

    def lan_identity(self) -> LanIdentity:
        """The configured identity, with what the MCU said in its handshake (product key, versions, attributes)."""
        return with_device_info(self.identity, self.session.device_info)

    def binding_open(self) -> bool:
        return self.binding.is_open()

    def handle_event(self, event: ModuleEvent) -> None:
        """Act on a session event that concerns the LAN (the MCU opening the binding window, 0x15)."""
        if event.kind == "binding_mode":
            _LOGGER.info("binding window opened by the MCU")
            self.binding.open()

    async def control(self, p0: bytes) -> bytes | None:
        """Run an app's P0 against the MCU; the read reply P0, or None when the MCU only acknowledged."""
        return await self._mcu.control(p0)


def encode_report(product: Product, message: P0Message) -> bytes:
    """The P0 bytes of a report from :meth:`ModuleSession.reports` (variable-length flags kept as received)."""
    if product.is_varlen:
        return product.encode(message.action, message.attrs, flags=message.flags)
    return product.encode(message.action, message.attrs)


async def forward_reports(session: ModuleSession, push: Callable[[bytes], object]) -> None:
    """Hand every MCU report to ``push`` (e.g. ``LanServer.push_report``) as P0, until cancelled."""
    async for message in session.reports():
        try:
            p0 = encode_report(session.product, message)
        except GizdevError as exc:
            # Reports arrive decoded; one the schema cannot re-encode (out-of-range value) cannot be relayed.
            _LOGGER.warning("report not relayed: %s", exc)
            continue
        push(p0)
