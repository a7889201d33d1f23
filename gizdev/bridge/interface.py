"""What an uplink of the bridge is, and what it may ask of the MCU: the two interfaces between them.

::

                     mcu_report(p0, message) / mcu_online(info) / mcu_offline() / mcu_event(event)
    MCU ── link ── Bridge ──────────────────────────────────────────────────────────────► Uplink (cloud, LAN, ...)
                     ▲                                                                      │
                     └──────────── Mcu: control(p0) / write(attrs) / read() ◄───────────────┘
                                   status(): cloud / router / apps ──► the WiFi status word

* The bridge calls every uplink's methods from the link's callbacks, synchronously and in order: an uplink
  that needs to wait (publish, answer an app) starts its own work and returns at once. ``mcu_report`` runs once
  per MCU report with the P0 bytes as the MCU sent them (the Gizwits uplinks relay those, as GAgent does) and
  their decoding (an MQTT/JSON uplink publishes attributes).
* Commands go the other way through the one :class:`Mcu` the bridge hands to every uplink at ``start``: each is
  checked against the product schema before it reaches the UART, and raises a
  :class:`~gizdev.errors.GizdevError` when the MCU refuses or cannot be reached.
* The WiFi status word the MCU is told (serial protocol §2.4) is derived from the uplinks' :meth:`Uplink.status`:
  an uplink that changes its status calls :meth:`Mcu.uplink_changed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gizdev.codec.commands import DeviceInfo
from gizdev.codec.p0 import P0Message, Product
from gizdev.codec.values import Value
from gizdev.link.module import ModuleEvent

__all__ = ["Mcu", "Uplink", "UplinkStatus"]


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    """What one uplink contributes to the WiFi status word (serial protocol §2.4)."""

    cloud: bool = False  # connected to a cloud (bit 5)
    router: bool = False  # the network this uplink uses works (bit 4)
    apps: int = 0  # apps connected through this uplink (bit 6 while any)


class Mcu(Protocol):
    """The MCU as an uplink sees it; the bridge hands the same one to every uplink."""

    @property
    def product(self) -> Product:
        """The product schema the MCU speaks."""
        ...

    @property
    def online(self) -> bool:
        """Whether the MCU is there (handshaken, answering heartbeats)."""
        ...

    @property
    def device_info(self) -> DeviceInfo | None:
        """What the MCU said in its last handshake (product key, versions, secret), None before the first."""
        ...

    @property
    def status(self) -> Mapping[str, Value]:
        """The MCU's last reported or read status (app values); empty until it sent one."""
        ...

    async def control(self, p0: bytes) -> bytes | None:
        """An app's P0 (write, read, pass-through) run against the MCU: the read reply's P0, or None for an ACK."""
        ...

    async def write(self, attrs: Mapping[str, object]) -> None:
        """Write datapoints (app values); returns once the MCU acknowledged."""
        ...

    async def read(self) -> dict[str, Value]:
        """The MCU's current status, read afresh."""
        ...

    def uplink_changed(self) -> None:
        """An uplink's :meth:`Uplink.status` changed: tell the MCU the new WiFi status word."""
        ...


class Uplink(Protocol):
    """One way out of the bridge (the Gizwits cloud, the LAN server, an MQTT/JSON broker, a test's recorder)."""

    async def start(self, mcu: Mcu) -> None:
        """Start serving (bind, connect in the background); commands go to ``mcu``."""
        ...

    async def close(self) -> None:
        """Stop, and leave no task, socket or connection behind."""
        ...

    def mcu_report(self, p0: bytes, message: P0Message) -> None:
        """An MCU report (already acknowledged): its P0 as the MCU sent it, and decoded. Must not block."""
        ...

    def mcu_online(self, info: DeviceInfo | None) -> None:
        """The MCU came up (first handshake or back after a loss), with what it said in its handshake."""
        ...

    def mcu_offline(self) -> None:
        """The MCU went away (port gone, heartbeats missed)."""
        ...

    def mcu_event(self, event: ModuleEvent) -> None:
        """A request of the MCU to the module (``module_reset`` after the bridge renewed the identity,
        ``module_restart``, ``binding_mode``, ``config_mode``, ``test_mode``) or its pass-through data."""
        ...

    def status(self) -> UplinkStatus:
        """This uplink's part of the WiFi status word, now."""
        ...

    def describe(self) -> str:
        """One line for the start-up log (e.g. ``cloud http://127.0.0.1:8080``)."""
        ...
