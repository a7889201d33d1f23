"""``gizdev sim``: a virtual MCU for any product, on a pty or a TCP port, driven from stdin or a JSON control API."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import urllib.parse
from typing import Any

from gizdev.cli import options
from gizdev.codec.p0 import Product, load_product
from gizdev.errors import ConfigError, GizdevError
from gizdev.sim.control import fault_plan, text_value
from gizdev.sim.mcu import PERIODIC_INTERVAL_S, READONLY_MIN_INTERVAL_S
from gizdev.sim.serve import Address, SimConfig, serve_sim

_LOGGER = logging.getLogger(__name__)

SIM_HELP = """\
Run a virtual MCU board for a product schema: it answers the module's requests, applies writes and reports its
state with the vendor SDK's rules (at once for writable, bool and enum points; read-only numbers at most every
--readonly-interval seconds; everything every --periodic seconds).

The first line on stdout is a JSON object telling another program where to find the sim:
  {"pty": "/dev/pts/N", "control": "127.0.0.1:PORT"}          (--pty, the default)
  {"listen": "socket://127.0.0.1:PORT", "control": ...}       (--listen)
("control" is null with --control none.) Open the pty path like a serial port, or connect to the socket URL; a
module may close and reopen the pty as often as it likes. Over TCP, one module at a time: a new connection
replaces the previous one.

Then it reads commands on stdin, one per line, and answers each with one JSON line on stdout:
  set NAME VALUE     change a datapoint (VALUE is JSON, else a string: set Temperature 25, set LED_Color Pink)
  get                the whole state
  fault KEY VALUE    change a fault setting: drop_acks, corrupt_bytes, garbage (probabilities), delay_s,
                     silent (true/false), seed
  fault clear        remove every fault (plain "fault" shows the plan)
  reset              send half a report, as a board that resets mid-frame
  stats              link counters, reports sent, writes applied
  help, quit
A line holding a JSON object is taken as a control request (below). A bad command is answered with
{"ok": false, "error": ...} and the sim goes on. The end of stdin does not stop the sim (it may run with stdin
closed under a supervisor); SIGINT or SIGTERM (or quit) stops it.

The control API (--control, loopback by default) takes the same commands as JSON lines over TCP:
  {"cmd": "set", "attrs": {"LED_R": 10}}   {"cmd": "get"}   {"cmd": "fault", "plan": {"silent": true}}
  {"cmd": "fault", "clear": true}   {"cmd": "reset"}   {"cmd": "stats"}
and answers {"ok": true, ...} or {"ok": false, "error": ...}, one line per request. Binary datapoints are hex.

What happens (connections, commands, faults, stop) is logged on stderr with gizdev -v sim ...

