"""The command table of the serial protocol (§2) and the payloads of every non-P0 command.

Each payload is declared once, as a frozen slotted dataclass whose fields carry their wire types
(:mod:`gizdev.codec.declare` derives parse, build, size, checks and JSON from it); values cross the codec boundary
as those dataclasses (:func:`decode_payload` / :func:`encode_payload`), never as construct Containers.

What :func:`decode_payload` returns:

* a payload dataclass for commands with a declared payload (device info, WiFi status, time, ...);
* ``None`` for commands whose payload is empty (heartbeat, ACKs, ...); a non-empty payload there is an error;
* the payload ``bytes`` unchanged for the P0 commands 0x03/0x04/0x05/0x06 (the P0 codec decodes those, and
  needs the product schema to do it) and for command codes not in the table (forward compatible: the caller
  decides what an unknown command means).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, ClassVar, Literal, cast

from gizdev.codec.declare import (
    FLAG,
    U8,
    U16,
    U32,
    Bit,
    Bits,
    Blob,
    Declared,
    EnumU8,
    Reserved,
    Text,
    declared,
    decode,
    decode_any,
    encode,
    wire,
)
from gizdev.errors import PayloadError

__all__ = [
    "COMMAND_SPECS",
    "BigDataOffer",
    "BigDataPiece",
    "BigDataReady",
    "Command",
    "CommandSpec",
    "ConfigMode",
    "ConfigModeKind",
    "DeviceInfo",
    "Direction",
    "IllegalMessage",
    "IllegalMessageCode",
    "ModuleInfo",
    "ModuleInfoRequest",
    "NetworkTime",
    "OtaCheckRequest",
    "OtaCheckResult",
    "OtaDownloadRequest",
    "OtaDownloadResult",
    "OtaUpdateInfo",
    "Payload",
    "WifiStatus",
    "ack_code",
    "decode_payload",
    "encode_payload",
    "is_reply",
    "request_code",
    "spec_for",
]


class Command(IntEnum):
    """Serial command codes (serial protocol §2). Replies are the request code + 1."""

    DEVICE_INFO_REQUEST = 0x01
    DEVICE_INFO_REPLY = 0x02
    P0_DOWN = 0x03  # module → MCU: P0 control / read / transparent
    P0_DOWN_ACK = 0x04  # empty, or the read-reply P0
    P0_UP = 0x05  # MCU → module: P0 report / transparent up
    P0_UP_ACK = 0x06
    HEARTBEAT = 0x07
    HEARTBEAT_ACK = 0x08
    CONFIG_MODE = 0x09
    CONFIG_MODE_ACK = 0x0A
    MODULE_RESET = 0x0B
    MODULE_RESET_ACK = 0x0C
    WIFI_STATUS = 0x0D
    WIFI_STATUS_ACK = 0x0E
    MCU_RESTART = 0x0F
    MCU_RESTART_ACK = 0x10
    ILLEGAL_MESSAGE = 0x11
    ILLEGAL_MESSAGE_REPLY = 0x12
    TEST_MODE = 0x13
    TEST_MODE_ACK = 0x14
    BINDING_MODE = 0x15
    BINDING_MODE_ACK = 0x16
    NETWORK_TIME_REQUEST = 0x17
    NETWORK_TIME_REPLY = 0x18
    BIG_DATA_OFFER = 0x19
    BIG_DATA_OFFER_ACK = 0x1A
    BIG_DATA_READY = 0x1B
    BIG_DATA_READY_ACK = 0x1C
    BIG_DATA_PIECE = 0x1D
    BIG_DATA_PIECE_ACK = 0x1E
    BIG_DATA_SENDER_CANCEL = 0x1F
    BIG_DATA_SENDER_CANCEL_ACK = 0x20
    MODULE_INFO_REQUEST = 0x21
    MODULE_INFO_REPLY = 0x22
    TRANSACTION_REQUEST = 0x23
    TRANSACTION_REQUEST_ACK = 0x24
    TRANSACTION_RESULT = 0x25
    TRANSACTION_RESULT_ACK = 0x26
    BIG_DATA_RECEIVER_CANCEL = 0x27
    BIG_DATA_RECEIVER_CANCEL_ACK = 0x28
    MODULE_RESTART = 0x29
    MODULE_RESTART_ACK = 0x2A


Direction = Literal["to_mcu", "to_module"]


class ConfigModeKind(IntEnum):
    """Onboarding modes of command 0x09 (§2.3)."""

    SOFTAP = 1
    AIRLINK = 2


class IllegalMessageCode(IntEnum):
    """Error codes of commands 0x11/0x12 (§2.5)."""

    CHECKSUM = 1
    COMMAND = 2
    OTHER = 3
    FIRMWARE_MISMATCH = 4  # GAgent only, OTA


# -- payload values ------------------------------------------------------------------------------------------

GATEWAY_ATTRIBUTE_BIT = 0x01  # device attributes byte 7 bit 0: DEV_IS_GATEWAY, §2.1
_VERSION = Text(8)  # the protocol's version fields: 8 ASCII bytes, NUL padded


@declared("device_info", tail="device_attributes")
class DeviceInfo(Declared):
    """Command 0x02 (§2.1): 106 bytes, or the 2015 66-byte form without attributes and secret (both None)."""

    protocol_version: str = wire(_VERSION)  # "00000004"
    p0_version: str = wire(_VERSION)  # "00000002", fixed- and variable-length SDKs alike
    hardware_version: str = wire(_VERSION)
    software_version: str = wire(_VERSION)
    product_key: str = wire(Text(32))
    binding_timeout_s: int = wire(U16)  # seconds bindable after onboarding; 0: always bindable
    device_attributes: bytes | None = wire(Blob(8), default=None)
    product_secret: str | None = wire(Text(32), default=None)

    @property
    def is_gateway(self) -> bool:
        """Whether byte 7 bit 0 of the device attributes marks a gateway / central-control product."""
        attrs = self.device_attributes
        return bool(attrs and len(attrs) == 8 and attrs[7] & GATEWAY_ATTRIBUTE_BIT)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (bytes as hex), with `is_gateway` after the attributes it is read from."""
        out = Declared.to_json(self)
        secret = out.pop("product_secret")
        return {**out, "is_gateway": self.is_gateway, "product_secret": secret}


