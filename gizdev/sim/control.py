"""Driving a running virtual MCU: one command interpreter for the JSON control API and for the sim's stdin.

Requests and answers are JSON objects, one per line (UTF-8, at most :data:`MAX_LINE_BYTES` per line)::

    {"cmd": "set", "attrs": {"LED_R": 10}}      -> {"ok": true, "attrs": {"LED_R": 10}}
    {"cmd": "get"}                              -> {"ok": true, "attrs": {...every datapoint...}}
    {"cmd": "fault", "plan": {"silent": true}}  -> {"ok": true, "faults": {...the whole plan...}}
    {"cmd": "fault", "clear": true}             -> {"ok": true, "faults": {...no faults...}}
    {"cmd": "fault"}                            -> {"ok": true, "faults": {...}}  (the current plan)
    {"cmd": "reset"}                            -> {"ok": true, "restarts": 1}
    {"cmd": "stats"}                            -> {"ok": true, "connected": true, "reports_sent": 3, ...}
    {"cmd": "help"}                             -> {"ok": true, "commands": {...}}
    {"cmd": "quit"}                             -> {"ok": true, "quit": true}, then the sim stops
    anything wrong                              -> {"ok": false, "error": "..."}

Values are the codec's app values in JSON: bools, enum labels (or indexes), scaled numbers, binary datapoints
as hex. A request may carry an ``"id"``, which its answer echoes. Malformed JSON, an unknown command, a bad
value or an over-long line is answered with an error and the connection goes on.

The text form of the sim's stdin (``set NAME VALUE``, ``fault KEY VALUE`` ...) is parsed by
:func:`parse_text_command` into the same request objects, so both front ends (:class:`ControlServer` on TCP,
:class:`StdinCommands` on a file descriptor) share :class:`SimController`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from gizdev.codec.p0 import Product
from gizdev.errors import ConfigError, GizdevError, PayloadError, TransportError
from gizdev.schema.model import DataType
from gizdev.sim.mcu import FaultPlan, VirtualMcu

__all__ = [
    "MAX_LINE_BYTES",
    "ControlServer",
    "LineSplitter",
    "SimController",
    "StdinCommands",
    "bind_listener",
    "fault_plan",
    "format_address",
    "parse_text_command",
    "parse_value",
    "text_value",
]

_LOGGER = logging.getLogger(__name__)

#: Longest request line accepted; longer ones are answered with an error and skipped up to their newline.
MAX_LINE_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 64 * 1024
#: A very long delay would make the sim look dead rather than slow; an hour is more than any test needs.
MAX_FAULT_DELAY_S = 3600.0

_PROBABILITIES = ("drop_acks", "corrupt_bytes", "garbage")
_SWITCHES = ("silent", "no_report_after_write", "no_stuffing", "wrong_ack_sn", "no_resend", "ignore_illegal")
_DELAYS = ("delay_s", "ack_delay_s")
_FAULT_KEYS = (*_PROBABILITIES, *_DELAYS, *_SWITCHES, "seed", "bad_checksum_every", "product_key")

HELP = {
    "set NAME VALUE": 'change a datapoint as the board would (VALUE is JSON, else a string: 25, true, "Pink", Pink)',
    "get": "the whole state",
    "fault KEY VALUE": f"change one fault setting ({', '.join(_FAULT_KEYS)})",
    "fault clear": "remove every fault",
    "fault": "show the fault plan",
    "reset": "send half a report, as a board resetting mid-frame",
    "stats": "link counters, reports sent, writes applied",
    "help": "this list",
    "quit": "stop the sim",
}

#: Marks, in the output of :meth:`LineSplitter.feed`, a line that was longer than the limit (and dropped).
OVERSIZED = None


class LineSplitter:
    """Cuts a byte stream into lines, never holding more than ``limit`` bytes of one line.

    ``feed`` returns the complete lines (without the newline), and :data:`OVERSIZED` once for each line that grew
    past the limit; the rest of such a line is skipped up to its newline, so it cannot be taken for a request.
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if self._skipping:
                    self._buffer.clear()
                elif len(self._buffer) > self.limit:
                    out.append(OVERSIZED)
                    self._skipping = True
                    self._buffer.clear()
                return out
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping:
                self._skipping = False
            elif len(line) > self.limit:
                out.append(OVERSIZED)
            else:
                out.append(line.rstrip(b"\r"))

    def flush(self) -> list[bytes | None]:
        """The last line of a stream that ended without a newline."""
        rest, skipping = bytes(self._buffer), self._skipping
        self._buffer.clear()
        self._skipping = False
        return [rest] if rest.strip() and not skipping else []


