"""Payloads of the LAN protocol (cloud protocol §2): the command codes and the bodies inside the §1.6 envelope.

Pure declarations, no I/O: the LAN server (:mod:`gizdev.bridge.lan`) frames them with
:func:`gizdev.codec.envelope.encode_envelope`. Each body is declared once (:mod:`gizdev.codec.declare`), with the
text field types the serial payloads use too::

    0x0004 / 0x0005  u16 did_len, did | u16 6, mac (raw) | u16 fw_len, fw | u16 32, product_key | mcu_attr (8)
                     [ api_server NUL gagent_version NUL ]   the tail newer firmware appends (§2.1)
    0x0007           u16 len, passcode (empty when the binding window is closed)
    0x0008           u16 len, passcode
    0x0009           u8 result (0 ok, 1 fail)
    0x0014           wifi_hw (8) wifi_sw (8) mcu_hw (8) mcu_sw (8) p0_ver (8) fw_id (8) | u16 len, fw | u16 32, pk
"""

from __future__ import annotations

from enum import IntEnum

from gizdev.codec.declare import Blob, Declared, TailText, Text, declared, decode, encode, wire

__all__ = [
    "MAC_LEN",
    "MCU_ATTR_LEN",
    "VERSION_FIELD_LEN",
    "DiscoveryInfo",
    "LanCmd",
    "LoginResult",
    "ModuleInfoReply",
    "Passcode",
    "build_discovery",
    "build_module_info",
    "build_passcode",
    "parse_discovery",
    "parse_module_info",
    "parse_passcode",
]

MAC_LEN = 6  # §2.1: mac_len is always 6, raw bytes
MCU_ATTR_LEN = 8  # §2.1, GA-lan LAN_PROTOCOL_MCU_ATTR_LEN
VERSION_FIELD_LEN = 8  # §2.2 0x0014: each version field is 8 bytes


class LanCmd(IntEnum):
    """LAN command codes (cloud protocol §2.1/§2.2; GA-lan lan.h)."""

    ONBOARDING = 0x0001
    ONBOARDING_ACK = 0x0002
    DISCOVER = 0x0003
    DISCOVER_REPLY = 0x0004
    STARTUP_BROADCAST = 0x0005
    PASSCODE = 0x0006
    PASSCODE_REPLY = 0x0007
    LOGIN = 0x0008
    LOGIN_REPLY = 0x0009
    HOTSPOTS = 0x000C
    HOTSPOTS_REPLY = 0x000D
    MODULE_INFO = 0x0013
    MODULE_INFO_REPLY = 0x0014
    HEARTBEAT = 0x0015
    HEARTBEAT_REPLY = 0x0016
    TEST = 0x0017
    TEST_REPLY = 0x0018
    AIR_BROADCAST = 0x0019
    TRANSMIT = 0x0090
    TRANSMIT_REPLY = 0x0091
    CONTROL = 0x0093
    CONTROL_REPLY = 0x0094


class LoginResult(IntEnum):
    """The one byte of a 0x0009 reply (§2.2)."""

    OK = 0
    FAIL = 1


# The tail is written when either string is set, and then whole; text beyond its two strings is ignored, and a
# string cut off before its NUL reads as '' (older firmware sends no tail at all).
@declared("discovery", tail="api_server", rest=True)
class DiscoveryInfo(Declared):
    """What a 0x0004 discover reply / 0x0005 start-up broadcast says about the device."""

    did: str = wire(Text())
    mac: bytes = wire(Blob(MAC_LEN, prefixed=True))
    firmware_version: str = wire(Text())
    product_key: str = wire(Text())
    mcu_attributes: bytes = wire(Blob(MCU_ATTR_LEN))
    api_server: str = wire(TailText(), default="")
    gagent_version: str = wire(TailText(), default="")


@declared("passcode")
class Passcode(Declared):
    """The body of a 0x0007 reply or a 0x0008 login request ('' = refused)."""

    passcode: str = wire(Text())


_VERSION = Text(VERSION_FIELD_LEN)


@declared("module_info", rest=True)
class ModuleInfoReply(Declared):
    """A 0x0014 reply; version fields are ASCII, NUL-padded to 8 bytes on the wire."""

    wifi_hardware_version: str = wire(_VERSION)  # the module's
    wifi_software_version: str = wire(_VERSION)
    mcu_hardware_version: str = wire(_VERSION)  # the MCU's, from its device info
    mcu_software_version: str = wire(_VERSION)
    p0_version: str = wire(_VERSION)
    # Keyword-only: it keeps its place on the wire and its place last (with a default) in the constructor.
    firmware_id: bytes = wire(Blob(VERSION_FIELD_LEN), default=bytes(VERSION_FIELD_LEN), kw_only=True)
    firmware_version: str = wire(Text())
    product_key: str = wire(Text())


def build_discovery(info: DiscoveryInfo) -> bytes:
    """Body of a 0x0004 / 0x0005 packet; the NUL-terminated tail is added when either tail field is set."""
    return encode(info)


def parse_discovery(body: bytes) -> DiscoveryInfo:
    """A 0x0004 / 0x0005 body (the tail is optional; text beyond its two NUL-terminated strings is ignored)."""
    return decode(DiscoveryInfo, body)


def build_passcode(passcode: str) -> bytes:
    """Body of a 0x0007 reply or a 0x0008 login request: u16 length + passcode ('' = refused)."""
    return encode(Passcode(passcode))


def parse_passcode(body: bytes) -> bytes:
    """The passcode bytes of a 0x0007 / 0x0008 body; raises PayloadError if the length does not match."""
    return decode(Passcode, body).passcode.encode("ascii")


def build_module_info(info: ModuleInfoReply) -> bytes:
    """Body of a 0x0014 reply."""
    return encode(info)


def parse_module_info(body: bytes) -> ModuleInfoReply:
    """A 0x0014 body."""
    return decode(ModuleInfoReply, body)