@declared("wifi_status", word=2)
class WifiStatus(Declared):
    """Command 0x0D (§2.4): the module status word; `reserved` keeps bits 6-7 and 13-15 in place."""

    softap: bool = wire(Bit(0), default=False)
    station: bool = wire(Bit(1), default=False)
    onboarding: bool = wire(Bit(2), default=False)
    binding: bool = wire(Bit(3), default=False)
    router_connected: bool = wire(Bit(4), default=False)
    cloud_connected: bool = wire(Bit(5), default=False)
    rssi: int = wire(Bits(8, 3), default=0)
    app_connected: bool = wire(Bit(11), default=False)
    test_mode: bool = wire(Bit(12), default=False)
    reserved: int = wire(Reserved(0xE0C0), default=0)

    @property
    def word(self) -> int:
        """The 16-bit status word."""
        return int.from_bytes(encode(self), "big")

    @classmethod
    def from_word(cls, word: int) -> WifiStatus:
        """Decode a 16-bit status word."""
        if not 0 <= word <= 0xFFFF:
            raise PayloadError(f"status word {word} out of range 0..0xffff", path="wifi_status")
        return decode(cls, word.to_bytes(2, "big"))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, with the raw word as hex."""
        return {"word": f"0x{self.word:04x}", **Declared.to_json(self)}


@declared("config_mode")
class ConfigMode(Declared):
    """Command 0x09 (§2.3): `mode` is a :class:`ConfigModeKind` when known, else the raw byte."""

    mode: int = wire(EnumU8(ConfigModeKind))


@declared("illegal_message")
class IllegalMessage(Declared):
    """Commands 0x11/0x12 (§2.5): `code` is an :class:`IllegalMessageCode` when known, else the raw byte."""

    code: int = wire(EnumU8(IllegalMessageCode))


@declared("network_time")
class NetworkTime(Declared):
    """Command 0x18 (§2.6): the module's local calendar time and `ntp`, Unix seconds (UTC)."""

    year: int = wire(U16)  # year to second: the module's local time (GAgent 4.x: UTC+8); all 0 when offline
    month: int = wire(U8)
    day: int = wire(U8)
    hour: int = wire(U8)
    minute: int = wire(U8)
    second: int = wire(U8)
    ntp: int = wire(U32)  # payload bytes 7..10, big-endian (the SDK's unpacked struct gets this wrong)

    @property
    def ntp_datetime(self) -> datetime:
        """`ntp` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ntp, UTC)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, with `ntp` as an ISO time too."""
        return {**Declared.to_json(self), "ntp_utc": self.ntp_datetime.isoformat()}


