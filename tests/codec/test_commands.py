"""The command table and the non-P0 payloads: vendor vectors, spec examples, hostile payloads, round trips."""

from __future__ import annotations

import json
import re
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.codec.commands import (
    COMMAND_SPECS,
    BigDataOffer,
    BigDataPiece,
    BigDataReady,
    Command,
    ConfigMode,
    ConfigModeKind,
    DeviceInfo,
    IllegalMessage,
    IllegalMessageCode,
    ModuleInfo,
    ModuleInfoRequest,
    NetworkTime,
    OtaCheckRequest,
    OtaCheckResult,
    OtaDownloadRequest,
    OtaDownloadResult,
    OtaUpdateInfo,
    Payload,
    WifiStatus,
    ack_code,
    decode_payload,
    encode_payload,
    is_reply,
    request_code,
    spec_for,
)
from gizdev.codec.frame import encode_frame, parse_frame
from gizdev.errors import CodecError, PayloadError
from tests.codec.common import common
from tests.conftest import vector_meta, vectors_of_kind

# -- the table -----------------------------------------------------------------------------------------------

# serial protocol §2: request code -> (direction of the request, its reply)
SPEC_REQUESTS = {
    0x01: "to_mcu",
    0x03: "to_mcu",
    0x05: "to_module",
    0x07: "to_mcu",
    0x09: "to_module",
    0x0B: "to_module",
    0x0D: "to_mcu",
    0x0F: "to_mcu",
    0x11: "to_mcu",
    0x13: "to_module",
    0x15: "to_module",
    0x17: "to_module",
    0x19: "to_mcu",
    0x1B: "to_module",
    0x1D: "to_mcu",
    0x1F: "to_mcu",
    0x21: "to_module",
    0x23: "to_module",
    0x25: "to_mcu",
    0x27: "to_module",
    0x29: "to_module",
}


def test_command_codes_cover_the_spec_table() -> None:
    assert sorted(int(c) for c in Command) == list(range(0x01, 0x2B))
    assert int(Command.DEVICE_INFO_REQUEST) == 0x01
    assert int(Command.DEVICE_INFO_REPLY) == 0x02
    assert int(Command.P0_DOWN) == 0x03
    assert int(Command.P0_DOWN_ACK) == 0x04
    assert int(Command.P0_UP) == 0x05
    assert int(Command.P0_UP_ACK) == 0x06
    assert int(Command.HEARTBEAT) == 0x07
    assert int(Command.HEARTBEAT_ACK) == 0x08
    assert int(Command.CONFIG_MODE) == 0x09
    assert int(Command.ILLEGAL_MESSAGE) == 0x11
    assert int(Command.ILLEGAL_MESSAGE_REPLY) == 0x12
    assert int(Command.NETWORK_TIME_REQUEST) == 0x17
    assert int(Command.NETWORK_TIME_REPLY) == 0x18
    assert int(Command.MODULE_INFO_REQUEST) == 0x21
    assert int(Command.MODULE_INFO_REPLY) == 0x22
    assert int(Command.MODULE_RESTART) == 0x29
    assert int(Command.MODULE_RESTART_ACK) == 0x2A


@pytest.mark.parametrize(("request_cmd", "direction"), sorted(SPEC_REQUESTS.items()))
def test_each_request_and_its_reply(request_cmd: int, direction: str) -> None:
    spec = spec_for(request_cmd)
    reply = spec_for(request_cmd + 1)
    assert spec is not None
    assert reply is not None
    assert spec.code == request_cmd
    assert spec.direction == direction
    assert reply.direction != direction
    assert spec.ack == request_cmd + 1
    assert ack_code(request_cmd) == request_cmd + 1
    assert reply.ack is None
    assert ack_code(request_cmd + 1) is None
    assert request_code(request_cmd + 1) == request_cmd
    assert request_code(request_cmd) is None
    assert is_reply(request_cmd + 1)
    assert not is_reply(request_cmd)
    assert not reply.waits_for_ack
    json.dumps(spec.to_json())


