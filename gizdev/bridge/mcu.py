"""The :class:`~gizdev.bridge.interface.Mcu` over a :class:`~gizdev.link.ModuleSession`: the way to the MCU.

An app's P0 is decoded with the product schema (strictly) and turned into the session's own calls (``read``,
``write``, ``passthrough``), so the MCU sees exactly what the link would send for the same request, and a P0 or a
value the schema refuses never reaches the UART.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from gizdev.codec.commands import DeviceInfo
from gizdev.codec.p0 import Action, Product
from gizdev.codec.values import Value
from gizdev.errors import PayloadError
from gizdev.link.module import ModuleSession

__all__ = ["SessionMcu"]


def _nothing() -> None:
    return None


class SessionMcu:
    """The MCU behind ``session``; ``status`` follows its reports (the bridge feeds them) and reads."""

    def __init__(self, session: ModuleSession, *, on_uplink_change: Callable[[], None] = _nothing) -> None:
        self.session = session
        self.status: dict[str, Value] = {}
        self._on_uplink_change = on_uplink_change

    @property
    def product(self) -> Product:
        return self.session.product

    @property
    def online(self) -> bool:
        return self.session.mcu_online

    @property
    def device_info(self) -> DeviceInfo | None:
        return self.session.device_info

    async def control(self, p0: bytes) -> bytes | None:
        """Run an app's P0 against the MCU; the read reply P0, or None when the MCU only acknowledged."""
        product = self.session.product
        message = product.decode(p0, strict=True)
        action = message.action
        if action in (Action.WRITE, Action.VAR_WRITE):
            await self.session.write(message.attrs)
            return None
        if action in (Action.READ, Action.VAR_READ):
            status = await self.read()
            if action is Action.VAR_READ and message.requested:
                status = {name: status[name] for name in message.requested if name in status}
            return product.encode("read_reply", status)
        if action is Action.TRANSPARENT_DOWN:
            await self.session.passthrough(message.data)
            return None
        raise PayloadError(f"an app may not send {action.name} to the MCU", data=p0, path="action")

    async def write(self, attrs: Mapping[str, object]) -> None:
        """Write datapoints (encoded with the schema first: unknown, read-only or out-of-range ones raise)."""
        await self.session.write(attrs)

    async def read(self) -> dict[str, Value]:
        """The MCU's status now; also kept as :attr:`status`."""
        status = await self.session.read()
        self.status.update(status)
        return status

    def uplink_changed(self) -> None:
        self._on_uplink_change()
