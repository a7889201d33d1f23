"""What the device bus tells its listeners (the realtime WebSocket hub): device frames and presence changes.

The bus calls :meth:`DeviceListener.device_event` on its own task, in the order events happen, for every frame a
device sends and every presence change it stores. A listener must return at once and never raise: it only hands the
event on (bounded queues of its own); a slow or broken listener must not hold back the bus, /app/devdata or
presence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gizdev.codec.values import Value

__all__ = ["DeviceEvent", "DeviceFrame", "DeviceListener", "PresenceChange"]


@dataclass(frozen=True, slots=True)
class DeviceFrame:
    """One business frame a device published on ``dev2app/<did>[/<client_id>]`` (cloud protocol §1.5/§1.6)."""

    did: str
    client_id: str | None  # the <clientid> of dev2app/<did>/<clientid>: a 0x0094 to that client's 0x0093
    cmd: int
    sn: int | None  # set exactly for 0x0093/0x0094
    frame: bytes  # the whole frame as received
    p0: bytes  # its payload
    # The data points of a status (report or read reply), decoded once for the latest data and for listeners;
    # None when the frame carries none (an ACK, pass-through data, a product without data points).
    values: Mapping[str, Value] | None


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A device's stored presence changed (the broker's events, or traffic from a device held offline)."""

    did: str
    online: bool


DeviceEvent = DeviceFrame | PresenceChange


class DeviceListener(Protocol):
    def device_event(self, event: DeviceEvent) -> None:
        """Take one event; must return at once and not raise (see the module docstring)."""
        ...
