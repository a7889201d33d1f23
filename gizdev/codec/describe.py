"""JSON-ready descriptions of frames and P0 messages, shared by ``gizdev decode`` and the sniffer."""

from __future__ import annotations

from typing import Any

from gizdev.codec.commands import Command, decode_payload
from gizdev.codec.frame import Frame
from gizdev.codec.p0 import Action, P0Message, Product

__all__ = ["P0_COMMANDS", "describe_frame", "describe_p0", "p0_of"]

#: Commands whose payload is a P0 body: control/read/pass-through to the MCU, its read reply, its reports.
P0_COMMANDS = frozenset({Command.P0_DOWN, Command.P0_UP})


def p0_of(frame: Frame) -> bytes | None:
    """The P0 body a frame carries, or None (0x04 carries one only when it is a read reply)."""
    if frame.cmd in P0_COMMANDS or (frame.cmd == Command.P0_DOWN_ACK and frame.payload):
        return frame.payload
    return None


def describe_p0(message: P0Message, product: Product) -> dict[str, Any]:
    """The fields of a decoded P0 message; enums as labels, binary as hex."""
    out: dict[str, Any] = {"action": int(message.action), "action_name": message.action.name.lower()}
    if message.action in (Action.TRANSPARENT_DOWN, Action.TRANSPARENT_UP):
        out["data"] = message.data.hex()
        return out
    if message.flags is not None:
        out["p0_flags"] = message.flags
    if message.action is Action.VAR_READ:
        out["requested"] = list(message.requested)
    if message.action not in (Action.READ, Action.VAR_READ):
        out["attrs"] = product.attrs_to_json(message.attrs)
    if message.anomalies:
        out["anomalies"] = [{"name": a.name, "reason": a.reason} for a in message.anomalies]
    return out


def describe_frame(frame: Frame, product: Product | None = None) -> dict[str, Any]:
    """cmd, cmd_name, sn, flags and the decoded payload of one serial frame.

    P0 bodies are decoded with ``product`` (without one, their hex is given); a P0 body that does not decode
    raises PayloadError, as does a malformed payload of another command.
    """
    try:
        name = Command(frame.cmd).name.lower()
    except ValueError:
        name = "unknown"
    out: dict[str, Any] = {"cmd": frame.cmd, "cmd_name": name, "sn": frame.sn, "flags": frame.flags}
    p0 = p0_of(frame)
    if p0 is not None:
        if product is None:
            out["p0"] = p0.hex()
        else:
            out.update(describe_p0(product.decode(p0), product))
        return out
    if name == "unknown":
        if frame.payload:
            out["payload"] = frame.payload.hex()
        return out
    value = decode_payload(frame.cmd, frame.payload)
    if isinstance(value, bytes):
        # The P0 ACKs (0x06, and 0x04 without a read reply) have no body of their own: normally empty.
        if value:
            out["payload"] = value.hex()
        return out
    if value is not None:
        out.update(value.to_json())
    return out