def test_who_waits_for_an_ack() -> None:
    # §3: MCU frames that wait for an ACK (SDK-F); the module waits for its requests too (GA).
    for cmd in (0x05, 0x09, 0x0B, 0x13, 0x15, 0x17, 0x21, 0x29, 0x01, 0x03, 0x07, 0x0D, 0x0F):
        spec = spec_for(cmd)
        assert spec is not None
        assert spec.waits_for_ack, hex(cmd)
    # §2.5: the SDK never answers 0x11, so nobody may wait for 0x12.
    spec = spec_for(0x11)
    assert spec is not None
    assert not spec.waits_for_ack


def test_p0_commands_are_marked() -> None:
    assert [code for code, spec in COMMAND_SPECS.items() if spec.p0] == [0x03, 0x04, 0x05, 0x06]


@pytest.mark.parametrize("cmd", [0x00, 0x2B, 0x2D, 0x40, 0x50, 0xFF])
def test_unknown_codes(cmd: int) -> None:
    assert spec_for(cmd) is None
    assert ack_code(cmd) is None
    assert request_code(cmd) is None
    assert not is_reply(cmd)
    assert decode_payload(cmd, b"\x01\x02") == b"\x01\x02"
    assert encode_payload(cmd, b"\x01\x02") == b"\x01\x02"


# -- vectors -------------------------------------------------------------------------------------------------


def payload_of(wire_hex: str) -> tuple[int, bytes]:
    frame = parse_frame(bytes.fromhex(wire_hex))
    return frame.cmd, frame.payload


# Fixed payload sizes in bytes, from the spec tables (§2.1-§2.8); None: variable. DeviceInfo: 106, or 66 (2015).
SPEC_SIZES: dict[type, int | None] = {
    WifiStatus: 2,
    ConfigMode: 1,
    IllegalMessage: 1,
    NetworkTime: 11,
    ModuleInfoRequest: 1,
    ModuleInfo: 65,
    BigDataOffer: None,
    BigDataReady: None,
    BigDataPiece: None,
    OtaCheckRequest: 82,
    OtaDownloadRequest: None,
    OtaCheckResult: 2,
    OtaUpdateInfo: None,
    OtaDownloadResult: 2,
}


def spec_size(value: Payload | None) -> int | None:
    """The size the spec gives a payload value (0 for an empty payload)."""
    if value is None:
        return 0
    if isinstance(value, DeviceInfo):
        return 66 if value.product_secret is None else 106
    return SPEC_SIZES[type(value)]


def roundtrip(cmd: int, payload: bytes) -> Any:
    """Decode, check the value with common() (it builds the same bytes, at the spec's size), return it."""
    value = decode_payload(cmd, payload)
    assert not isinstance(value, bytes)
    common(value, payload, spec_size(value), cmd=cmd)
    return value


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("device_info_reply"))
def test_device_info_vectors(name: str, vector: dict[str, Any]) -> None:
    meta = vector_meta(name)
    assert payload_of(vector["input_hex"]) == (0x01, b"")
    assert decode_payload(0x01, b"") is None
    cmd, payload = payload_of(vector["frame_hex"])
    assert cmd == 0x02
    info = roundtrip(cmd, payload)
    assert isinstance(info, DeviceInfo)
    assert info.protocol_version == "00000004"
    assert info.p0_version == "00000002"
    assert info.hardware_version == meta["hardware_version"]
    assert info.software_version == meta["software_version"]
    assert info.product_key == meta["product_key"]
    assert info.product_secret == meta["product_secret"]
    assert info.binding_timeout_s == 0
    assert info.device_attributes == bytes(7) + b"\x02"  # SDK: byte 7 bit 1 always set (§2.1)
    assert not info.is_gateway
    assert json.loads(json.dumps(info.to_json()))["product_key"] == meta["product_key"]
    expected = DeviceInfo(
        "00000004",
        "00000002",
        meta["hardware_version"],
        meta["software_version"],
        meta["product_key"],
        0,
        bytes(7) + b"\x02",
        meta["product_secret"],
    )
    common(expected, payload, 106, cmd=cmd)


