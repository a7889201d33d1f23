"""Payloads of the LAN protocol (cloud protocol §2): the command codes and the bodies inside the §1.6 envelope.

Pure declarations, no I/O: the server in :mod:`gizdev.bridge.lan` frames them with
:func:`gizdev.codec.envelope.encode_envelope`. Every body is declared once with construct (parse and build)::

    0x0004 / 0x0005  u16 did_len, did | u16 6, mac (raw) | u16 fw_len, fw | u16 32, product_key | mcu_attr (8)
                     [ api_server NUL gagent_version NUL ]   the tail newer firmware appends (§2.1)
    0x0007           u16 len, passcode (empty when the binding window is closed)
    0x0008           u16 len, passcode
    0x0009           u8 result (0 ok, 1 fail)
    0x0014           wifi_hw (8) wifi_sw (8) mcu_hw (8) mcu_sw (8) p0_ver (8) fw_id (8) | u16 len, fw | u16 32, pk
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from construct import Bytes, ConstructError, GreedyBytes, Int16ub, Prefixed, Struct

from gizdev.errors import PayloadError

__all__ = [
    "DISCOVERY",
    "MAC_LEN",
    "MCU_ATTR_LEN",
    "MODULE_INFO",
    "PASSCODE",
    "VERSION_FIELD_LEN",
    "DiscoveryInfo",
    "LanCmd",
    "LoginResult",
    "ModuleInfoReply",
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


_U16_BYTES = Prefixed(Int16ub, GreedyBytes)

DISCOVERY = Struct(
    "did" / _U16_BYTES,
    "mac" / _U16_BYTES,
    "firmware_version" / _U16_BYTES,
    "product_key" / _U16_BYTES,
    "mcu_attributes" / Bytes(MCU_ATTR_LEN),
    "tail" / GreedyBytes,
)
PASSCODE = Struct("passcode" / _U16_BYTES)
MODULE_INFO = Struct(
    "wifi_hardware_version" / Bytes(VERSION_FIELD_LEN),
    "wifi_software_version" / Bytes(VERSION_FIELD_LEN),
    "mcu_hardware_version" / Bytes(VERSION_FIELD_LEN),
    "mcu_software_version" / Bytes(VERSION_FIELD_LEN),
    "p0_version" / Bytes(VERSION_FIELD_LEN),
    "firmware_id" / Bytes(VERSION_FIELD_LEN),
    "firmware_version" / _U16_BYTES,
    "product_key" / _U16_BYTES,
)


@dataclass(frozen=True, slots=True)
class DiscoveryInfo:
    """What a 0x0004 discover reply / 0x0005 start-up broadcast says about the device."""

    did: str
    mac: bytes
    firmware_version: str
    product_key: str
    mcu_attributes: bytes
    api_server: str = ""
    gagent_version: str = ""


@dataclass(frozen=True, slots=True)
class ModuleInfoReply:
    """A 0x0014 reply; version fields are ASCII, NUL-padded to 8 bytes on the wire."""

    wifi_hardware_version: str
    wifi_software_version: str
    mcu_hardware_version: str
    mcu_software_version: str
    p0_version: str
    firmware_version: str
    product_key: str
    firmware_id: bytes = bytes(VERSION_FIELD_LEN)


def _ascii(text: str, path: str) -> bytes:
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise PayloadError(f"{text!r} is not ASCII", path=path) from None
    if b"\0" in data:
        raise PayloadError(f"{text!r} contains NUL", path=path)
    return data


def _fixed(text: str, path: str) -> bytes:
    data = _ascii(text, path)
    if len(data) > VERSION_FIELD_LEN:
        raise PayloadError(f"{text!r} is longer than {VERSION_FIELD_LEN} bytes", path=path)
    return data.ljust(VERSION_FIELD_LEN, b"\0")


def build_discovery(info: DiscoveryInfo) -> bytes:
    """Body of a 0x0004 / 0x0005 packet; the NUL-terminated tail is added when either tail field is set."""
    if len(info.mac) != MAC_LEN:
        raise PayloadError(f"mac must be {MAC_LEN} bytes", data=info.mac, path="discovery/mac")
    if len(info.mcu_attributes) != MCU_ATTR_LEN:
        raise PayloadError(
            f"mcu attributes must be {MCU_ATTR_LEN} bytes", data=info.mcu_attributes, path="discovery/mcu_attributes"
        )
    tail = b""
    if info.api_server or info.gagent_version:
        tail = (
            _ascii(info.api_server, "discovery/api_server")
            + b"\0"
            + _ascii(info.gagent_version, "discovery/gagent_version")
            + b"\0"
        )
    return bytes(
        DISCOVERY.build(
            {
                "did": _ascii(info.did, "discovery/did"),
                "mac": info.mac,
                "firmware_version": _ascii(info.firmware_version, "discovery/firmware_version"),
                "product_key": _ascii(info.product_key, "discovery/product_key"),
                "mcu_attributes": info.mcu_attributes,
                "tail": tail,
            }
        )
    )


def parse_discovery(body: bytes) -> DiscoveryInfo:
    """A 0x0004 / 0x0005 body (the tail is optional; text beyond its two NUL-terminated strings is ignored)."""
    try:
        parsed = DISCOVERY.parse(body)
    except ConstructError as exc:
        raise PayloadError(f"malformed discovery reply: {exc}", data=body, path="discovery") from None
    strings = bytes(parsed.tail).split(b"\0")
    # A tail without its NUL terminators is not the documented format; keep what is whole.
    api_server = strings[0] if len(strings) > 1 else b""
    gagent_version = strings[1] if len(strings) > 2 else b""
    try:
        return DiscoveryInfo(
            did=bytes(parsed.did).decode("ascii"),
            mac=bytes(parsed.mac),
            firmware_version=bytes(parsed.firmware_version).decode("ascii"),
            product_key=bytes(parsed.product_key).decode("ascii"),
            mcu_attributes=bytes(parsed.mcu_attributes),
            api_server=api_server.decode("ascii"),
            gagent_version=gagent_version.decode("ascii"),
        )
    except UnicodeDecodeError as exc:
        raise PayloadError(f"non-ASCII text in discovery reply: {exc}", data=body, path="discovery") from None


def build_passcode(passcode: str) -> bytes:
    """Body of a 0x0007 reply or a 0x0008 login request: u16 length + passcode ('' = refused)."""
    return bytes(PASSCODE.build({"passcode": _ascii(passcode, "passcode")}))


def parse_passcode(body: bytes) -> bytes:
    """The passcode bytes of a 0x0007 / 0x0008 body; raises PayloadError if the length does not match."""
    if len(body) < 2:
        raise PayloadError("passcode body shorter than its 2-byte length", data=body, path="passcode")
    declared = int.from_bytes(body[:2], "big")
    if declared != len(body) - 2:
        raise PayloadError(f"passcode length {declared} but {len(body) - 2} bytes follow", data=body, path="passcode")
    return bytes(body[2:])


def build_module_info(info: ModuleInfoReply) -> bytes:
    """Body of a 0x0014 reply."""
    if len(info.firmware_id) != VERSION_FIELD_LEN:
        raise PayloadError(
            f"firmware id must be {VERSION_FIELD_LEN} bytes", data=info.firmware_id, path="module_info/firmware_id"
        )
    return bytes(
        MODULE_INFO.build(
            {
                "wifi_hardware_version": _fixed(info.wifi_hardware_version, "module_info/wifi_hardware_version"),
                "wifi_software_version": _fixed(info.wifi_software_version, "module_info/wifi_software_version"),
                "mcu_hardware_version": _fixed(info.mcu_hardware_version, "module_info/mcu_hardware_version"),
                "mcu_software_version": _fixed(info.mcu_software_version, "module_info/mcu_software_version"),
                "p0_version": _fixed(info.p0_version, "module_info/p0_version"),
                "firmware_id": info.firmware_id,
                "firmware_version": _ascii(info.firmware_version, "module_info/firmware_version"),
                "product_key": _ascii(info.product_key, "module_info/product_key"),
            }
        )
    )


def parse_module_info(body: bytes) -> ModuleInfoReply:
    """A 0x0014 body."""
    try:
        parsed = MODULE_INFO.parse(body)
        text = {
            name: bytes(parsed[name]).rstrip(b"\0").decode("ascii")
            for name in (
                "wifi_hardware_version",
                "wifi_software_version",
                "mcu_hardware_version",
                "mcu_software_version",
                "p0_version",
                "firmware_version",
                "product_key",
            )
        }
    except ConstructError as exc:
        raise PayloadError(f"malformed module info: {exc}", data=body, path="module_info") from None
    except UnicodeDecodeError as exc:
        raise PayloadError(f"non-ASCII text in module info: {exc}", data=body, path="module_info") from None
    return ModuleInfoReply(firmware_id=bytes(parsed.firmware_id), **text)
