"""The command table of the serial protocol (§2) and the payloads of every non-P0 command.

Each payload layout is a construct declaration; values cross the codec boundary as frozen slotted dataclasses
(:func:`decode_payload` / :func:`encode_payload`), never as construct Containers.

What :func:`decode_payload` returns:

* a payload dataclass for commands with a declared payload (device info, WiFi status, time, ...);
* ``None`` for commands whose payload is empty (heartbeat, ACKs, ...); a non-empty payload there is an error;
* the payload ``bytes`` unchanged for the P0 commands 0x03/0x04/0x05/0x06 (the P0 codec decodes those, and
  needs the product schema to do it) and for command codes not in the table (forward compatible: the caller
  decides what an unknown command means).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, ClassVar, Literal

from construct import (
    Adapter,
    BitsInteger,
    BitStruct,
    Bytes,
    Const,
    ConstructError,
    FixedSized,
    Flag,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    NullStripped,
    Prefixed,
    Struct,
    Terminated,
    ValidationError,
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


def _enum_json(value: int, enum: type[IntEnum]) -> dict[str, Any]:
    try:
        name: str | None = enum(value).name
    except ValueError:
        name = None
    return {"value": int(value), "name": name}


def _known(value: int, enum: type[IntEnum]) -> int:
    """`value` as a member of `enum` when it is one, else the plain int (unknown codes stay visible)."""
    try:
        return enum(value)
    except ValueError:
        return value


# -- payload values ------------------------------------------------------------------------------------------

GATEWAY_ATTRIBUTE_BIT = 0x01  # device attributes byte 7 bit 0: DEV_IS_GATEWAY, §2.1


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Command 0x02 (§2.1): 106 bytes, or the 2015 66-byte form without attributes and secret (both None)."""

    protocol_version: str
    p0_version: str
    hardware_version: str
    software_version: str
    product_key: str
    binding_timeout_s: int
    device_attributes: bytes | None = None
    product_secret: str | None = None

    @property
    def is_gateway(self) -> bool:
        """Whether byte 7 bit 0 of the device attributes marks a gateway / central-control product."""
        attrs = self.device_attributes
        return bool(attrs and len(attrs) == 8 and attrs[7] & GATEWAY_ATTRIBUTE_BIT)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (bytes as hex)."""
        return {
            "protocol_version": self.protocol_version,
            "p0_version": self.p0_version,
            "hardware_version": self.hardware_version,
            "software_version": self.software_version,
            "product_key": self.product_key,
            "binding_timeout_s": self.binding_timeout_s,
            "device_attributes": None if self.device_attributes is None else self.device_attributes.hex(),
            "is_gateway": self.is_gateway,
            "product_secret": self.product_secret,
        }


_WIFI_RESERVED_MASK = 0xE0C0  # bits 6-7 and 13-15 of the status word, §2.4


@dataclass(frozen=True, slots=True)
class WifiStatus:
    """Command 0x0D (§2.4): the module status word; `reserved` keeps bits 6-7 and 13-15 in place."""

    softap: bool = False
    station: bool = False
    onboarding: bool = False
    binding: bool = False
    router_connected: bool = False
    cloud_connected: bool = False
    rssi: int = 0
    app_connected: bool = False
    test_mode: bool = False
    reserved: int = 0

    @property
    def word(self) -> int:
        """The 16-bit status word."""
        return int.from_bytes(encode_payload(Command.WIFI_STATUS, self), "big")

    @classmethod
    def from_word(cls, word: int) -> WifiStatus:
        """Decode a 16-bit status word."""
        if not 0 <= word <= 0xFFFF:
            raise PayloadError(f"status word {word} out of range 0..0xffff", path="wifi_status")
        value = decode_payload(Command.WIFI_STATUS, word.to_bytes(2, "big"))
        assert isinstance(value, WifiStatus)
        return value

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, with the raw word as hex."""
        out: dict[str, Any] = {"word": f"0x{self.word:04x}"}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        return out


