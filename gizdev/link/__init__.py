"""The serial link: the asyncio protocol (ACKs, resends, duplicates) and the module- and MCU-role sessions."""

from gizdev.link.mcu import McuDevice, McuSession
from gizdev.link.module import ModuleEvent, ModuleSession
from gizdev.link.protocol import ACK_TIMEOUT_S, DEFAULT_RESENDS, LinkStats, Role, SerialLink

__all__ = [
    "ACK_TIMEOUT_S",
    "DEFAULT_RESENDS",
    "LinkStats",
    "McuDevice",
    "McuSession",
    "ModuleEvent",
    "ModuleSession",
    "Role",
    "SerialLink",
]
