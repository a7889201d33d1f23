"""``gizdev probe``: ask an MCU (a board, or a sim) who it is and what its datapoints hold, as a module would."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from gizdev.cli import options
from gizdev.codec.commands import DeviceInfo
from gizdev.codec.p0 import Product, load_product
from gizdev.codec.values import Value
from gizdev.errors import AckTimeout, LinkError
from gizdev.link.module import HANDSHAKE_ATTEMPTS, ModuleSession
from gizdev.link.protocol import ACK_TIMEOUT_S, SerialLink
from gizdev.schema.model import AttrType
from gizdev.transport import open_port

_LOGGER = logging.getLogger(__name__)

#: How long a closing port may take to flush before it is cut (an MCU that stopped reading never lets it finish).
CLOSE_GRACE_S = 1.0
FRAME_OVERHEAD_BYTES = 9  # serial protocol §1.1: FF FF, len (2), cmd, sn, flags (2), checksum
DEVICE_INFO_PAYLOAD_BYTES = 106  # serial protocol §2.1
#: Room for the MCU to start answering, on top of the time its answer takes on the wire.
REPLY_START_S = 0.05

PROBE_HELP = """\
Open a port as the WiFi module would, ask the MCU for its device info (up to --attempts times, each request sent
3 times 200 ms apart, as GAgent does at boot), check its product key against the schema, read its status, and
print both. The port is a serial device (/dev/ttyUSB0, /dev/serial0), a pty path (as printed by gizdev sim) or
socket://HOST:PORT (ser2net, gizdev sim --listen).

Exits 1 with a one-line message when the port cannot be opened, nothing answers, or the product key differs.

examples:
  gizdev probe --port /dev/ttyUSB0 --product protocols/gokit.json
  gizdev probe --port socket://127.0.0.1:4000 --product protocols/gokit.json --json
"""


def register(commands: Any) -> None:
    probe = commands.add_parser(
        "probe",
        help="ask an MCU for its device info and status",
        description=PROBE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.add_argument(
        "--port", required=True, help="serial device, pty path or socket://HOST:PORT where the MCU answers"
    )
    probe.add_argument(
        "--product", metavar="FILE", required=True, help="product schema the MCU should implement (its datapoints)"
    )
    probe.add_argument(
        "--baud",
        type=options.positive_int,
        default=9600,
        help="line speed of a serial port (default 9600, the protocol's); also sets how long a long answer may "
        "take to arrive",
    )
    probe.add_argument(
        "--attempts",
        type=options.positive_int,
        default=HANDSHAKE_ATTEMPTS,
        help=f"device info requests before giving up (default {HANDSHAKE_ATTEMPTS}, as GAgent at boot)",
    )
    probe.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    probe.set_defaults(run=run_probe)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    port: str
    device_info: DeviceInfo
    status: dict[str, Value]


def run_probe(args: argparse.Namespace) -> int:
    product = load_product(args.product)
    result = asyncio.run(probe(args.port, product, baudrate=args.baud, attempts=args.attempts))
    if args.json:
        print(
            json.dumps(
                {
                    "port": result.port,
                    "device_info": result.device_info.to_json(),
                    "status": product.attrs_to_json(result.status),
                },
                ensure_ascii=False,
            )
        )
    else:
        print(summary(result, product))
    return 0


def reply_timeout(payload_bytes: int, baudrate: int) -> float:
    """The spec's ACK timeout, or longer when an answer of that size cannot even cross the wire within it."""
    wire_s = (FRAME_OVERHEAD_BYTES + payload_bytes) * 10 / baudrate
    return max(ACK_TIMEOUT_S, wire_s + REPLY_START_S)


def status_payload_bytes(product: Product) -> int:
    """Size of a read reply carrying every datapoint (action byte included), not counting 0xFF stuffing."""
    if product.fixed is not None:
        return 1 + product.fixed.layout.status_len
    assert product.varlen is not None
    points = [codec.datapoint for codec in product.codecs.values()]
    bits = sum(dp.bit_len for dp in points if dp.is_bits)
    return 1 + product.varlen.flags_len + (bits + 7) // 8 + sum(dp.byte_len for dp in points if not dp.is_bits)


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
        await _closed(link, transport)
    return ProbeResult(port, info, status)


async def _closed(link: SerialLink, transport: asyncio.Transport) -> None:
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await link.wait_closed()
    except TimeoutError:
        transport.abort()
        await link.wait_closed()


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