@declared("module_info_request")
class ModuleInfoRequest(Declared):
    """Command 0x21 (§2.7): the requested info type (the SDK sends 0)."""

    info_type: int = wire(U8, default=0)


@declared("module_info")
class ModuleInfo(Declared):
    """Command 0x22 (§2.7), WiFi variant (65 bytes); `mac` and `ip` are ASCII as sent."""

    module_type: int = wire(U8)  # 0x01: WiFi
    protocol_version: str = wire(_VERSION)  # the serial protocol's
    hardware_version: str = wire(_VERSION)  # the module's, as are the next three
    software_version: str = wire(_VERSION)
    mac: str = wire(Text(16))
    ip: str = wire(Text(16))
    device_attributes: bytes = wire(Blob(8))  # an echo of the MCU's (device info)


@declared("big_data_offer")
class BigDataOffer(Declared):
    """Command 0x19 (§2.8): the module offers a file of `file_length` bytes with its MD5 (hex text)."""

    file_length: int = wire(U32)
    md5: str = wire(Text())


@declared("big_data_ready")
class BigDataReady(Declared):
    """Command 0x1B (§2.8): the MCU is ready; header flags bit 0 (not part of this payload) asks for HEX lines."""

    md5: str = wire(Text())
    piece_size: int = wire(U16)


@declared("big_data_piece")
class BigDataPiece(Declared):
    """Command 0x1D (§2.8): piece `number` (1-based) of `count`."""

    number: int = wire(U16)
    count: int = wire(U16)
    data: bytes = wire(Blob())


# Commands 0x23 and 0x25 carry several payloads, told apart by their leading TYPE byte (§2.8).


@declared("ota_check_request")
class OtaCheckRequest(Declared):
    """Command 0x23, type 0x01 (§2.8): ask the module to check the cloud for MCU firmware."""

    TYPE: ClassVar[int] = 0x01
    product_key: str = wire(Text(32))
    did: str = wire(Text(32))
    hardware_version: str = wire(_VERSION)
    software_version: str = wire(_VERSION)
    check: int = wire(U8)


@declared("ota_download_request")
class OtaDownloadRequest(Declared):
    """Command 0x23, type 0x03 (§2.8): ask the module to download `url`."""

    TYPE: ClassVar[int] = 0x03
    url: str = wire(Text())


@declared("ota_check_result")
class OtaCheckResult(Declared):
    """Command 0x25, type 0x02 with one byte (§2.8): whether an update is needed."""

    TYPE: ClassVar[int] = 0x02
    update_needed: bool = wire(FLAG)


