"""The LAN server as one of the bridge's uplinks: apps on the local network, as GAgent serves them (cloud protocol §2).

The device the apps see is the bridge's identity (DID, MAC, passcode: the shared
:class:`~gizdev.bridge.identity.IdentityStore`, read for every packet, so that a DID assigned or a passcode renewed
later shows at once) with what the MCU said in its handshake. Reports go to every logged-in app as the MCU sent
them; apps' P0 goes to the MCU through the bridge's :class:`~gizdev.bridge.interface.Mcu`.
"""

from __future__ import annotations

from gizdev.bridge.identity import IdentityStore
from gizdev.bridge.interface import Mcu, UplinkStatus
from gizdev.bridge.lan import LanIdentity, LanServer, LanSettings
from gizdev.bridge.lan_device import BindingWindow, with_device_info
from gizdev.codec.commands import DeviceInfo
from gizdev.codec.p0 import P0Message
from gizdev.errors import LinkError
from gizdev.link.module import ModuleEvent

__all__ = ["WIFI_HARDWARE_VERSION", "WIFI_SOFTWARE_VERSION", "LanUplink"]

WIFI_HARDWARE_VERSION = "GIZDEV01"  # what the module info (0x0014) names as the "WiFi module"
WIFI_SOFTWARE_VERSION = "04020006"  # the GAgent version whose LAN behaviour the server follows


class LanUplink:
    """An :class:`~gizdev.bridge.interface.Uplink` serving LAN apps; also the :class:`LanDevice` of its server."""

    def __init__(self, settings: LanSettings, identities: IdentityStore, binding: BindingWindow) -> None:
        self.identities = identities
        self.binding = binding
        self.server = LanServer(self, settings)
        self._mcu: Mcu | None = None

    # -- Uplink ---------------------------------------------------------------------------------------------------

    async def start(self, mcu: Mcu) -> None:
        self._mcu = mcu
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    def mcu_report(self, p0: bytes, message: P0Message) -> None:
        self.server.push_report(p0)

    def mcu_online(self, info: DeviceInfo | None) -> None:
        return None  # the identity carries the device info on every packet

    def mcu_offline(self) -> None:
        return None  # GAgent keeps its LAN clients while the MCU is away; their controls go unanswered

    def mcu_event(self, event: ModuleEvent) -> None:
        return None  # the binding window is the bridge's (the WiFi status word shows it too)

    def status(self) -> UplinkStatus:
        return UplinkStatus(router=True, apps=self.server.logged_in_clients)

    def describe(self) -> str:
        return "LAN " + ", ".join(f"{host}:{port}" for host, port in self.server.tcp_addresses)

    # -- LanDevice ------------------------------------------------------------------------------------------------

    def lan_identity(self) -> LanIdentity:
        identity = self.identities.identity
        product_key = identity.product_key
        if not product_key and self._mcu is not None:
            product_key = self._mcu.product.product_key or ""
        configured = LanIdentity(
            did=identity.did,
            mac=bytes.fromhex(identity.mac),
            product_key=product_key,
            passcode=identity.passcode,
            wifi_hardware_version=WIFI_HARDWARE_VERSION,
            wifi_software_version=WIFI_SOFTWARE_VERSION,
        )
        return with_device_info(configured, self._mcu.device_info if self._mcu is not None else None)

    def binding_open(self) -> bool:
        return self.binding.is_open()

    async def control(self, p0: bytes) -> bytes | None:
        if self._mcu is None:
            raise LinkError("the LAN server is not attached to an MCU")
        return await self._mcu.control(p0)
