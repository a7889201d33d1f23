"""LAN payload layouts against the bytes GAgent 04020006 put on the wire, and hostile bodies."""

from __future__ import annotations

import pytest

from gizdev.codec.lan import (
    DiscoveryInfo,
    ModuleInfoReply,
    Passcode,
    build_discovery,
    build_module_info,
    build_passcode,
    parse_discovery,
    parse_module_info,
    parse_passcode,
)
from gizdev.errors import PayloadError
from tests.codec.common import common

DID = "RefPeerDid0123456789ab"  # gagent-wire-observations: the values of the observed run
PK = "0123456789abcdef0123456789abcdef"
MAC = bytes.fromhex("aabbccddeeff")
MCU_ATTR = bytes.fromhex("0000000000000002")
# §4: the 0x0004 body after "000000034f000004"
OBSERVED_DISCOVERY_BODY = (
    bytes.fromhex("0016") + DID.encode() + bytes.fromhex("0006aabbccddeeff") + bytes.fromhex("0000")
    + bytes.fromhex("0020") + PK.encode() + MCU_ATTR
)  # fmt: skip


def test_discovery_body_matches_the_observation() -> None:
    info = DiscoveryInfo(did=DID, mac=MAC, firmware_version="", product_key=PK, mcu_attributes=MCU_ATTR)
    body = build_discovery(info)
    assert body == OBSERVED_DISCOVERY_BODY
    assert 3 + len(body) == 0x4F  # the observed envelope length
    assert parse_discovery(body) == info
    common(info, body, None)


def test_discovery_tail_is_two_nul_terminated_strings() -> None:
    info = DiscoveryInfo(DID, MAC, "", PK, MCU_ATTR, api_server="api.gizwits.com:80", gagent_version="4.0.8")
    body = build_discovery(info)
    assert body == OBSERVED_DISCOVERY_BODY + b"api.gizwits.com:80\x004.0.8\x00"
    assert parse_discovery(body) == info
    common(info, body, None)