@dataclass(frozen=True, slots=True)
class ConfigMode:
    """Command 0x09 (§2.3): `mode` is a :class:`ConfigModeKind` when known, else the raw byte."""

    mode: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (mode as number and name)."""
        return {"mode": _enum_json(self.mode, ConfigModeKind)}


@dataclass(frozen=True, slots=True)
class IllegalMessage:
    """Commands 0x11/0x12 (§2.5): `code` is an :class:`IllegalMessageCode` when known, else the raw byte."""

    code: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (code as number and name)."""
        return {"code": _enum_json(self.code, IllegalMessageCode)}


@dataclass(frozen=True, slots=True)
class NetworkTime:
    """Command 0x18 (§2.6): the module's local calendar time and `ntp`, Unix seconds (UTC)."""

    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    ntp: int

    @property
    def ntp_datetime(self) -> datetime:
        """`ntp` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ntp, UTC)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["ntp_utc"] = self.ntp_datetime.isoformat()
        return out


@dataclass(frozen=True, slots=True)
class ModuleInfoRequest:
    """Command 0x21 (§2.7): the requested info type (the SDK sends 0)."""

    info_type: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"info_type": self.info_type}


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """Command 0x22 (§2.7), WiFi variant (65 bytes); `mac` and `ip` are ASCII as sent."""

    module_type: int
    protocol_version: str
    hardware_version: str
    software_version: str
    mac: str
    ip: str
    device_attributes: bytes

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (bytes as hex)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["device_attributes"] = self.device_attributes.hex()
        return out


@dataclass(frozen=True, slots=True)
class BigDataOffer:
    """Command 0x19 (§2.8): the module offers a file of `file_length` bytes with its MD5 (hex text)."""

    file_length: int
    md5: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"file_length": self.file_length, "md5": self.md5}


@dataclass(frozen=True, slots=True)
class BigDataReady:
    """Command 0x1B (§2.8): the MCU is ready; header flags bit 0 (not part of this payload) asks for HEX lines."""

    md5: str
    piece_size: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"md5": self.md5, "piece_size": self.piece_size}


@dataclass(frozen=True, slots=True)
class BigDataPiece:
    """Command 0x1D (§2.8): piece `number` (1-based) of `count`."""

    number: int
    count: int
    data: bytes

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (data as hex)."""
        return {"number": self.number, "count": self.count, "data": self.data.hex()}


@dataclass(frozen=True, slots=True)
class OtaCheckRequest:
    """Command 0x23, type 0x01 (§2.8): ask the module to check the cloud for MCU firmware."""

    TYPE: ClassVar[int] = 0x01
    product_key: str
    did: str
    hardware_version: str
    software_version: str
    check: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"type": self.TYPE, **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True, slots=True)
class OtaDownloadRequest:
    """Command 0x23, type 0x03 (§2.8): ask the module to download `url`."""

    TYPE: ClassVar[int] = 0x03
    url: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"type": self.TYPE, "url": self.url}


@dataclass(frozen=True, slots=True)
class OtaCheckResult:
    """Command 0x25, type 0x02 with one byte (§2.8): whether an update is needed."""

    TYPE: ClassVar[int] = 0x02
    update_needed: bool

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"type": self.TYPE, "update_needed": self.update_needed}


@dataclass(frozen=True, slots=True)
class OtaUpdateInfo:
    """Command 0x25, type 0x02 with version and URL (§2.8): the available firmware."""

    TYPE: ClassVar[int] = 0x02
    software_version: str
    url: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"type": self.TYPE, "software_version": self.software_version, "url": self.url}


@dataclass(frozen=True, slots=True)
class OtaDownloadResult:
    """Command 0x25, type 0x04 (§2.8): the module's download result byte."""

    TYPE: ClassVar[int] = 0x04
    result: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"type": self.TYPE, "result": self.result}


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


# -- construct declarations ----------------------------------------------------------------------------------