@declared("ota_update_info")
class OtaUpdateInfo(Declared):
    """Command 0x25, type 0x02 with version and URL (§2.8): the available firmware (told apart by its length)."""

    TYPE: ClassVar[int] = 0x02
    software_version: str = wire(_VERSION)
    url: str = wire(Text())


@declared("ota_download_result")
class OtaDownloadResult(Declared):
    """Command 0x25, type 0x04 (§2.8): the module's download result byte."""

    TYPE: ClassVar[int] = 0x04
    result: int = wire(U8)


Payload = (
    DeviceInfo
    | WifiStatus
    | ConfigMode
    | IllegalMessage
    | NetworkTime
    | ModuleInfoRequest
    | ModuleInfo
    | BigDataOffer
    | BigDataReady
    | BigDataPiece
    | OtaCheckRequest
    | OtaDownloadRequest
    | OtaCheckResult
    | OtaUpdateInfo
    | OtaDownloadResult
)


# -- the command table ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of the command table (§2)."""

    code: Command
    name: str  # what the command does, in words
    direction: Direction  # the usual sender → receiver (0x11/0x12 are accepted both ways, §2.5)
    ack: Command | None  # the code that answers this request; None for replies
    waits_for_ack: bool  # whether the sender resends until `ack` arrives (§3)
    payload_types: tuple[type[Declared], ...]  # dataclasses decode_payload may return; empty: no payload (or P0)
    p0: bool = False  # payload is P0, decoded by the P0 codec

    @property
    def is_reply(self) -> bool:
        """Whether this code answers a request."""
        return self.ack is None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "code": int(self.code),
            "command": self.code.name,
            "name": self.name,
            "direction": self.direction,
            "ack": None if self.ack is None else int(self.ack),
            "waits_for_ack": self.waits_for_ack,
            "payload": "p0" if self.p0 else [t.__name__ for t in self.payload_types] or None,
        }


def _pair(
    request: Command,
    name: str,
    direction: Direction,
    request_types: tuple[type[Declared], ...] = (),
    reply_types: tuple[type[Declared], ...] = (),
    *,
    waits: bool = True,
    p0: bool = False,
) -> tuple[CommandSpec, CommandSpec]:
    reply = Command(request + 1)
    back: Direction = "to_module" if direction == "to_mcu" else "to_mcu"
    return (
        CommandSpec(request, name, direction, reply, waits, request_types, p0),
        CommandSpec(reply, f"reply to: {name}", back, None, False, reply_types, p0),
    )


_TABLE = (
    *_pair(Command.DEVICE_INFO_REQUEST, "get device info", "to_mcu", (), (DeviceInfo,)),
    *_pair(Command.P0_DOWN, "P0 control / read / transparent down", "to_mcu", p0=True),
    *_pair(Command.P0_UP, "P0 report / transparent up", "to_module", p0=True),
    *_pair(Command.HEARTBEAT, "heartbeat", "to_mcu"),
    *_pair(Command.CONFIG_MODE, "enter configuration (onboarding) mode", "to_module", (ConfigMode,)),
    *_pair(Command.MODULE_RESET, "reset the module's network configuration", "to_module"),
    *_pair(Command.WIFI_STATUS, "module status push", "to_mcu", (WifiStatus,)),
    *_pair(Command.MCU_RESTART, "restart the MCU", "to_mcu"),
    # The SDK never answers 0x11 (§2.5), so nobody may wait for 0x12.
    *_pair(Command.ILLEGAL_MESSAGE, "illegal message", "to_mcu", (IllegalMessage,), (IllegalMessage,), waits=False),
    *_pair(Command.TEST_MODE, "enter production-test mode", "to_module"),
    *_pair(Command.BINDING_MODE, "open the binding window", "to_module"),
    *_pair(Command.NETWORK_TIME_REQUEST, "get network time", "to_module", (), (NetworkTime,)),
    *_pair(Command.BIG_DATA_OFFER, "big data: offer a file", "to_mcu", (BigDataOffer,)),
    *_pair(Command.BIG_DATA_READY, "big data: receiver ready", "to_module", (BigDataReady,)),
    *_pair(Command.BIG_DATA_PIECE, "big data: one piece", "to_mcu", (BigDataPiece,)),
    *_pair(Command.BIG_DATA_SENDER_CANCEL, "big data: sender cancels", "to_mcu"),
    *_pair(Command.MODULE_INFO_REQUEST, "get module info", "to_module", (ModuleInfoRequest,), (ModuleInfo,)),
    *_pair(
        Command.TRANSACTION_REQUEST,
        "transaction request (MCU OTA via the cloud)",
        "to_module",
        (OtaCheckRequest, OtaDownloadRequest),
    ),
    *_pair(
        Command.TRANSACTION_RESULT,
        "transaction result",
        "to_mcu",
        (OtaCheckResult, OtaUpdateInfo, OtaDownloadResult),
    ),
    *_pair(Command.BIG_DATA_RECEIVER_CANCEL, "big data: receiver cancels", "to_module"),
    *_pair(Command.MODULE_RESTART, "restart the module", "to_module"),
)