def test_device_info_short_2015_form() -> None:
    full = decode_payload(0x02, payload_of(vectors_of_kind("device_info_reply")[0].values[1]["frame_hex"])[1])
    assert isinstance(full, DeviceInfo)
    short = replace(full, device_attributes=None, product_secret=None)
    payload = encode_payload(0x02, short)
    assert len(payload) == 66  # §2.1: 2015 firmware stops after the binding timeout, len 0x0047
    assert len(encode_frame(0x02, 0, payload)) == 0x47 + 4
    assert decode_payload(0x02, payload) == short
    assert not short.is_gateway
    common(short, payload, 66, cmd=0x02)


def test_device_info_gateway_bit() -> None:
    info = DeviceInfo("00000004", "00000002", "1", "2", "k" * 32, 600, bytes(7) + b"\x03", "s" * 32)
    assert info.is_gateway
    assert decode_payload(0x02, encode_payload(0x02, info)) == info
    common(info, encode_payload(0x02, info), 106, cmd=0x02)


# §2.4 bit positions, written out from the spec table
WIFI_BITS = {
    "softap": 0,
    "station": 1,
    "onboarding": 2,
    "binding": 3,
    "router_connected": 4,
    "cloud_connected": 5,
    "app_connected": 11,
    "test_mode": 12,
}


def check_wifi_word(status: WifiStatus, word: int) -> None:
    for name, bit in WIFI_BITS.items():
        assert getattr(status, name) == bool(word >> bit & 1), name
    assert status.rssi == word >> 8 & 7
    assert status.word == word
    expected = WifiStatus(
        **{name: bool(word >> bit & 1) for name, bit in WIFI_BITS.items()}, rssi=word >> 8 & 7, reserved=word & 0xE0C0
    )
    common(expected, word.to_bytes(2, "big"), 2, cmd=0x0D)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("wifi_status_ack"))
def test_wifi_status_vectors(name: str, vector: dict[str, Any]) -> None:
    word = int(re.search(r"wifi status 0x([0-9a-f]{4})", vector["note"]).group(1), 16)  # type: ignore[union-attr]
    cmd, payload = payload_of(vector["input_hex"])
    assert cmd == 0x0D
    assert payload == word.to_bytes(2, "big")
    status = roundtrip(cmd, payload)
    assert isinstance(status, WifiStatus)
    assert status.rssi == vector["rssi"]
    check_wifi_word(status, word)
    assert WifiStatus.from_word(word) == status
    assert json.loads(json.dumps(status.to_json()))["word"] == f"0x{word:04x}"
    assert payload_of(vector["frame_hex"]) == (0x0E, b"")
    assert decode_payload(0x0E, b"") is None
    common(None, b"", 0, cmd=0x0E)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        # §7 Ex 6: station + router + cloud + rssi 5
        (0x0532, {"station": True, "router_connected": True, "cloud_connected": True, "rssi": 5}),
        # GAgent observations: station + binding + router + rssi 7; then + cloud; then + client on
        (0x071A, {"station": True, "binding": True, "router_connected": True, "rssi": 7}),
        (0x073A, {"station": True, "binding": True, "router_connected": True, "cloud_connected": True, "rssi": 7}),
        (
            0x0F3A,
            {
                "station": True,
                "binding": True,
                "router_connected": True,
                "cloud_connected": True,
                "rssi": 7,
                "app_connected": True,
            },
        ),
        (0x1000, {"test_mode": True}),
        (0x0001, {"softap": True}),
        (0x0004, {"onboarding": True}),
        (0xE0C0, {"reserved": 0xE0C0}),  # reserved bits survive a round trip
    ],
)
def test_wifi_status_words(word: int, expected: dict[str, Any]) -> None:
    status = WifiStatus.from_word(word)
    assert status == WifiStatus(**expected)
    assert status.word == word
    assert encode_payload(0x0D, status) == word.to_bytes(2, "big")
    check_wifi_word(status, word)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("error_reply"))
