"""MQTT packet encoding: the CONNECT that the client and the broker's readiness probe both send."""

from __future__ import annotations

import pytest

from gizdev.mqtt.packets import MQTT_31, connect_packet, packet


def test_connect_without_credentials() -> None:
    # MQTT 3.1.1 §3.1: 10 | remaining 24 | 00 04 "MQTT" | level 4 | flags 02 (clean session) | keepalive 10 |
    # client id "gizdev-probe" (the probe mosquitto.py sends).
    wire = bytes.fromhex("101800044d5154540402000a000c") + b"gizdev-probe"
    assert connect_packet("gizdev-probe", keepalive_s=10) == wire


def test_connect_as_gagent_with_user_and_password() -> None:
    # MQTT 3.1: "MQIsdp" level 3; flags c2 = user name + password + clean session; keepalive 120 s.
    wire = connect_packet("dev1", username="dev1", password="pw", keepalive_s=120, protocol=MQTT_31)
    body = bytes.fromhex("00064d514973647003c20078") + b"\x00\x04dev1" + b"\x00\x04dev1" + b"\x00\x02pw"
    assert wire == bytes([0x10, len(body)]) + body


def test_a_password_goes_only_with_a_user_name() -> None:
    assert connect_packet("c", password="pw") == connect_packet("c")
    assert connect_packet("c", username="u")[9] == 0x82  # the flags byte: user name, clean session


def test_long_packets_use_a_multi_byte_remaining_length() -> None:
    wire = packet(3, b"x" * 200)
    assert wire[:3] == bytes.fromhex("30c801") and len(wire) == 203


def test_connect_refuses_what_the_client_cannot_speak() -> None:
    with pytest.raises(ValueError, match="protocol level 5"):
        connect_packet("c", protocol=5)
    with pytest.raises(ValueError, match="keepalive"):
        connect_packet("c", keepalive_s=70000)