def parse_value(text: str) -> object:
    """A value given as text: JSON if it parses (``25``, ``true``, ``"Pink"``), else the text itself (``Pink``)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def text_value(product: Product, name: str, text: str) -> object:
    """The value of datapoint ``name`` given as text: hex stays text for binary points, else :func:`parse_value`."""
    codec = product.codecs.get(name)
    if codec is not None and codec.datapoint.data_type is DataType.BINARY:
        # Hex such as "1234" must stay text: read as JSON it would become a number.
        return text
    return parse_value(text)


def parse_text_command(line: str, product: Product) -> dict[str, Any]:
    """The request object for one line of the text form (a line that is a JSON object is taken as is)."""
    text = line.strip()
    if text.startswith("{"):
        try:
            request = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"malformed JSON: {exc}") from None
        if not isinstance(request, dict):
            raise ConfigError("a request is a JSON object")
        return request
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    word = word.lower()
    if word == "set":
        name, _, value = rest.partition(" ")
        if not name or not value.strip():
            raise ConfigError("usage: set NAME VALUE")
        return {"cmd": "set", "attrs": {name: text_value(product, name, value.strip())}}
    if word == "fault":
        if not rest:
            return {"cmd": "fault"}
        if rest.lower() == "clear":
            return {"cmd": "fault", "clear": True}
        key, _, value = rest.partition(" ")
        if not value.strip():
            raise ConfigError("usage: fault KEY VALUE, or fault clear")
        return {"cmd": "fault", "plan": {key: parse_value(value.strip())}}
    if word in ("get", "reset", "stats", "help", "quit"):
        if rest:
            raise ConfigError(f"{word} takes no arguments")
        return {"cmd": word}
    raise ConfigError(f"unknown command {word!r} (try help)")


def fault_plan(changes: Mapping[str, object], base: FaultPlan | None = None) -> FaultPlan:
    """``base`` (default: no faults) with some settings changed; ConfigError names a bad key or value."""
    updates: dict[str, Any] = {}
    for key, value in changes.items():
        if key in _PROBABILITIES or key in _DELAYS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"fault {key}: expects a number, not {value!r}")
            if key in _DELAYS and not 0 <= value <= MAX_FAULT_DELAY_S:
                raise ConfigError(f"fault {key}: {value} is outside 0..{MAX_FAULT_DELAY_S:g} s")
            if key in _PROBABILITIES and not 0 <= value <= 1:
                raise ConfigError(f"fault {key}: a probability is within 0..1, not {value}")
            updates[key] = float(value)
        elif key in _SWITCHES:
            if not isinstance(value, bool):
                raise ConfigError(f"fault {key}: expects true or false, not {value!r}")
            updates[key] = value
        elif key == "bad_checksum_every":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"fault bad_checksum_every: expects a whole number >= 0, not {value!r}")
            updates[key] = value
        elif key == "product_key":
            if value is not None and not (isinstance(value, str) and len(value) == 32 and value.isascii()):
                raise ConfigError(f"fault product_key: expects 32 characters or null, not {value!r}")
            updates[key] = value
        elif key == "seed":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"fault seed: expects an integer or null, not {value!r}")
            updates[key] = value
        else:
            raise ConfigError(f"unknown fault {key!r} (known: {', '.join(_FAULT_KEYS)})")
    return dataclasses.replace(base or FaultPlan(), **updates)


class SimController:
    """Answers control requests for one :class:`VirtualMcu` (see the module doc for the requests)."""

    def __init__(self, mcu: VirtualMcu, *, on_quit: Callable[[], None] | None = None) -> None:
        self.mcu = mcu
        self._on_quit = on_quit

    @property
    def product(self) -> Product:
        return self.mcu.product

    def handle(self, request: object) -> dict[str, Any]:
        """The answer to one request object; never raises for a bad request."""
        request_id = request.get("id") if isinstance(request, dict) else None
        try:
            answer = self._dispatch(request)
        except GizdevError as exc:
            answer = {"ok": False, "error": str(exc)}
        if request_id is not None:
            answer["id"] = request_id
        return answer

    def handle_json(self, line: bytes | None) -> dict[str, Any]:
        """The answer to one line of the JSON protocol (None: a line over the limit)."""
        if line is None:
            return {"ok": False, "error": f"line longer than {MAX_LINE_BYTES} bytes, ignored"}
        try:
            request = json.loads(line)
        # JSONDecodeError, UnicodeDecodeError (not UTF-8), RecursionError (nesting deeper than the parser goes)
        except (ValueError, RecursionError) as exc:
            return {"ok": False, "error": f"malformed JSON: {exc}"}
        return self.handle(request)

    def handle_text(self, line: bytes | None) -> dict[str, Any]:
        """The answer to one line of the text form (stdin)."""
        if line is None:
            return {"ok": False, "error": f"line longer than {MAX_LINE_BYTES} bytes, ignored"}
        try:
            request = parse_text_command(line.decode("utf-8"), self.product)
        except UnicodeDecodeError:
            return {"ok": False, "error": "the line is not UTF-8"}
        except GizdevError as exc:
            return {"ok": False, "error": str(exc)}
        return self.handle(request)

    # ---- the commands ------------------------------------------------------------------------------------------

    def _dispatch(self, request: object) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise ConfigError("a request is a JSON object")
        cmd = request.get("cmd")
        if not isinstance(cmd, str) or cmd not in _FIELDS:
            raise ConfigError(f"unknown cmd {cmd!r} (known: {', '.join(_FIELDS)})")
        unknown = sorted(str(key) for key in request if key not in {"cmd", "id", *_FIELDS[cmd]})
        if unknown:
            raise ConfigError(f"{cmd}: unexpected field(s) {', '.join(unknown)}")
        if cmd == "set":
            return self._set(request.get("attrs"))
        if cmd == "get":
            return {"ok": True, "attrs": self.product.attrs_to_json(self.mcu.state)}
        if cmd == "fault":
            return self._fault(request)
        if cmd == "reset":
            return self._reset()
        if cmd == "stats":
            return self._stats()
        if cmd == "help":
            return {"ok": True, "commands": HELP}
        _LOGGER.info("%s: quit requested", self.mcu.name)
        if self._on_quit is not None:
            self._on_quit()
        return {"ok": True, "quit": True}

    def _set(self, attrs: object) -> dict[str, Any]:
        values = self.product.attrs_from_json(attrs)
        if not values:
            raise PayloadError("nothing to set", path="attrs")
        self.mcu.set_values(values)
        canonical = self._json_of(values)
        _LOGGER.info("%s: set %s", self.mcu.name, canonical)
        return {"ok": True, "attrs": canonical}

    def _json_of(self, names: Mapping[str, object]) -> dict[str, Any]:
        # The canonical values (an enum index given comes back as its label), as the board now holds them.
        return self.product.attrs_to_json({name: self.mcu.state[name] for name in names})

    def _fault(self, request: Mapping[str, object]) -> dict[str, Any]:
        plan = request.get("plan")
        clear = request.get("clear", False)
        if clear is not True and clear is not False:
            raise ConfigError("fault: clear expects true or false")
        if plan is not None and not isinstance(plan, dict):
            raise ConfigError("fault: plan expects an object of fault settings")
        if clear and plan:
            raise ConfigError("fault: give either clear or plan")
        if clear:
            self.mcu.faults = FaultPlan()
            _LOGGER.info("%s: faults cleared", self.mcu.name)
        elif plan:
            self.mcu.faults = fault_plan(plan, self.mcu.faults)
            _LOGGER.info("%s: faults now %s", self.mcu.name, self.mcu.faults)
        return {"ok": True, "faults": dataclasses.asdict(self.mcu.faults)}

    def _reset(self) -> dict[str, Any]:
        link = self.mcu.session.link
        if link is None or not link.is_open:
            raise ConfigError("reset: no module is connected")
        self.mcu.reset_mid_frame()
        _LOGGER.info("%s: reset mid-frame", self.mcu.name)
        return {"ok": True, "restarts": self.mcu.restarts}

    def _stats(self) -> dict[str, Any]:
        mcu = self.mcu
        link = mcu.session.link
        return {
            "ok": True,
            # On a pty this is the master side's link: whether a module holds the slave open cannot be seen.
            "connected": link is not None and link.is_open,
            "reports_sent": mcu.reports_sent,
            "writes_applied": mcu.writes_applied,
            "restarts": mcu.restarts,
            "passthrough_received": len(mcu.passthrough_received),
            "wifi_status": None if mcu.wifi_status is None else mcu.wifi_status.to_json(),
            "link": None if link is None else link.stats.to_json(),
        }


#: The fields each cmd accepts besides "cmd" and "id".
_FIELDS: dict[str, tuple[str, ...]] = {
    "set": ("attrs",),
    "get": (),
    "fault": ("plan", "clear"),
    "reset": (),
    "stats": (),
    "help": (),
    "quit": (),
}


# ---- sockets ------------------------------------------------------------------------------------------------------


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listener(host: str, port: int, *, allow_remote: bool = False, what: str = "server") -> socket.socket:
    """A listening, non-blocking TCP socket; refused unless it is bound to loopback or ``allow_remote``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:  # in use, not an address of this machine, name not resolved
        reason = exc.strerror or str(exc)
        raise TransportError(f"{what}: cannot listen on {format_address(host, port)}: {reason}") from exc
    # Checked on the address actually bound, so that a name resolving to a public address is caught as well.
    bound = sock.getsockname()[0]
    if not ipaddress.ip_address(bound).is_loopback and not allow_remote:
        sock.close()
        raise ConfigError(
            f"{what}: {format_address(host, port)} is not a loopback address; anyone who can reach it could "
            "drive the simulator (add --allow-remote if that is what you want)"
        )
    if not ipaddress.ip_address(bound).is_loopback:
        _LOGGER.warning("%s: listening on %s, reachable from other machines", what, format_address(bound, port))
    sock.setblocking(False)
    return sock