def test_error_reply_vectors(name: str, vector: dict[str, Any]) -> None:
    code = int(re.search(r"error code 0x([0-9a-f]{2})", vector["note"]).group(1), 16)  # type: ignore[union-attr]
    cmd, payload = payload_of(vector["frame_hex"])
    assert cmd == 0x12
    value = roundtrip(cmd, payload)
    assert value == IllegalMessage(code)
    assert value.code == {1: IllegalMessageCode.CHECKSUM, 2: IllegalMessageCode.COMMAND}[code]
    assert value.to_json() == {"code": {"value": code, "name": IllegalMessageCode(code).name}}
    common(IllegalMessage(code), payload, 1, cmd=cmd)


def test_unknown_command_vector_input_is_passed_through() -> None:
    (vector,) = [p.values[1] for p in vectors_of_kind("error_reply") if p.values[1]["id"] == "error_reply-0597"]
    cmd, payload = payload_of(vector["input_hex"])
    assert cmd == 0x40
    assert spec_for(cmd) is None
    assert decode_payload(cmd, payload) == b""


def test_illegal_message_codes_unknown_value_kept() -> None:
    assert decode_payload(0x11, b"\x04") == IllegalMessage(IllegalMessageCode.FIRMWARE_MISMATCH)
    value = decode_payload(0x11, b"\x09")
    assert value == IllegalMessage(9)
    assert isinstance(value, IllegalMessage)
    assert value.to_json() == {"code": {"value": 9, "name": None}}


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("ntp_reply_parse"))
def test_network_time_vectors(name: str, vector: dict[str, Any]) -> None:
    cmd, payload = payload_of(vector["input_hex"])
    assert cmd == 0x18
    assert vector["frame_hex"] == ""  # the 0x18 frame is itself the ACK
    value = roundtrip(cmd, payload)
    assert isinstance(value, NetworkTime)
    sdk = vector["ntp"]
    for name_ in ("year", "month", "day", "hour", "minute", "second"):
        assert getattr(value, name_) == sdk[name_]
    # §2.6: ntp is payload bytes 7..10, big-endian.
    assert value.ntp == int.from_bytes(payload[7:11], "big")
    assert json.loads(json.dumps(value.to_json()))["ntp"] == value.ntp
    ntp = int.from_bytes(payload[7:11], "big")
    expected = NetworkTime(sdk["year"], sdk["month"], sdk["day"], sdk["hour"], sdk["minute"], sdk["second"], ntp)
    common(expected, payload, 11, cmd=cmd)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("ntp_reply_parse"))
def test_sdk_ntp_bug_is_not_copied(name: str, vector: dict[str, Any]) -> None:
    # The SDK's unpacked struct builds ntp from payload bytes 8..10 plus a stale byte (vector note); ours differs.
    payload = parse_frame(bytes.fromhex(vector["input_hex"])).payload
    value = decode_payload(0x18, payload)
    assert isinstance(value, NetworkTime)
    assert value.ntp != vector["ntp"]["ntp"]
    assert vector["ntp"]["ntp"] >> 8 == int.from_bytes(payload[8:11], "big")


def test_network_time_spec_example() -> None:
    # §7 Ex 7: 2024-01-02 03:04:05, ntp 1704135845 = 0x65930ca5
    payload = bytes.fromhex("07 e8 01 02 03 04 05 65 93 0c a5")
    value = decode_payload(0x18, payload)
    assert value == NetworkTime(2024, 1, 2, 3, 4, 5, 1704135845)
    assert isinstance(value, NetworkTime)
    assert value.ntp_datetime == datetime(2024, 1, 1, 19, 4, 5, tzinfo=UTC)  # the local time is UTC+8
    assert encode_payload(0x18, value) == payload
    common(NetworkTime(2024, 1, 2, 3, 4, 5, 1704135845), payload, 11, cmd=0x18)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("heartbeat_reply", "reboot_ack"))