def test_discovery_without_did_yet() -> None:
    # §4: before a DID exists, did len is 0 and the envelope length is 0x39
    body = build_discovery(DiscoveryInfo("", MAC, "", PK, MCU_ATTR))
    assert body[:2] == b"\x00\x00"
    assert 3 + len(body) == 0x39
    common(DiscoveryInfo("", MAC, "", PK, MCU_ATTR), body, None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        bytes.fromhex("0016") + b"short",  # did length beyond the body
        OBSERVED_DISCOVERY_BODY[:-3],  # mcu attributes cut off
        bytes.fromhex("ffff"),
        bytes.fromhex("0002ffff0006aabbccddeeff00000020") + PK.encode() + MCU_ATTR,  # non-ASCII did
    ],
)
def test_malformed_discovery_bodies_raise(body: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_discovery(body)


@pytest.mark.parametrize(
    "info",
    [
        DiscoveryInfo(DID, b"\x01\x02", "", PK, MCU_ATTR),
        DiscoveryInfo(DID, MAC, "", PK, b"\x00"),
        DiscoveryInfo("dïd", MAC, "", PK, MCU_ATTR),
        DiscoveryInfo(DID, MAC, "", PK, MCU_ATTR, api_server="a\0b"),
    ],
)
def test_bad_identity_is_refused(info: DiscoveryInfo) -> None:
    with pytest.raises(PayloadError):
        build_discovery(info)


def test_passcode_body() -> None:
    # §4: reply "000000030f000007000a" + passcode
    assert build_passcode("HKIPANQEYX") == bytes.fromhex("000a") + b"HKIPANQEYX"
    assert build_passcode("") == b"\x00\x00"
    assert parse_passcode(bytes.fromhex("000a") + b"HKIPANQEYX") == b"HKIPANQEYX"
    common(Passcode("HKIPANQEYX"), bytes.fromhex("000a") + b"HKIPANQEYX", None)
    common(Passcode(""), b"\x00\x00", None)
    for bad in (b"", b"\x00", bytes.fromhex("000b") + b"HKIPANQEYX", bytes.fromhex("0009") + b"HKIPANQEYX"):
        with pytest.raises(PayloadError):
            parse_passcode(bad)


def test_module_info_layout() -> None:
    info = ModuleInfoReply(
        wifi_hardware_version="GIZDEV01",
        wifi_software_version="04020006",
        mcu_hardware_version="03010100",
        mcu_software_version="0303",
        p0_version="00000002",
        firmware_version="1.0",
        product_key=PK,
    )
    body = build_module_info(info)
    expected = (
        b"GIZDEV01" + b"04020006" + b"03010100" + b"0303\0\0\0\0" + b"00000002" + bytes(8)
        + b"\x00\x031.0" + b"\x00\x20" + PK.encode()
    )  # fmt: skip
    assert body == expected
    assert parse_module_info(body) == info
    common(info, expected, None)
    with pytest.raises(PayloadError):
        parse_module_info(body[:40])
    with pytest.raises(PayloadError):
        build_module_info(ModuleInfoReply("TOO-LONG-9", "", "", "", "", "", PK))


def test_discovery_tail_is_read_leniently() -> None:
    # Text beyond the two strings is ignored; a string cut off before its NUL reads as ''.
    info = DiscoveryInfo(DID, MAC, "", PK, MCU_ATTR, api_server="a", gagent_version="g")
    assert parse_discovery(OBSERVED_DISCOVERY_BODY + b"a\x00g\x00more") == info
    assert parse_discovery(OBSERVED_DISCOVERY_BODY + b"a\x00cut") == DiscoveryInfo(DID, MAC, "", PK, MCU_ATTR, "a")
    assert parse_discovery(OBSERVED_DISCOVERY_BODY + b"cut") == DiscoveryInfo(DID, MAC, "", PK, MCU_ATTR)
    # One string set: the tail is written whole.
    only_version = DiscoveryInfo(DID, MAC, "", PK, MCU_ATTR, gagent_version="4.0.8")
    assert build_discovery(only_version) == OBSERVED_DISCOVERY_BODY + b"\x004.0.8\x00"
    common(only_version, OBSERVED_DISCOVERY_BODY + b"\x004.0.8\x00", None)


def test_malformed_bodies_name_the_field_and_carry_the_bytes() -> None:
    body = bytes.fromhex("0002ffff0006aabbccddeeff00000020") + PK.encode() + MCU_ATTR
    with pytest.raises(PayloadError) as caught:
        parse_discovery(body)
    assert caught.value.path == "discovery/did"
    assert caught.value.data == body
    assert "ffff" in str(caught.value)
    with pytest.raises(PayloadError) as caught:
        build_discovery(DiscoveryInfo(DID, b"\x01\x02", "", PK, MCU_ATTR))
    assert caught.value.path == "discovery/mac"
    assert caught.value.data == b"\x01\x02"


def test_module_info_text_is_nul_free_and_trailing_bytes_are_ignored() -> None:
    info = ModuleInfoReply("GIZDEV01", "04020006", "03010100", "0303", "00000002", "1.0", PK)
    body = build_module_info(info)
    assert parse_module_info(body + b"zz") == info
    inner_nul = b"GI\x00DEV01" + body[8:]  # a NUL inside a version field, not padding
    with pytest.raises(PayloadError) as caught:
        parse_module_info(inner_nul)
    assert caught.value.path == "module_info/wifi_hardware_version"
    assert caught.value.data == inner_nul


def test_lan_payloads_as_json() -> None:
    info = DiscoveryInfo(DID, MAC, "", PK, MCU_ATTR, api_server="api.gizwits.com:80")
    assert info.to_json() == {
        "did": DID,
        "mac": "aabbccddeeff",
        "firmware_version": "",
        "product_key": PK,
        "mcu_attributes": "0000000000000002",
        "api_server": "api.gizwits.com:80",
        "gagent_version": "",
    }