class _Ascii(Adapter):  # type: ignore[misc]  # construct is untyped
    """bytes <-> str, ASCII only; errors carry construct's field path."""

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        # Trailing NUL padding is already stripped; a NUL inside would not survive encoding, so reject it here.
        if b"\x00" in obj:
            raise ValidationError(f"NUL inside text: {obj.hex()}", path=path)
        try:
            return obj.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"not ASCII: {obj.hex()}", path=path) from exc

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise ValidationError(f"expected a string, got {type(obj).__name__}", path=path)
        if "\x00" in obj:
            raise ValidationError("NUL is the padding byte and cannot be part of the text", path=path)
        try:
            return obj.encode("ascii")
        except UnicodeEncodeError as exc:
            raise ValidationError(f"not ASCII: {obj!r}", path=path) from exc


def _padded(size: int) -> Any:
    """Fixed-size ASCII text, NUL padded (trailing NULs are stripped on parse)."""
    return _Ascii(FixedSized(size, NullStripped(GreedyBytes)))


_LENGTH_PREFIXED_ASCII = _Ascii(Prefixed(Int16ub, GreedyBytes))

_DEVICE_INFO_SHORT_FIELDS = (
    "protocol_version" / _padded(8),
    "p0_version" / _padded(8),
    "hardware_version" / _padded(8),
    "software_version" / _padded(8),
    "product_key" / _padded(32),
    "binding_timeout_s" / Int16ub,
)
DEVICE_INFO_SHORT = Struct(*_DEVICE_INFO_SHORT_FIELDS)  # 66 bytes, 2015 firmware
DEVICE_INFO = Struct(  # 106 bytes, SDK V03030000
    *_DEVICE_INFO_SHORT_FIELDS,
    "device_attributes" / Bytes(8),
    "product_secret" / _padded(32),
)
# Bit 15 of the big-endian word first.
WIFI_STATUS = BitStruct(
    "reserved_high" / BitsInteger(3),
    "test_mode" / Flag,
    "app_connected" / Flag,
    "rssi" / BitsInteger(3),
    "reserved_low" / BitsInteger(2),
    "cloud_connected" / Flag,
    "router_connected" / Flag,
    "binding" / Flag,
    "onboarding" / Flag,
    "station" / Flag,
    "softap" / Flag,
)
CONFIG_MODE = Struct("mode" / Int8ub)
ILLEGAL_MESSAGE = Struct("code" / Int8ub)
NETWORK_TIME = Struct(
    "year" / Int16ub,
    "month" / Int8ub,
    "day" / Int8ub,
    "hour" / Int8ub,
    "minute" / Int8ub,
    "second" / Int8ub,
    "ntp" / Int32ub,  # payload bytes 7..10, big-endian (the SDK's unpacked struct gets this wrong)
)
MODULE_INFO_REQUEST = Struct("info_type" / Int8ub)
MODULE_INFO = Struct(
    "module_type" / Int8ub,
    "protocol_version" / _padded(8),
    "hardware_version" / _padded(8),
    "software_version" / _padded(8),
    "mac" / _padded(16),
    "ip" / _padded(16),
    "device_attributes" / Bytes(8),
)
BIG_DATA_OFFER = Struct("file_length" / Int32ub, "md5" / _LENGTH_PREFIXED_ASCII, Terminated)
BIG_DATA_READY = Struct("md5" / _LENGTH_PREFIXED_ASCII, "piece_size" / Int16ub, Terminated)
BIG_DATA_PIECE = Struct("number" / Int16ub, "count" / Int16ub, "data" / GreedyBytes)
OTA_CHECK_REQUEST = Struct(
    Const(bytes((OtaCheckRequest.TYPE,))),
    "product_key" / _padded(32),
    "did" / _padded(32),
    "hardware_version" / _padded(8),
    "software_version" / _padded(8),
    "check" / Int8ub,
)
OTA_DOWNLOAD_REQUEST = Struct(Const(bytes((OtaDownloadRequest.TYPE,))), "url" / _LENGTH_PREFIXED_ASCII, Terminated)
OTA_CHECK_RESULT = Struct(Const(bytes((OtaCheckResult.TYPE,))), "update_needed" / Flag)
OTA_UPDATE_INFO = Struct(
    Const(bytes((OtaUpdateInfo.TYPE,))),
    "software_version" / _padded(8),
    "url" / _LENGTH_PREFIXED_ASCII,
    Terminated,
)
OTA_DOWNLOAD_RESULT = Struct(Const(bytes((OtaDownloadResult.TYPE,))), "result" / Int8ub)


