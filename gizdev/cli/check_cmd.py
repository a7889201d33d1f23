"""``gizdev check-board``: run the serial-protocol conformance checks against an MCU (a board, or a sim)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gizdev.board.check import CHECKS, Status, check_board, render_table, report_json, select_checks
from gizdev.cli import options
from gizdev.codec.p0 import load_product
from gizdev.errors import ConfigError

CHECK_HELP = """\
Open a port as the WiFi module would and check that the MCU behind it speaks the Gizwits serial protocol
(protocol 00000004, as MCU SDK V03030000 does): device info, heartbeats, ACK times and sn echo, reads, a write
of every writable datapoint at its edge values with the report that must follow, illegal-message notices, the
resend of an unacknowledged report, 0xFF stuffing and report rates. The port is a serial device, a pty path (as
printed by gizdev sim) or socket://HOST:PORT.

Prints one line per check (PASS, FAIL, WARN or SKIP), then for every failure what was sent and received, as hex
and decoded. WARN marks behaviour the spec leaves open (or where sources disagree): it does not fail the run.
Exits 1 when a check fails. Writes change the board's datapoints; each is set back to the value it had.

checks:
{checks}

examples:
  gizdev check-board --port /dev/ttyUSB0 --product protocols/gokit.json
  gizdev check-board --port /dev/pts/5 --product protocols/gokit.json --quick --json report.json
  gizdev check-board --port socket://127.0.0.1:4000 --product fan.json --only resend --only stuffing
"""


DEFAULT_OBSERVE_S = 2.0


def register(commands: Any) -> None:
    listing = "\n".join(f"  {check.name:<17} {check.title}" for check in CHECKS)
    parser = commands.add_parser(
        "check-board",
        help="serial-protocol conformance checks against an MCU",
        description=CHECK_HELP.format(checks=listing),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_port_option(parser, help="serial device, pty path or socket://HOST:PORT where the MCU answers")
    options.add_product_option(parser, required=True, help="product schema the MCU should implement (its datapoints)")
    options.add_baud_option(
        parser,
        help="line speed of a serial port (default 9600, the protocol's); answer deadlines include the time "
        "frames take on the line at this speed",
    )
    parser.add_argument(
        "--json",
        metavar="REPORT",
        dest="json_report",
        help="also write a machine-readable report to this file ('-' for stdout, instead of the table)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="write one changed value per writable datapoint (and back) instead of every edge value",
    )
    parser.add_argument(
        "--observe",
        metavar="SECONDS",
        type=options.seconds,
        default=DEFAULT_OBSERVE_S,
        help=f"listen this long after the probes, before judging report rates (default {DEFAULT_OBSERVE_S:g}; "
        "a board with sensors shows its own reports meanwhile)",
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        default=[],
        help="run only this check (repeat for more); the names are listed above",
    )
    parser.set_defaults(run=run_check)


def _progress(index: int, total: int, name: str) -> None:
    print(f"check {index}/{total} {name}", file=sys.stderr, flush=True)


def run_check(args: argparse.Namespace) -> int:
    product = load_product(args.product)
    select_checks(args.only)  # an unknown name is refused before the port is opened
    results, elapsed = asyncio.run(
        check_board(
            args.port,
            product,
            baud=args.baud,
            quick=args.quick,
            only=args.only,
            observe_s=args.observe,
            progress=_progress,
        )
    )
    report = report_json(results, port=args.port, product=product, elapsed_s=elapsed)
    if args.json_report == "-":
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(render_table(results))
        print(f"\n{args.port}: {len(results)} checks in {elapsed:.1f} s")
        if args.json_report:
            try:
                Path(args.json_report).write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
            except OSError as exc:
                raise ConfigError(f"cannot write the report {args.json_report}: {exc.strerror}") from exc
    return 1 if any(r.status is Status.FAIL for r in results) else 0