def test_empty_payload_vectors(name: str, vector: dict[str, Any]) -> None:
    for key in ("input_hex", "frame_hex"):
        cmd, payload = payload_of(vector[key])
        assert cmd in (0x07, 0x08, 0x0F, 0x10)
        assert payload == b""
        assert decode_payload(cmd, payload) is None
        assert encode_payload(cmd, None) == b""
        common(None, payload, 0, cmd=cmd)
        spec = spec_for(cmd)
        assert spec is not None
        assert spec.payload_types == ()


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("transparent_ack", "p0_unknown_action_ack"))
def test_p0_commands_pass_through(name: str, vector: dict[str, Any]) -> None:
    cmd, payload = payload_of(vector["input_hex"])
    assert cmd == 0x03
    assert decode_payload(cmd, payload) == payload
    if "transparent_hex" in vector:
        assert payload == b"\x05" + bytes.fromhex(vector["transparent_hex"])
    cmd, payload = payload_of(vector["frame_hex"])
    assert (cmd, payload) == (0x04, b"")
    assert decode_payload(cmd, payload) == b""


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("mcu_request"))
def test_mcu_request_vectors(name: str, vector: dict[str, Any]) -> None:
    cmd, payload = payload_of(vector["frame_hex"])
    assert cmd == vector["cmd"]
    mode = re.search(r"gizwitsSetMode\((\d)\)", vector["note"])
    if cmd == 0x05:  # P0 (pass-through up): the P0 codec's, not a declared payload
        assert decode_payload(cmd, payload) == b"\x06" + bytes.fromhex(vector["passthrough_data_hex"])
        assert encode_payload(cmd, payload) == payload
        return
    value = roundtrip(cmd, payload)
    if cmd == 0x09:
        assert mode is not None
        assert value == ConfigMode(int(mode.group(1)))
        assert isinstance(value, ConfigMode)
        assert value.mode is ConfigModeKind(int(mode.group(1)))
        common(ConfigMode(int(mode.group(1))), payload, 1, cmd=cmd)
    else:
        assert cmd in (0x0B, 0x13, 0x15, 0x17, 0x21)
        assert value is None


def test_spec_example_payloads() -> None:
    # §7 Ex 8
    assert decode_payload(0x09, b"\x02") == ConfigMode(ConfigModeKind.AIRLINK)
    assert decode_payload(0x21, b"\x00") == ModuleInfoRequest(0)
    assert decode_payload(0x12, b"\x02") == IllegalMessage(IllegalMessageCode.COMMAND)
    assert decode_payload(0x0B, b"") is None
    common(ConfigMode(ConfigModeKind.AIRLINK), b"\x02", 1, cmd=0x09)
    common(ModuleInfoRequest(0), b"\x00", 1, cmd=0x21)
    common(IllegalMessage(IllegalMessageCode.COMMAND), b"\x02", 1, cmd=0x12)
    common(None, b"", 0, cmd=0x0B)


def test_config_mode_json() -> None:
    assert ConfigMode(ConfigModeKind.SOFTAP).to_json() == {"mode": {"value": 1, "name": "SOFTAP"}}
    assert decode_payload(0x09, b"\x07") == ConfigMode(7)


def module_info_payload() -> bytes:
    """A WiFi module-info answer laid out by hand from §2.7."""
    return (
        b"\x01"
        + b"00000004"
        + b"04020006"
        + b"04020006"
        + b"AABBCCDDEEFF".ljust(16, b"\x00")
        + b"192.168.1.20".ljust(16, b"\x00")
        + bytes(7)
        + b"\x02"
    )


def test_module_info() -> None:
    payload = module_info_payload()
    assert len(payload) == 65
    value = decode_payload(0x22, payload)
    assert value == ModuleInfo(
        1, "00000004", "04020006", "04020006", "AABBCCDDEEFF", "192.168.1.20", bytes(7) + b"\x02"
    )
    assert encode_payload(0x22, value) == payload
    assert isinstance(value, ModuleInfo)
    assert value.to_json()["device_attributes"] == "0000000000000002"
    expected = ModuleInfo(1, "00000004", "04020006", "04020006", "AABBCCDDEEFF", "192.168.1.20", bytes(7) + b"\x02")
    common(expected, payload, 65, cmd=0x22)


