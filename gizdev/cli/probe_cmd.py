"""``gizdev probe``: ask an MCU (a board, or a sim) who it is and what its datapoints hold, as a module would."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from gizdev.board.probe import probe, summary
from gizdev.cli import options
from gizdev.codec.p0 import load_product
from gizdev.link.module import HANDSHAKE_ATTEMPTS

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
    parser = commands.add_parser(
        "probe",
        help="ask an MCU for its device info and status",
        description=PROBE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_port_option(parser, help="serial device, pty path or socket://HOST:PORT where the MCU answers")
    options.add_product_option(parser, required=True, help="product schema the MCU should implement (its datapoints)")
    options.add_baud_option(
        parser,
        help="line speed of a serial port (default 9600, the protocol's); also sets how long a long answer may "
        "take to arrive",
    )
    parser.add_argument(
        "--attempts",
        type=options.positive_int,
        default=HANDSHAKE_ATTEMPTS,
        help=f"device info requests before giving up (default {HANDSHAKE_ATTEMPTS}, as GAgent at boot)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.set_defaults(run=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    product = load_product(args.product)
    result = asyncio.run(probe(args.port, product, baudrate=args.baud, attempts=args.attempts))
    if args.json:
        report = {
            "port": result.port,
            "device_info": result.device_info.to_json(),
            "status": product.attrs_to_json(result.status),
        }
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(summary(result, product))
    return 0