class ControlServer:
    """The JSON control API on TCP: one :class:`SimController` for every connection."""

    def __init__(self, controller: SimController, host: str, port: int, *, allow_remote: bool = False) -> None:
        self.controller = controller
        self.host = host
        self.port = port
        self.allow_remote = allow_remote
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> tuple[str, int]:
        """Listen; returns the address bound (the real port when 0 was asked)."""
        sock = bind_listener(self.host, self.port, allow_remote=self.allow_remote, what="control")
        self._server = await asyncio.start_server(self._serve, sock=sock)
        host, port = sock.getsockname()[:2]
        _LOGGER.info("control API on %s", format_address(host, port))
        return host, port

    async def close(self) -> None:
        """Stop listening and end every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        for task in clients:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        peer = writer.get_extra_info("peername")
        name = format_address(*peer[:2]) if isinstance(peer, tuple) else str(peer)
        _LOGGER.info("control: %s connected", name)
        lines = LineSplitter()
        try:
            while chunk := await reader.read(_READ_CHUNK_BYTES):
                for line in lines.feed(chunk):
                    if line is None or line.strip():
                        writer.write(self._answer(line, name))
                await writer.drain()
            for line in lines.flush():
                writer.write(self._answer(line, name))
            await writer.drain()
        except ConnectionError as exc:
            _LOGGER.info("control: %s: %s", name, exc)
        except asyncio.CancelledError:
            # Cancelled by close(): end normally, as the LAN server does (Python 3.11's asyncio server logs a
            # handler that ended cancelled as an error, CPython gh-113538).
            _LOGGER.debug("control: %s closed with the server", name)
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            _LOGGER.info("control: %s disconnected", name)

    def _answer(self, line: bytes | None, peer: str) -> bytes:
        try:
            answer = self.controller.handle_json(line)
        except Exception:  # a bug must cost one answer, not the connection
            _LOGGER.exception("control: %s: request failed", peer)
            answer = {"ok": False, "error": "internal error (see the sim's log)"}
        return json.dumps(answer, ensure_ascii=False).encode() + b"\n"


# ---- stdin ---------------------------------------------------------------------------------------------------------

#: A command file this large is not a command file (stdin from /dev/zero, say).
MAX_UNPOLLABLE_STDIN = 16 * 1024 * 1024
_STDIN_CHUNK_BYTES = 64 * 1024


class StdinCommands:
    """Text commands from a file descriptor (stdin), each answer handed to ``answer``; its end leaves the sim running.

    A terminal or a pipe is watched by the event loop; a regular file or /dev/null, which cannot be polled, is
    read a chunk per turn of the loop, and given up after :data:`MAX_UNPOLLABLE_STDIN` bytes.
    """

    def __init__(self, controller: SimController, answer: Callable[[dict[str, Any]], None], *, fd: int = 0) -> None:
        self.controller = controller
        self.fd = fd
        self._answer = answer
        self._lines = LineSplitter()
        self._watching = False
        self._unpolled = 0

    def start(self) -> None:
        """Begin answering what arrives on the fd."""
        loop = asyncio.get_running_loop()
        try:
            # Watched without making the fd non-blocking: a terminal shares that flag with stdout and the shell.
            loop.add_reader(self.fd, self._readable)
            self._watching = True
        except PermissionError:
            # A regular file or /dev/null cannot be polled; it never blocks either, so read it now.
            loop.call_soon(self._read_all)
        except (OSError, ValueError):
            _LOGGER.info("sim: no stdin; commands only through the control API")

    def close(self) -> None:
        """Stop watching the fd (it stays open: it is not ours)."""
        if self._watching:
            asyncio.get_running_loop().remove_reader(self.fd)
            self._watching = False

    def _readable(self) -> None:
        if not self._chunk():
            self.close()

    def _read_all(self) -> None:
        # One chunk per turn of the loop, so that the board and the signal handlers keep running; an input that
        # never ends (stdin from /dev/zero) is given up after MAX_UNPOLLABLE_STDIN bytes.
        self._unpolled += 1
        if self._unpolled * _STDIN_CHUNK_BYTES > MAX_UNPOLLABLE_STDIN:
            _LOGGER.warning("sim: stdin does not end (%d bytes read); ignoring it", MAX_UNPOLLABLE_STDIN)
            return
        if self._chunk():
            asyncio.get_running_loop().call_soon(self._read_all)

    def _chunk(self) -> bool:
        """Handle what the fd has; False at its end."""
        try:
            data = os.read(self.fd, _STDIN_CHUNK_BYTES)
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