def test_big_data_and_transaction_layouts_by_hand() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    cases: list[tuple[int, bytes, Payload]] = [
        (0x19, b"\x00\x01\x00\x00" + b"\x00\x20" + md5.encode(), BigDataOffer(65536, md5)),
        (0x1B, b"\x00\x20" + md5.encode() + b"\x01\x00", BigDataReady(md5, 256)),
        (0x1D, b"\x00\x01\x00\x03" + b"\xde\xad", BigDataPiece(1, 3, b"\xde\xad")),
        (
            0x23,
            b"\x01" + b"k" * 32 + b"RefPeerDid0123456789ab".ljust(32, b"\x00") + b"03010100" + b"03030000" + b"\x01",
            OtaCheckRequest("k" * 32, "RefPeerDid0123456789ab", "03010100", "03030000", 1),
        ),
        (0x23, b"\x03\x00\x0ehttp://x/a.bin", OtaDownloadRequest("http://x/a.bin")),
        (0x25, b"\x02\x01", OtaCheckResult(True)),
        (0x25, b"\x02\x00", OtaCheckResult(False)),
        (0x25, b"\x02" + b"03040000" + b"\x00\x0ehttp://x/a.bin", OtaUpdateInfo("03040000", "http://x/a.bin")),
        (0x25, b"\x04\x00", OtaDownloadResult(0)),
    ]
    for cmd, payload, value in cases:
        assert decode_payload(cmd, payload) == value, value
        assert encode_payload(cmd, value) == payload, value
        json.dumps(value.to_json())
        common(value, payload, spec_size(value), cmd=cmd)


# -- hostile payloads ----------------------------------------------------------------------------------------

VALID_PAYLOADS = {
    0x02: bytes.fromhex(
        "3030303030303034303030303030303230333031303130303033303330303030"
        "30313233343536373839616263646566303132333435363738396162636465660000"
        "0000000000000002"
        "6665646362613938373635343332313066656463626139383736353433323130"
    ),
    0x09: b"\x01",
    0x0D: b"\x07\x32",
    0x11: b"\x01",
    0x12: b"\x02",
    0x18: bytes.fromhex("07e8010203040565930ca5"),
    0x19: b"\x00\x00\x01\x00\x00\x02ab",
    0x1B: b"\x00\x02ab\x00\x80",
    0x1D: b"\x00\x01\x00\x01",
    0x21: b"\x00",
    0x22: module_info_payload(),
    0x23: b"\x03\x00\x01u",
    0x25: b"\x04\x01",
}


@pytest.mark.parametrize("cmd", sorted(VALID_PAYLOADS))
def test_truncated_and_oversized_payloads(cmd: int) -> None:
    payload = VALID_PAYLOADS[cmd]
    value = decode_payload(cmd, payload)
    assert encode_payload(cmd, value) == payload
    for cut in range(len(payload)):
        if cmd == 0x02 and cut == 66:
            continue  # the 2015 short form
        with pytest.raises(PayloadError) as info:
            decode_payload(cmd, payload[:cut])
        assert info.value.path
        assert info.value.data == payload[:cut]
    if cmd != 0x1D:  # a big-data piece may carry any number of data bytes after its 4-byte header
        with pytest.raises(PayloadError):
            decode_payload(cmd, payload + b"\x00")


@pytest.mark.parametrize("cmd", [c for c, spec in COMMAND_SPECS.items() if not spec.p0 and not spec.payload_types])
def test_empty_commands_reject_a_payload(cmd: int) -> None:
    with pytest.raises(PayloadError) as info:
        decode_payload(cmd, b"\x00")
    assert "empty" in str(info.value)
    assert "00" in str(info.value)
    with pytest.raises(PayloadError):
        encode_payload(cmd, b"\x00")


