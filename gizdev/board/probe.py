"""Ask an MCU (a board, or a sim) who it is and what its datapoints hold, as the WiFi module does at boot."""

from __future__ import annotations

from dataclasses import dataclass

from gizdev.board.line import DEVICE_INFO_PAYLOAD_BYTES, FRAME_OVERHEAD_BYTES, status_payload_bytes, wire_s
from gizdev.codec.commands import DeviceInfo
from gizdev.codec.p0 import Product
from gizdev.codec.values import Value
from gizdev.errors import AckTimeout, LinkError
from gizdev.link.module import HANDSHAKE_ATTEMPTS, ModuleSession
from gizdev.link.protocol import ACK_TIMEOUT_S
from gizdev.schema.model import AttrType
from gizdev.transport import open_port
from gizdev.transport.closing import close_within

__all__ = ["ProbeResult", "probe", "reply_timeout", "summary"]

#: How long a closing port may take to flush before it is cut (an MCU that stopped reading never lets it finish).
#: Room for the MCU to start answering, on top of the time its answer takes on the wire.
REPLY_START_S = 0.05


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Who the MCU on ``port`` said it is, and its whole status."""

    port: str
    device_info: DeviceInfo
    status: dict[str, Value]


def reply_timeout(payload_bytes: int, baudrate: int) -> float:
    """The spec's ACK timeout, or longer when an answer of that size cannot even cross the wire within it."""
    return max(ACK_TIMEOUT_S, wire_s(FRAME_OVERHEAD_BYTES + payload_bytes, baudrate) + REPLY_START_S)


async def probe(
    port: str, product: Product, *, baudrate: int = 9600, attempts: int = HANDSHAKE_ATTEMPTS
) -> ProbeResult:
    """Handshake with the MCU on ``port`` and read its status; LinkError says plainly what went wrong."""
    session = ModuleSession(product, name=port)
    transport, link = await open_port(port, session.protocol_factory, baudrate=baudrate)
    try:
        link.ack_timeout = reply_timeout(DEVICE_INFO_PAYLOAD_BYTES, baudrate)
        try:
            info = await session.handshake(attempts)
        except AckTimeout as exc:
            raise LinkError(
                f"no answer from {port}: device info request (0x01) not acknowledged after {attempts} attempts "
                f"of {exc.attempts} transmissions {exc.timeout_s * 1000:.0f} ms apart "
                "(is the MCU powered, on this port, at this baud rate?)"
            ) from exc
        link.ack_timeout = reply_timeout(status_payload_bytes(product), baudrate)
        try:
            status = await session.read()
        except AckTimeout as exc:
            raise LinkError(
                f"no answer from {port}: the MCU gave its device info but did not answer the status read "
                f"(0x03, action 0x02) after {exc.attempts} transmissions {exc.timeout_s * 1000:.0f} ms apart"
            ) from exc
    finally:
        await session.close()
        await close_within(link, transport)
    return ProbeResult(port, info, status)


_KINDS = {
    AttrType.WRITABLE: "writable",
    AttrType.READONLY: "read-only",
    AttrType.ALERT: "alert",
    AttrType.FAULT: "fault",
}


def _show(value: Value) -> str:
    if isinstance(value, bytes):
        return value.hex() or "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def summary(result: ProbeResult, product: Product) -> str:
    """The probe result for people: who the MCU is, then every datapoint with its value."""
    info = result.device_info
    binding = "always bindable (0)" if info.binding_timeout_s == 0 else f"{info.binding_timeout_s} s after onboarding"
    if info.device_attributes is None:
        gateway = "unknown (the MCU sends the 2015 device info, without attributes)"
    else:
        gateway = "yes" if info.is_gateway else "no"
    lines = [
        f"port              {result.port}",
        f"protocol version  {info.protocol_version}",
        f"P0 version        {info.p0_version}",
        f"hardware version  {info.hardware_version}",
        f"software version  {info.software_version}",
        f"product key       {info.product_key} ({product.name})",
        f"binding timeout   {binding}",
        f"gateway           {gateway}",
        f"datapoints        {len(result.status)}",
    ]
    shown = {name: _show(value) for name, value in result.status.items()}
    name_width = max((len(name) for name in shown), default=0)
    value_width = max((len(text) for text in shown.values()), default=0)
    for name, text in shown.items():
        codec = product.codecs.get(name)
        kind = _KINDS.get(codec.datapoint.type, "") if codec is not None else "not in the schema"
        lines.append(f"  {name:<{name_width}}  {text:<{value_width}}  {kind}".rstrip())
    return "\n".join(lines)