examples:
  gizdev sim --product protocols/gokit.json --set LED_Color=Pink --set Temperature=25
  gizdev -v sim --product protocols/gokit.json --listen socket://127.0.0.1:0 --drop-acks 0.2 --seed 1
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sim",
        help="run a virtual MCU on a pty or a TCP port",
        description=SIM_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_product_option(parser, required=True)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--pty",
        action="store_true",
        help="serve on a new pseudo-terminal and print its path (the default)",
    )
    where.add_argument(
        "--listen",
        metavar="socket://HOST:PORT",
        help="serve on a TCP port instead (raw serial bytes, as ser2net); port 0 picks a free one",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --listen and --control on addresses other than loopback (anyone reaching them controls the sim)",
    )
    parser.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="initial value of a datapoint (repeatable; VALUE is JSON, else a string; binary as hex)",
    )
    parser.add_argument(
        "--periodic",
        metavar="SECONDS",
        type=options.positive_seconds,
        default=PERIODIC_INTERVAL_S,
        help=f"interval of the full status report (default {PERIODIC_INTERVAL_S:g}, the SDK's 10 minutes)",
    )
    parser.add_argument(
        "--readonly-interval",
        metavar="SECONDS",
        type=options.seconds,
        default=READONLY_MIN_INTERVAL_S,
        help="least time between reports caused only by read-only numbers changing "
        f"(default {READONLY_MIN_INTERVAL_S:g}, as the SDK)",
    )
    parser.add_argument(
        "--read-current-state",
        action="store_true",
        help="answer reads with the state as it is now; the SDK answers with the last reported one, which holds "
        "back a read-only number's change until its report",
    )
    faults = parser.add_argument_group("fault injection (what the sim sends; change them later with 'fault')")
    faults.add_argument(
        "--drop-acks",
        metavar="P",
        type=options.probability,
        default=0.0,
        help="probability of not sending an ACK it owes",
    )
    faults.add_argument(
        "--corrupt", metavar="P", type=options.probability, default=0.0, help="probability of flipping a bit, per byte"
    )
    faults.add_argument(
        "--delay", metavar="SECONDS", type=options.seconds, default=0.0, help="extra delay before each frame"
    )
    faults.add_argument(
        "--garbage",
        metavar="P",
        type=options.probability,
        default=0.0,
        help="probability of random bytes before a frame",
    )
    faults.add_argument("--silent", action="store_true", help="send nothing at all (a dead or unpowered board)")
    faults.add_argument("--seed", metavar="N", type=int, help="random seed, for faults that repeat run after run")
    options.add_baud_option(
        parser,
        default=None,
        metavar="N",
        help="pace what the sim sends at N baud (8N1), as a real UART would (default: as fast as possible)",
    )
    parser.add_argument(
        "--control",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="address of the JSON control API (default 127.0.0.1:0, a free loopback port); 'none' disables it",
    )
    parser.set_defaults(run=run_sim)


def _parse_listen(url: str) -> Address:
    # Not transport.parse_socket_url: that one is for clients and refuses port 0, which a server may ask for.
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--listen {url}: bad port: {exc}") from None
    if parts.scheme != "socket" or not parts.hostname or port is None or parts.path or parts.query:
        raise ConfigError(f"--listen {url}: expected socket://HOST:PORT (e.g. socket://127.0.0.1:0)")
    return Address(parts.hostname, port)


def _parse_control(text: str) -> Address | None:
    if text.strip().lower() == "none":
        return None
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise ConfigError(f"--control {text}: expected HOST:PORT (e.g. 127.0.0.1:0) or none")
    return Address(host, int(port_text))


def _initial_values(product: Product, settings: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for setting in settings:
        name, sep, text = setting.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise ConfigError(f"--set {setting}: expected NAME=VALUE")
        # Read as the stdin 'set' command reads its value.
        values[name] = text_value(product, name, text)
    try:
        return product.attrs_from_json(values)
    except GizdevError as exc:
        raise ConfigError(f"--set: {exc}") from None


def run_sim(args: argparse.Namespace) -> int:
    product = load_product(args.product)
    config = SimConfig(
        product=product,
        values=_initial_values(product, args.set),
        faults=fault_plan(
            {
                "drop_acks": args.drop_acks,
                "corrupt_bytes": args.corrupt,
                "delay_s": args.delay,
                "garbage": args.garbage,
                "silent": args.silent,
                "seed": args.seed,
            }
        ),
        periodic_s=args.periodic,
        readonly_interval_s=args.readonly_interval,
        read_current_state=args.read_current_state,
        listen=_parse_listen(args.listen) if args.listen else None,
        control=_parse_control(args.control),
        baud=args.baud,
        allow_remote=args.allow_remote,
    )
    return asyncio.run(_serve(config))


async def _serve(config: SimConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stop_on_signal, stop, signum)
    try:
        status = await serve_sim(config, stop, announce=_print_line, answer=_print_answer)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    _LOGGER.info("sim: stopped")
    return status


def _stop_on_signal(stop: asyncio.Event, signum: int) -> None:
    _LOGGER.info("sim: %s received", signal.Signals(signum).name)
    stop.set()


def _print_line(announcement: dict[str, Any]) -> None:
    print(json.dumps(announcement), flush=True)


def _print_answer(answer: dict[str, Any]) -> None:
    try:
        print(json.dumps(answer, ensure_ascii=False), flush=True)
    except OSError as exc:  # nobody reads stdout any more; the sim itself is still useful
        _LOGGER.debug("sim: answer not written: %s", exc)