# -- per-type codecs -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one payload dataclass maps to its construct layout."""

    name: str  # first element of error paths
    layout: Any
    size: int | None  # fixed payload size, checked before parsing for a clear message
    ranges: Mapping[str, tuple[int, int]]  # integer fields and their inclusive range
    blobs: Mapping[str, int]  # bytes fields of fixed size
    texts: Mapping[str, int]  # text fields and their maximum size in bytes
    bools: tuple[str, ...] = ()
    to_fields: Callable[[Any], dict[str, Any]] | None = None
    from_fields: Callable[[dict[str, Any]], Any] | None = None


def _wifi_to_fields(value: WifiStatus) -> dict[str, Any]:
    out = {f.name: getattr(value, f.name) for f in fields(value) if f.name != "reserved"}
    out["reserved_high"] = value.reserved >> 13 & 0x7
    out["reserved_low"] = value.reserved >> 6 & 0x3
    return out


def _wifi_from_fields(parsed: dict[str, Any]) -> WifiStatus:
    high = parsed.pop("reserved_high")
    low = parsed.pop("reserved_low")
    return WifiStatus(**parsed, reserved=high << 13 | low << 6)


_VERSION_TEXTS = {"protocol_version": 8, "hardware_version": 8, "software_version": 8}
_U8 = (0, 0xFF)
_U16 = (0, 0xFFFF)

_CODECS: dict[type, _Codec] = {
    DeviceInfo: _Codec(
        "device_info",
        DEVICE_INFO,
        106,
        {"binding_timeout_s": _U16},
        {"device_attributes": 8},
        {**_VERSION_TEXTS, "p0_version": 8, "product_key": 32, "product_secret": 32},
    ),
    WifiStatus: _Codec(
        "wifi_status",
        WIFI_STATUS,
        2,
        {"rssi": (0, 7), "reserved": (0, _WIFI_RESERVED_MASK)},
        {},
        {},
        tuple(f.name for f in fields(WifiStatus) if f.type == "bool"),
        _wifi_to_fields,
        _wifi_from_fields,
    ),
    ConfigMode: _Codec(
        "config_mode",
        CONFIG_MODE,
        1,
        {"mode": _U8},
        {},
        {},
        from_fields=lambda p: ConfigMode(_known(p["mode"], ConfigModeKind)),
    ),
    IllegalMessage: _Codec(
        "illegal_message",
        ILLEGAL_MESSAGE,
        1,
        {"code": _U8},
        {},
        {},
        from_fields=lambda p: IllegalMessage(_known(p["code"], IllegalMessageCode)),
    ),
    NetworkTime: _Codec(
        "network_time",
        NETWORK_TIME,
        11,
        {
            "year": _U16,
            "month": _U8,
            "day": _U8,
            "hour": _U8,
            "minute": _U8,
            "second": _U8,
            "ntp": (0, 0xFFFF_FFFF),
        },
        {},
        {},
    ),
    ModuleInfoRequest: _Codec("module_info_request", MODULE_INFO_REQUEST, 1, {"info_type": _U8}, {}, {}),
    ModuleInfo: _Codec(
        "module_info",
        MODULE_INFO,
        65,
        {"module_type": _U8},
        {"device_attributes": 8},
        {**_VERSION_TEXTS, "mac": 16, "ip": 16},
    ),
    BigDataOffer: _Codec(
        "big_data_offer", BIG_DATA_OFFER, None, {"file_length": (0, 0xFFFF_FFFF)}, {}, {"md5": 0xFFFF}
    ),
    BigDataReady: _Codec("big_data_ready", BIG_DATA_READY, None, {"piece_size": _U16}, {}, {"md5": 0xFFFF}),
    BigDataPiece: _Codec("big_data_piece", BIG_DATA_PIECE, None, {"number": _U16, "count": _U16}, {"data": -1}, {}),
    OtaCheckRequest: _Codec(
        "ota_check_request",
        OTA_CHECK_REQUEST,
        82,
        {"check": _U8},
        {},
        {"product_key": 32, "did": 32, "hardware_version": 8, "software_version": 8},
    ),
    OtaDownloadRequest: _Codec("ota_download_request", OTA_DOWNLOAD_REQUEST, None, {}, {}, {"url": 0xFFFF}),
    OtaCheckResult: _Codec("ota_check_result", OTA_CHECK_RESULT, 2, {}, {}, {}, ("update_needed",)),
    OtaUpdateInfo: _Codec("ota_update_info", OTA_UPDATE_INFO, None, {}, {}, {"software_version": 8, "url": 0xFFFF}),
    OtaDownloadResult: _Codec("ota_download_result", OTA_DOWNLOAD_RESULT, 2, {"result": _U8}, {}, {}),
}
_DEVICE_INFO_SHORT_CODEC = _Codec(
    "device_info",
    DEVICE_INFO_SHORT,
    66,
    {"binding_timeout_s": _U16},
    {},
    {**_VERSION_TEXTS, "p0_version": 8, "product_key": 32},
    from_fields=lambda p: DeviceInfo(**p),
)


