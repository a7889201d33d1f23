"""``gizdev sim``: a virtual MCU for any product, on a pty or a TCP port, driven from stdin or a JSON control API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gizdev.cli import options
from gizdev.codec.p0 import Product, load_product
from gizdev.errors import ConfigError, GizdevError, TransportError
from gizdev.link.protocol import SerialLink
from gizdev.sim.control import (
    ControlServer,
    LineSplitter,
    SimController,
    bind_listener,
    fault_plan,
    format_address,
    text_value,
)
from gizdev.sim.mcu import PERIODIC_INTERVAL_S, READONLY_MIN_INTERVAL_S, FaultPlan, VirtualMcu
from gizdev.transport import LinkTransport, connect_fd, open_pty_pair

_LOGGER = logging.getLogger(__name__)

#: How long a closing link may take to flush before it is cut (a peer that stopped reading never lets it finish).
CLOSE_GRACE_S = 1.0
#: Pause after a failed accept() (e.g. out of file descriptors), so that the loop does not spin.
ACCEPT_RETRY_S = 0.5

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


@dataclass(frozen=True, slots=True)
class _Address:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class _SimConfig:
    product: Product
    values: dict[str, object]
    faults: FaultPlan
    periodic_s: float
    readonly_interval_s: float
    read_current_state: bool
    listen: _Address | None  # None: a pty
    control: _Address | None  # None: no control API
    baud: int | None
    allow_remote: bool


def register(commands: Any) -> None:
    sim = commands.add_parser(
        "sim",
        help="run a virtual MCU on a pty or a TCP port",
        description=SIM_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--product", metavar="FILE", required=True, help="product schema (the Gizwits JSON export)")
    where = sim.add_mutually_exclusive_group()
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
    sim.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow --listen and --control on addresses other than loopback (anyone reaching them controls the sim)",
    )
    sim.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="initial value of a datapoint (repeatable; VALUE is JSON, else a string; binary as hex)",
    )
    sim.add_argument(
        "--periodic",
        metavar="SECONDS",
        type=options.positive_seconds,
        default=PERIODIC_INTERVAL_S,
        help=f"interval of the full status report (default {PERIODIC_INTERVAL_S:g}, the SDK's 10 minutes)",
    )
    sim.add_argument(
        "--readonly-interval",
        metavar="SECONDS",
        type=options.seconds,
        default=READONLY_MIN_INTERVAL_S,
        help="least time between reports caused only by read-only numbers changing "
        f"(default {READONLY_MIN_INTERVAL_S:g}, as the SDK)",
    )
    sim.add_argument(
        "--read-current-state",
        action="store_true",
        help="answer reads with the state as it is now; the SDK answers with the last reported one, which holds "
        "back a read-only number's change until its report",
    )
    faults = sim.add_argument_group("fault injection (what the sim sends; change them later with 'fault')")
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
    sim.add_argument(
        "--baud",
        metavar="N",
        type=options.positive_int,
        help="pace what the sim sends at N baud (8N1), as a real UART would (default: as fast as possible)",
    )
    sim.add_argument(
        "--control",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="address of the JSON control API (default 127.0.0.1:0, a free loopback port); 'none' disables it",
    )
    sim.set_defaults(run=run_sim)


def _parse_listen(url: str) -> _Address:
    # Not transport.parse_socket_url: that one is for clients and refuses port 0, which a server may ask for.
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--listen {url}: bad port: {exc}") from None
    if parts.scheme != "socket" or not parts.hostname or port is None or parts.path or parts.query:
        raise ConfigError(f"--listen {url}: expected socket://HOST:PORT (e.g. socket://127.0.0.1:0)")
    return _Address(parts.hostname, port)


def _parse_control(text: str) -> _Address | None:
    if text.strip().lower() == "none":
        return None
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise ConfigError(f"--control {text}: expected HOST:PORT (e.g. 127.0.0.1:0) or none")
    return _Address(host, int(port_text))


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


# ---- running ------------------------------------------------------------------------------------------------------


def run_sim(args: argparse.Namespace) -> int:
    product = load_product(args.product)
    config = _SimConfig(
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


async def _serve(config: _SimConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stop_on_signal, stop, signum)
    try:
        status = await _run(config, stop)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    _LOGGER.info("sim: stopped")
    return status


async def _run(config: _SimConfig, stop: asyncio.Event) -> int:
    """Serve until ``stop`` is set (0) or the pty fails (1); everything opened is closed on the way out."""
    try:
        mcu = VirtualMcu(
            config.product,
            values=config.values,
            periodic_interval_s=config.periodic_s,
            readonly_min_interval_s=config.readonly_interval_s,
            read_current_state=config.read_current_state,
            faults=config.faults,
        )
    except GizdevError as exc:
        raise ConfigError(f"--set: {exc}") from None
    controller = SimController(mcu, on_quit=stop.set)
    async with contextlib.AsyncExitStack() as stack:
        endpoint: _PtyEndpoint | _TcpEndpoint
        if config.listen is None:
            endpoint = _PtyEndpoint(mcu, config.baud)
        else:
            endpoint = _TcpEndpoint(mcu, config.listen, config.baud, allow_remote=config.allow_remote)
        stack.push_async_callback(endpoint.close)
        announce = await endpoint.open()
        # Registered after the endpoint, so it runs before it: the reporter stops, then the link closes.
        stack.push_async_callback(mcu.close)
        announce["control"] = None
        if config.control is not None:
            server = ControlServer(
                controller, config.control.host, config.control.port, allow_remote=config.allow_remote
            )
            stack.push_async_callback(server.close)
            announce["control"] = format_address(*await server.start())
        mcu.start()
        print(json.dumps(announce), flush=True)
        _LOGGER.info("sim: %s (%s) ready: %s", config.product.name, config.product.product_key, json.dumps(announce))
        commands = _StdinCommands(controller)
        commands.start()
        stack.callback(commands.close)
        loop = asyncio.get_running_loop()
        failed = loop.create_task(endpoint.failed(), name="sim-endpoint")
        stopped = loop.create_task(stop.wait(), name="sim-stop")
        try:
            await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (failed, stopped):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        _LOGGER.info("sim: stopping")
        if failed.done() and not failed.cancelled():
            _LOGGER.error("sim: %s", failed.result())
            return 1
    return 0


def _stop_on_signal(stop: asyncio.Event, signum: int) -> None:
    _LOGGER.info("sim: %s received", signal.Signals(signum).name)
    stop.set()


async def _close_link(link: SerialLink, transport: LinkTransport) -> None:
    """Close a link, giving it CLOSE_GRACE_S to flush; a peer that stopped reading gets cut off."""
    transport.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await link.wait_closed()
    except TimeoutError:
        transport.abort()
        await link.wait_closed()


class _PtyEndpoint:
    """The virtual MCU on the master side of a pty; the pair keeps a slave fd, so modules may come and go."""

    def __init__(self, mcu: VirtualMcu, baud: int | None) -> None:
        self.mcu = mcu
        self.baud = baud
        self._pair = open_pty_pair()
        self._link: SerialLink | None = None
        self._transport: LinkTransport | None = None

    async def open(self) -> dict[str, Any]:
        self._transport, self._link = await self._pair.connect_master(
            self.mcu.protocol_factory, throttle_baud=self.baud
        )
        _LOGGER.info("sim: on pty %s%s", self._pair.slave_path, f" at {self.baud} baud" if self.baud else "")
        return {"pty": self._pair.slave_path}

    async def failed(self) -> str:
        """Returns (the reason) only if the pty link ends while the sim runs."""
        assert self._link is not None
        reason = await self._link.wait_closed()
        return f"pty {self._pair.slave_path} closed: {reason}"

    async def close(self) -> None:
        if self._link is not None and self._transport is not None:
            await _close_link(self._link, self._transport)
        self._pair.close()


class _TcpEndpoint:
    """The virtual MCU behind a TCP port: each accepted connection gets a fresh link and replaces the last one."""

    def __init__(self, mcu: VirtualMcu, address: _Address, baud: int | None, *, allow_remote: bool) -> None:
        self.mcu = mcu
        self.baud = baud
        self._socket = bind_listener(address.host, address.port, allow_remote=allow_remote, what="--listen")
        self.url = f"socket://{format_address(*self._socket.getsockname()[:2])}"
        self._accepting: asyncio.Task[None] | None = None
        self._current: tuple[SerialLink, LinkTransport] | None = None

    async def open(self) -> dict[str, Any]:
        self._accepting = asyncio.get_running_loop().create_task(self._accept(), name="sim-accept")
        _LOGGER.info("sim: listening on %s%s", self.url, f" at {self.baud} baud" if self.baud else "")
        return {"listen": self.url}

    async def failed(self) -> str:
        # A connection that ends is normal here: the next module connects again, so this never returns.
        never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        return await never

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        self._socket.close()
        if self._current is not None:
            await _close_link(*self._current)
            self._current = None

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self._socket)
            except OSError as exc:  # e.g. out of file descriptors: wait and try again
                _LOGGER.warning("sim: accept failed: %s", exc)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            name = f"socket://{format_address(*peer[:2])}"
            # Small frames under a 200 ms ACK budget: do not let Nagle hold them back.
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._current is not None:
                _LOGGER.info("sim: %s replaces the previous module connection", name)
                link, transport = self._current
                self._current = None
                transport.abort()
            try:
                # The socket's fd under the same transport as a serial port: EOF or reset ends the link.
                transport, link = await connect_fd(
                    conn.detach(), self.mcu.protocol_factory, throttle_baud=self.baud, path=name
                )
            except (OSError, TransportError) as exc:
                _LOGGER.warning("sim: %s: cannot serve the connection: %s", name, exc)
                continue
            self._current = (link, transport)
            _LOGGER.info("sim: module connected from %s", name)


MAX_UNPOLLABLE_STDIN = 16 * 1024 * 1024  # a command file this large is not a command file


class _StdinCommands:
    """Text commands from stdin, answered on stdout; the end of stdin leaves the sim running."""

    def __init__(self, controller: SimController, answer: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.controller = controller
        self._answer = answer or _print_answer
        self._lines = LineSplitter()
        self._watching = False
        self._unpolled = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # Watched without making fd 0 non-blocking: a terminal shares that flag with stdout and the shell.
            loop.add_reader(0, self._readable)
            self._watching = True
        except PermissionError:
            # A regular file or /dev/null cannot be polled; it never blocks either, so read it now.
            loop.call_soon(self._read_all)
        except (OSError, ValueError):
            _LOGGER.info("sim: no stdin; commands only through the control API")

    def close(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_reader(0)
            self._watching = False

    def _readable(self) -> None:
        if not self._chunk():
            self.close()

    def _read_all(self) -> None:
        # One chunk per turn of the loop, so that the board and the signal handlers keep running; an input that
        # never ends (stdin from /dev/zero) is given up after MAX_UNPOLLABLE_STDIN bytes.
        self._unpolled += 1
        if self._unpolled * 65536 > MAX_UNPOLLABLE_STDIN:
            _LOGGER.warning("sim: stdin does not end (%d bytes read); ignoring it", MAX_UNPOLLABLE_STDIN)
            return
        if self._chunk():
            asyncio.get_running_loop().call_soon(self._read_all)

    def _chunk(self) -> bool:
        """Handle what stdin has; False at its end."""
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            _LOGGER.info("sim: stdin unreadable (%s); commands only through the control API", exc)
            return False
        if not data:
            for line in self._lines.flush():
                self._answer(self.controller.handle_text(line))
            _LOGGER.info("sim: end of stdin; running on until SIGINT or SIGTERM")
            return False
        for line in self._lines.feed(data):
            if line is not None and not line.strip():
                continue
            self._answer(self.controller.handle_text(line))
        return True


def _print_answer(answer: dict[str, Any]) -> None:
    try:
        print(json.dumps(answer, ensure_ascii=False), flush=True)
    except OSError as exc:  # nobody reads stdout any more; the sim itself is still useful
        _LOGGER.debug("sim: answer not written: %s", exc)
