"""MQTT packet encoding (3.1.1 §2-§3; 3.1 differs only in the protocol name ``MQIsdp`` and level 3): the one place
that knows how a packet, and a CONNECT in particular, is laid out.

    fixed header: type << 4 | flags, remaining length (1-4 bytes, 7 bits each, LSB group first)
    CONNECT:      protocol name, level, connect flags, keepalive (s) | client id [, user name [, password]]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONNACK",
    "CONNECT",
    "DISCONNECT",
    "MQTT_31",
    "MQTT_311",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "PUBLISH",
    "RETAIN",
    "SUBACK",
    "SUBSCRIBE",
    "Will",
    "connect_packet",
    "encode_remaining_length",
    "encode_string",
    "packet",
]

MQTT_31 = 3  # "MQIsdp", what GAgent sends
MQTT_311 = 4  # "MQTT"
_PROTOCOL_NAMES = {MQTT_31: "MQIsdp", MQTT_311: "MQTT"}

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

_CLEAN_SESSION = 0x02
_WILL = 0x04
_WILL_RETAIN = 0x20
_PASSWORD = 0x40
_USERNAME = 0x80
RETAIN = 0x01  # PUBLISH fixed-header flag (§3.3.1.3)


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us when the connection ends without a DISCONNECT (§3.1.2.5)."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 0

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise ValueError(f"will QoS is 0 or 1, not {self.qos}")


def encode_remaining_length(length: int) -> bytes:
    """The fixed header's remaining length: 7 bits per byte, least significant group first (§2.2.3)."""
    if not 0 <= length < 1 << 28:
        raise ValueError(f"MQTT packet of {length} bytes is too large")
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def encode_string(text: str) -> bytes:
    """A UTF-8 string with its 2-byte length (§1.5.3)."""
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("MQTT string longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def packet(kind: int, body: bytes, flags: int = 0) -> bytes:
    """A whole packet: fixed header and ``body`` (variable header and payload)."""
    return bytes([kind << 4 | flags]) + encode_remaining_length(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive_s: int = 60,
    protocol: int = MQTT_311,
    will: Will | None = None,
) -> bytes:
    """CONNECT with a clean session and an optional will; a password is sent only with a user name (§3.1.2.9)."""
    if protocol not in _PROTOCOL_NAMES:
        raise ValueError(f"unsupported MQTT protocol level {protocol}")
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive must be within 0..65535 s")
    flags = _CLEAN_SESSION
    payload = encode_string(client_id)
    if will is not None:
        flags |= _WILL | will.qos << 3 | (_WILL_RETAIN if will.retain else 0)
        if len(will.payload) > 0xFFFF:
            raise ValueError("a will message is at most 65535 bytes")
        payload += encode_string(will.topic) + len(will.payload).to_bytes(2, "big") + will.payload
    if username is not None:
        flags |= _USERNAME
        payload += encode_string(username)
        if password is not None:
            flags |= _PASSWORD
            payload += encode_string(password)
    variable = encode_string(_PROTOCOL_NAMES[protocol]) + bytes([protocol, flags]) + keepalive_s.to_bytes(2, "big")
    return packet(CONNECT, variable + payload)
