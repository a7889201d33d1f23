"""``gizdev decode`` and ``gizdev encode``: serial frames <-> JSON, one per line."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from gizdev.cli import options
from gizdev.codec.commands import Command
from gizdev.codec.describe import describe_frame
from gizdev.codec.frame import encode_frame, parse_frame
from gizdev.codec.p0 import Product, load_product
from gizdev.errors import GizdevError, PayloadError

_SEPARATORS = re.compile(r"[\s:,-]+|0x", re.IGNORECASE)

DECODE_HELP = """\
Decode serial frames (wire bytes, 0x55 stuffing included) given as hex arguments, or one per line on stdin.
Prints one JSON object per frame: cmd, cmd_name, sn, flags, and for P0 frames action and attrs (enums as labels,
binary as hex); other commands' decoded fields. A bad line prints {"line": N, "error": ...} and the run goes on;
the exit status is 1 if any line failed. Hex may contain spaces, colons or 0x prefixes.

example:
  gizdev decode --product protocols/gokit.json ffff00100512000004050a141e0701263c0202da
"""

ENCODE_HELP = """\
Encode frames from JSON requests, one per stdin line, and print the wire hex (stuffed) of each:
  {"cmd": 5, "sn": 7, "action": "report", "attrs": {"LED_OnOff": true, ...}}
cmd and action take numbers or names (cmd: p0_up, p0_down, heartbeat, ...; action: report, write, read,
read_reply, transparent_up, transparent_down). Optional keys: "flags" (frame flags), "p0_flags" (the
variable-length flag field to send as is), "data" (pass-through bytes, hex), "payload" (raw payload hex for
commands without P0). A bad line prints {"line": N, "error": ...}; the exit status is 1 if any line failed.
With --cmd, one frame is built from the options instead of stdin.

example:
  gizdev encode --product protocols/gokit.json --cmd p0_down --sn 7 --action write --attrs '{"LED_R": 200}'
"""


def register(commands: Any) -> None:
    decode = commands.add_parser(
        "decode",
        help="decode serial frames to JSON",
        description=DECODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_product_option(decode, help="product schema (needed to decode P0 datapoints)")
    decode.add_argument("frames", nargs="*", metavar="HEX", help="frames as hex; stdin lines when none given")
    decode.set_defaults(run=run_decode)

    encode = commands.add_parser(
        "encode",
        help="encode JSON requests to serial frames",
        description=ENCODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_product_option(encode, help="product schema (needed for P0 actions)")
    encode.add_argument("--cmd", help="command number or name (single-frame mode)")
    encode.add_argument("--sn", type=lambda text: int(text, 0), default=0, help="sequence number (default 0)")
    encode.add_argument("--flags", type=lambda text: int(text, 0), default=0, help="frame flags (default 0)")
    encode.add_argument("--action", help="P0 action number or name")
    encode.add_argument("--attrs", help="datapoint values as a JSON object (a JSON list of names for a read)")
    encode.add_argument("--data", help="pass-through bytes as hex")
    encode.add_argument("--payload", help="raw payload hex for commands without P0")
    encode.set_defaults(run=run_encode)


def parse_hex(text: str) -> bytes:
    """Bytes from hex with optional separators; PayloadError names what is wrong."""
    cleaned = _SEPARATORS.sub("", text)
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise PayloadError("not a hex string", path="hex") from None


def _lines(arguments: list[str], stdin: TextIO) -> Iterator[tuple[int, str]]:
    source: Iterable[str] = arguments if arguments else stdin
    for number, line in enumerate(source, start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line.strip()


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def run_decode(args: argparse.Namespace) -> int:
    product = load_product(args.product) if args.product else None
    failed = False
    for number, line in _lines(args.frames, sys.stdin):
        try:
            _emit(describe_frame(parse_frame(parse_hex(line)), product))
        except GizdevError as exc:
            failed = True
            _emit({"line": number, "input": line[:200], "error": str(exc)})
    return 1 if failed else 0


def run_encode(args: argparse.Namespace) -> int:
    product = load_product(args.product) if args.product else None
    if args.cmd is not None:
        request: dict[str, Any] = {"cmd": args.cmd, "sn": args.sn, "flags": args.flags}
        for key in ("action", "data", "payload"):
            if getattr(args, key) is not None:
                request[key] = getattr(args, key)
        if args.attrs is not None:
            try:
                request["attrs"] = json.loads(args.attrs)
            except json.JSONDecodeError as exc:
                raise PayloadError(f"--attrs is not JSON: {exc}", path="attrs") from None
        print(encode_request(request, product).hex())
        return 0
    failed = False
    for number, line in _lines([], sys.stdin):
        try:
            request = json.loads(line)
            print(encode_request(request, product).hex(), flush=True)
        except json.JSONDecodeError as exc:
            failed = True
            _emit({"line": number, "error": f"not JSON: {exc}"})
        except GizdevError as exc:
            failed = True
            _emit({"line": number, "error": str(exc)})
    return 1 if failed else 0


def _number_or_name(value: str) -> int | str:
    """'5' and '0x05' are numbers; anything else is a name."""
    key = value.strip()
    if key.isdigit():
        return int(key)
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", key):
        return int(key, 16)
    return key


def _command(value: object) -> int:
    if isinstance(value, str):
        key = _number_or_name(value)
        if isinstance(key, int):
            return key
        try:
            return int(Command[key.upper()])
        except KeyError:
            raise PayloadError(f"unknown command {value!r}", path="cmd") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise PayloadError("expects a command number or name", path="cmd")


def _int_field(request: dict[str, Any], key: str, default: int) -> int:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError("expects an integer", path=key)
    return value


def encode_request(request: object, product: Product | None) -> bytes:
    """Wire bytes for one JSON request (see ``gizdev encode --help``)."""
    if not isinstance(request, dict):
        raise PayloadError("a request is a JSON object", path="")
    cmd = _command(request.get("cmd"))
    sn = _int_field(request, "sn", 0)
    flags = _int_field(request, "flags", 0)
    if "action" in request:
        if product is None:
            raise PayloadError("P0 actions need --product", path="action")
        action = request["action"]
        if isinstance(action, str):
            action = _number_or_name(action)
        elif isinstance(action, bool) or not isinstance(action, int):
            raise PayloadError("expects an action number or name", path="action")
        attrs = request.get("attrs")
        if isinstance(attrs, dict):
            attrs = product.attrs_from_json(attrs)
        p0_flags = request.get("p0_flags")
        if p0_flags is not None and (isinstance(p0_flags, bool) or not isinstance(p0_flags, int)):
            raise PayloadError("expects an integer", path="p0_flags")
        data = parse_hex(request["data"]) if isinstance(request.get("data"), str) else b""
        payload = product.encode(action, attrs, data=data, flags=p0_flags)
    elif isinstance(request.get("payload"), str):
        payload = parse_hex(request["payload"])
    elif "payload" in request:
        raise PayloadError("expects hex", path="payload")
    else:
        payload = b""
    return encode_frame(cmd, sn, payload, flags)