def _construct_path(name: str, exc: ConstructError) -> str:
    # construct reports e.g. "(parsing) -> product_key"; we report "device_info/product_key".
    parts = [part.strip() for part in str(exc.path or "").split("->")[1:]]
    return "/".join([name, *parts])


def _construct_reason(exc: ConstructError) -> str:
    text = str(exc)
    return text.split("\n", 1)[1] if text.startswith("Error in path") and "\n" in text else text


def _validate(codec: _Codec, value: Any) -> None:
    for name, (low, high) in codec.ranges.items():
        item = getattr(value, name)
        if not isinstance(item, int) or isinstance(item, bool):
            raise PayloadError(f"expected an integer, got {type(item).__name__}", path=f"{codec.name}/{name}")
        if not low <= item <= high:
            raise PayloadError(f"{item} out of range {low}..{high}", path=f"{codec.name}/{name}")
    if isinstance(value, WifiStatus) and value.reserved & ~_WIFI_RESERVED_MASK:
        raise PayloadError(
            f"reserved bits 0x{value.reserved:04x} outside mask 0x{_WIFI_RESERVED_MASK:04x}",
            path=f"{codec.name}/reserved",
        )
    for name in codec.bools:
        if not isinstance(getattr(value, name), bool):
            raise PayloadError(
                f"expected a bool, got {type(getattr(value, name)).__name__}", path=f"{codec.name}/{name}"
            )
    for name, size in codec.blobs.items():
        item = getattr(value, name)
        if not isinstance(item, bytes | bytearray):
            raise PayloadError(f"expected bytes, got {type(item).__name__}", path=f"{codec.name}/{name}")
        if size >= 0 and len(item) != size:
            raise PayloadError(f"expected {size} bytes, got {len(item)}", path=f"{codec.name}/{name}")
    for name, size in codec.texts.items():
        item = getattr(value, name)
        if not isinstance(item, str):
            raise PayloadError(f"expected a string, got {type(item).__name__}", path=f"{codec.name}/{name}")
        if not item.isascii() or "\x00" in item:
            raise PayloadError(f"not NUL-free ASCII: {item!r}", path=f"{codec.name}/{name}")
        if len(item) > size:
            raise PayloadError(f"{len(item)} characters, at most {size} fit", path=f"{codec.name}/{name}")


def _encode(value: Any, codec: _Codec | None = None) -> bytes:
    codec = codec or _CODECS[type(value)]
    _validate(codec, value)
    if codec.to_fields is not None:
        build = codec.to_fields(value)
    else:
        build = {f.name: getattr(value, f.name) for f in fields(value)}
    try:
        return bytes(codec.layout.build(build))
    except ConstructError as exc:  # a backstop: _validate should have caught it with a clearer message
        raise PayloadError(_construct_reason(exc), path=_construct_path(codec.name, exc)) from exc