def test_non_ascii_text_is_a_payload_error_with_a_path() -> None:
    payload = bytearray(VALID_PAYLOADS[0x02])
    payload[40] = 0xFF  # inside the product key
    with pytest.raises(PayloadError) as info:
        decode_payload(0x02, bytes(payload))
    assert info.value.path == "device_info/product_key"
    assert "ff" in str(info.value)


def test_nul_inside_text_is_rejected() -> None:
    payload = bytearray(VALID_PAYLOADS[0x02])
    payload[35] = 0x00  # inside the product key, not trailing
    with pytest.raises(PayloadError) as info:
        decode_payload(0x02, bytes(payload))
    assert info.value.path == "device_info/product_key"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (b"\x00\x00\x01\x00\x00\x05ab", "big_data_offer/md5"),  # md5 length beyond the payload
        (b"\x09", "transaction_request"),
        (b"", "transaction_request"),
    ],
)
def test_malformed_variable_payloads(payload: bytes, path: str) -> None:
    cmd = 0x19 if path.startswith("big_data") else 0x23
    with pytest.raises(PayloadError) as info:
        decode_payload(cmd, payload)
    assert info.value.path == path


def test_transaction_result_unknown_type() -> None:
    with pytest.raises(PayloadError) as info:
        decode_payload(0x25, b"\x07\x00")
    assert info.value.path == "transaction_result"


GOOD_TIME = NetworkTime(2024, 1, 2, 3, 4, 5, 1704135845)
GOOD_INFO = DeviceInfo("00000004", "00000002", "03010100", "03030000", "a" * 32, 0, bytes(8), "b" * 32)


@pytest.mark.parametrize(
    ("cmd", "value", "path"),
    [
        (0x0D, WifiStatus(rssi=8), "wifi_status/rssi"),
        (0x0D, WifiStatus(reserved=0x0001), "wifi_status/reserved"),
        (0x0D, WifiStatus(softap=1), "wifi_status/softap"),  # type: ignore[arg-type]
        (0x18, replace(GOOD_TIME, year=70000), "network_time/year"),
        (0x18, replace(GOOD_TIME, ntp=-1), "network_time/ntp"),
        (0x18, replace(GOOD_TIME, month="1"), "network_time/month"),  # type: ignore[arg-type]
        (0x02, replace(GOOD_INFO, product_key="a" * 33), "device_info/product_key"),
        (0x02, replace(GOOD_INFO, product_key="ключ"), "device_info/product_key"),
        (0x02, replace(GOOD_INFO, hardware_version="0301\x000"), "device_info/hardware_version"),
        (0x02, replace(GOOD_INFO, device_attributes=bytes(7)), "device_info/device_attributes"),
        (0x02, replace(GOOD_INFO, product_secret=None), "device_info"),
        (0x02, replace(GOOD_INFO, binding_timeout_s=65536), "device_info/binding_timeout_s"),
        (0x09, ConfigMode(256), "config_mode/mode"),
        (0x09, GOOD_TIME, "config_mode"),
        (0x09, b"\x01", "config_mode"),
        (0x07, GOOD_TIME, "heartbeat"),
        (0x1D, BigDataPiece(0, 70000, b""), "big_data_piece/count"),
        (0x1D, BigDataPiece(0, 1, "ab"), "big_data_piece/data"),  # type: ignore[arg-type]
        (0x25, OtaCheckResult(1), "ota_check_result/update_needed"),  # type: ignore[arg-type]
        (0x23, OtaDownloadRequest("http://é"), "ota_download_request/url"),
        (0x100, None, "cmd"),
        (0x03, GOOD_TIME, "cmd_03"),
    ],
)
def test_encode_rejects_bad_values(cmd: int, value: Any, path: str) -> None:
    with pytest.raises(PayloadError) as info:
        encode_payload(cmd, value)
    assert info.value.path == path


def test_wifi_from_word_range() -> None:
    with pytest.raises(PayloadError):
        WifiStatus.from_word(0x10000)