COMMAND_SPECS: Mapping[int, CommandSpec] = {spec.code: spec for spec in _TABLE}


def spec_for(cmd: int) -> CommandSpec | None:
    """The table row for a command code, or None for a code the table does not know."""
    return COMMAND_SPECS.get(cmd)


def ack_code(cmd: int) -> int | None:
    """The code that answers request `cmd` (cmd + 1), or None if `cmd` is a reply or unknown."""
    spec = COMMAND_SPECS.get(cmd)
    return None if spec is None or spec.ack is None else int(spec.ack)


def request_code(cmd: int) -> int | None:
    """The request that reply `cmd` answers, or None if `cmd` is a request or unknown."""
    spec = COMMAND_SPECS.get(cmd)
    return None if spec is None or spec.ack is not None else int(spec.code) - 1


def is_reply(cmd: int) -> bool:
    """Whether `cmd` is a known reply / ACK code."""
    spec = COMMAND_SPECS.get(cmd)
    return spec is not None and spec.is_reply


def decode_payload(cmd: int, payload: bytes) -> Payload | bytes | None:
    """Decode the payload of command `cmd`: a dataclass, None (empty payload), or the bytes (P0 / unknown)."""
    payload = bytes(payload)
    spec = COMMAND_SPECS.get(cmd)
    if spec is None or spec.p0:
        return payload
    if not spec.payload_types:
        if payload:
            raise PayloadError(
                f"expected an empty payload, got {len(payload)} bytes", path=spec.code.name.lower(), data=payload
            )
        return None
    return cast(Payload, decode_any(spec.payload_types, payload, spec.code.name.lower()))


def encode_payload(cmd: int, value: Payload | bytes | None) -> bytes:
    """Payload bytes of command `cmd` for `value` (the inverse of :func:`decode_payload`)."""
    if not 0 <= cmd <= 0xFF:
        raise PayloadError(f"cmd {cmd} out of range 0..255", path="cmd")
    spec = COMMAND_SPECS.get(cmd)
    if spec is None or spec.p0:
        if not isinstance(value, bytes | bytearray):
            raise PayloadError(
                f"cmd 0x{cmd:02x} takes raw payload bytes, got {type(value).__name__}", path=f"cmd_{cmd:02x}"
            )
        return bytes(value)
    path = spec.code.name.lower()
    if not spec.payload_types:
        if value is None or value == b"":
            return b""
        raise PayloadError(f"{spec.code.name} carries no payload, got {type(value).__name__}", path=path)
    if not isinstance(value, Declared) or type(value) not in spec.payload_types:
        wanted = " or ".join(t.__name__ for t in spec.payload_types)
        raise PayloadError(f"{spec.code.name} takes {wanted}, got {type(value).__name__}", path=path)
    return encode(value)