def _decode(cls: type, payload: bytes, codec: _Codec | None = None) -> Any:
    codec = codec or _CODECS[cls]
    if codec.size is not None and len(payload) != codec.size:
        raise PayloadError(f"expected {codec.size} bytes, got {len(payload)}", path=codec.name, data=payload)
    try:
        parsed = codec.layout.parse(payload)
    except ConstructError as exc:
        raise PayloadError(_construct_reason(exc), path=_construct_path(codec.name, exc), data=payload) from exc
    values = {key: value for key, value in parsed.items() if not key.startswith("_")}
    if codec.from_fields is not None:
        return codec.from_fields(values)
    return cls(**values)


# -- payload dispatch per command ----------------------------------------------------------------------------


def _decode_device_info(payload: bytes) -> DeviceInfo:
    # 66 bytes: 2015 firmware without attributes and secret (§2.1); anything else must be the 106-byte form.
    short = len(payload) == _DEVICE_INFO_SHORT_CODEC.size
    decoded: DeviceInfo = _decode(DeviceInfo, payload, _DEVICE_INFO_SHORT_CODEC if short else None)
    return decoded


def _encode_device_info(value: DeviceInfo) -> bytes:
    if value.device_attributes is None and value.product_secret is None:
        return _encode(value, _DEVICE_INFO_SHORT_CODEC)
    if value.device_attributes is None or value.product_secret is None:
        raise PayloadError(
            "device_attributes and product_secret are both set (106-byte form) or both None (66-byte form)",
            path="device_info",
        )
    return _encode(value)


def _decode_transaction_request(payload: bytes) -> OtaCheckRequest | OtaDownloadRequest:
    kind = payload[:1]
    if kind == bytes((OtaCheckRequest.TYPE,)):
        check: OtaCheckRequest = _decode(OtaCheckRequest, payload)
        return check
    if kind == bytes((OtaDownloadRequest.TYPE,)):
        download: OtaDownloadRequest = _decode(OtaDownloadRequest, payload)
        return download
    raise PayloadError("unknown transaction request type (want 01 or 03)", path="transaction_request", data=payload)


def _decode_transaction_result(payload: bytes) -> OtaCheckResult | OtaUpdateInfo | OtaDownloadResult:
    kind = payload[:1]
    if kind == bytes((OtaCheckResult.TYPE,)):
        # Type 02 comes in two shapes (§2.8): one flag byte, or version + URL; only the length tells them apart.
        if len(payload) == 2:
            flag: OtaCheckResult = _decode(OtaCheckResult, payload)
            return flag
        info: OtaUpdateInfo = _decode(OtaUpdateInfo, payload)
        return info
    if kind == bytes((OtaDownloadResult.TYPE,)):
        result: OtaDownloadResult = _decode(OtaDownloadResult, payload)
        return result
    raise PayloadError("unknown transaction result type (want 02 or 04)", path="transaction_result", data=payload)


# -- the command table ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One row of the command table (§2)."""

    code: Command
    name: str  # what the command does, in words
    direction: Direction  # the usual sender → receiver (0x11/0x12 are accepted both ways, §2.5)
    ack: Command | None  # the code that answers this request; None for replies
    waits_for_ack: bool  # whether the sender resends until `ack` arrives (§3)
    payload_types: tuple[type, ...]  # dataclasses decode_payload may return; empty: no payload (or P0)
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
    request_types: tuple[type, ...] = (),
    reply_types: tuple[type, ...] = (),
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

_DECODERS: dict[int, Callable[[bytes], Any]] = {
    Command.DEVICE_INFO_REPLY: _decode_device_info,
    Command.TRANSACTION_REQUEST: _decode_transaction_request,
    Command.TRANSACTION_RESULT: _decode_transaction_result,
}
_ENCODERS: dict[type, Callable[[Any], bytes]] = {DeviceInfo: _encode_device_info}


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
    decoder = _DECODERS.get(cmd)
    if decoder is not None:
        decoded: Payload = decoder(payload)
        return decoded
    (cls,) = spec.payload_types
    value: Payload = _decode(cls, payload)
    return value


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
    if type(value) not in spec.payload_types:
        wanted = " or ".join(t.__name__ for t in spec.payload_types)
        raise PayloadError(f"{spec.code.name} takes {wanted}, got {type(value).__name__}", path=path)
    encoder = _ENCODERS.get(type(value), _encode)
    return encoder(value)