@settings(max_examples=300)
@given(st.sampled_from(sorted({*COMMAND_SPECS, 0x40})), st.binary(max_size=120))
def test_random_payloads_decode_or_raise_payload_error(cmd: int, payload: bytes) -> None:
    try:
        value = decode_payload(cmd, payload)
    except CodecError as exc:
        assert isinstance(exc, PayloadError)
        assert exc.data == payload
        return
    if cmd == 0x25 and isinstance(value, OtaCheckResult):
        assert encode_payload(cmd, value)[1] == int(payload[1] != 0)  # any non-zero byte means "update needed"
    else:
        assert encode_payload(cmd, value) == payload


# -- round trips of every payload dataclass ------------------------------------------------------------------


def text(size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=size)


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)

PAYLOAD_STRATEGIES: dict[int, st.SearchStrategy[Any]] = {
    0x02: st.builds(
        DeviceInfo, text(8), text(8), text(8), text(8), text(32), u16, st.binary(min_size=8, max_size=8), text(32)
    )
    | st.builds(DeviceInfo, text(8), text(8), text(8), text(8), text(32), u16),
    0x0D: st.builds(
        WifiStatus,
        *[st.booleans()] * 6,
        st.integers(0, 7),
        st.booleans(),
        st.booleans(),
        st.sampled_from([0, 0x0040, 0x0080, 0x2000, 0x8000, 0xE0C0]),
    ),
    0x09: st.builds(ConfigMode, u8),
    0x11: st.builds(IllegalMessage, u8),
    0x18: st.builds(NetworkTime, u16, u8, u8, u8, u8, u8, u32),
    0x21: st.builds(ModuleInfoRequest, u8),
    0x22: st.builds(ModuleInfo, u8, text(8), text(8), text(8), text(16), text(16), st.binary(min_size=8, max_size=8)),
    0x19: st.builds(BigDataOffer, u32, text(40)),
    0x1B: st.builds(BigDataReady, text(40), u16),
    0x1D: st.builds(BigDataPiece, u16, u16, st.binary(max_size=64)),
    0x23: st.builds(OtaCheckRequest, text(32), text(32), text(8), text(8), u8)
    | st.builds(OtaDownloadRequest, text(80)),
    0x25: st.builds(OtaCheckResult, st.booleans())
    | st.builds(OtaUpdateInfo, text(8), text(80))
    | st.builds(OtaDownloadResult, u8),
}


def test_every_payload_type_has_a_strategy() -> None:
    declared = {t for spec in COMMAND_SPECS.values() for t in spec.payload_types}
    assert len(declared) == 15
    with_payload = {code for code, spec in COMMAND_SPECS.items() if spec.payload_types}
    assert with_payload - set(PAYLOAD_STRATEGIES) == {0x12}  # same IllegalMessage layout as 0x11
    assert spec_for(0x12).payload_types == (IllegalMessage,)  # type: ignore[union-attr]


@settings(max_examples=40)
@given(st.data())
@pytest.mark.parametrize("cmd", sorted(PAYLOAD_STRATEGIES))
def test_payload_round_trip(cmd: int, data: st.DataObject) -> None:
    value = data.draw(PAYLOAD_STRATEGIES[cmd])
    payload = encode_payload(cmd, value)
    assert decode_payload(cmd, payload) == value
    common(value, payload, spec_size(value), cmd=cmd)
    sn = data.draw(u8)
    frame = parse_frame(encode_frame(cmd, sn, payload))
    assert (frame.cmd, frame.sn) == (cmd, sn)
    assert decode_payload(frame.cmd, frame.payload) == value
    as_json = json.loads(json.dumps(value.to_json()))
    for f in fields(value):
        assert f.name in as_json


@settings(max_examples=200)
@given(u16)
def test_every_status_word_round_trips(word: int) -> None:
    status = WifiStatus.from_word(word)
    check_wifi_word(status, word)
    assert status.reserved == word & 0xE0C0
