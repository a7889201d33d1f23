"""``gizdev sniff``: relay the MCU ⇄ module wire between two ports and decode it live, or replay a capture."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from gizdev.board.sniff.capture import MAX_LINE_CHARS, Direction
from gizdev.board.sniff.relay import DEFAULT_IDLE_S, Relay, RelayStats
from gizdev.board.sniff.sniffer import TraceTap, replay
from gizdev.board.sniff.trace import TraceDecoder, TraceEvent, event_json, event_text
from gizdev.cli import options
from gizdev.codec.p0 import Product, load_product
from gizdev.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

#: Trace lines waiting for stdout; beyond this a stuck reader costs trace lines, never relayed bytes.
OUTPUT_QUEUE_LINES = 100_000
#: How long the end of the run waits for stdout to take the last trace lines.
OUTPUT_CLOSE_S = 5.0

SNIFF_HELP = f"""\
Decode the serial traffic between an MCU and its WiFi module, with datapoint names from --product.

Live: put the sniffer in the middle of the wire. The MCU's UART goes to one adapter (--mcu-side), the module's
to another (--module-side); every byte is forwarded to the other side at once and unchanged (even when it does
not decode), then decoded. Ports are serial devices, pty paths or socket://HOST:PORT. After --idle-ms of
silence a frame that stopped half way is reported. Ctrl-C (or SIGTERM) stops; relay statistics (bytes, frames,
errors each way) go to stderr.

Replay: --replay FILE decodes a capture (- for stdin), such as one written by --record.

Output on stdout, one line per frame or problem: time, direction, command, sn and the decoded fields
(P0 datapoints by name; hex without --product), or BAD BYTES (garbage, checksum, truncated frame, ...) or
BAD LINE (a capture line that breaks the format). With --json, one JSON object per line: "time", "dir" and the
fields `gizdev decode` prints for the frame, or "error" (with "data" and "offset" for bad bytes, "line" for a
bad capture line). Bad input never stops the run.

Capture format (one item per line, UTF-8):
  [TIME] [DIR] HEX       wire bytes (0x55 stuffing included); a frame may span lines, a line hold several
  [TIME] DIR idle        the line went idle: a partial frame in that direction is reported
  # comment              ignored (blank lines too, and anything after '#')
TIME: ISO 8601 (2026-11-26T02:30:00.123456Z) or seconds with a decimal point (0.123). DIR: mcu>mod or '>'
(the MCU sends), mod>mcu or '<' (the module sends), '?' or nothing (unknown: decoded as a stream of its own).
HEX: pairs of hex digits, contiguous or separated by spaces or colons. A line that breaks the format (or is
longer than {MAX_LINE_CHARS} characters) is reported with its number and skipped; the exit status is then 1.
--record writes TIME DIR HEX lines (and idle lines), which --replay turns into the same trace. Times are shown,
not interpreted: only an idle line or the end of the capture ends a partial frame, never a gap between times.

examples:
  gizdev sniff --mcu-side /dev/ttyUSB0 --module-side /dev/ttyUSB1 --product protocols/gokit.json --record s.cap
  gizdev sniff --replay s.cap --product protocols/gokit.json --json
  printf '0.1 < ffff0005071a0000 26\\n' | gizdev sniff --replay -
"""


def register(commands: Any) -> None:
    sniff = commands.add_parser(
        "sniff",
        help="relay and decode the MCU <-> module serial link, or replay a capture",
        description=SNIFF_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sniff.add_argument(
        "--mcu-side", metavar="PORT", help="port wired to the MCU's UART (serial device, pty path, socket://HOST:PORT)"
    )
    sniff.add_argument("--module-side", metavar="PORT", help="port wired to the WiFi module's UART")
    sniff.add_argument("--replay", metavar="FILE", help="decode a capture file instead of live ports (- for stdin)")
    options.add_product_option(sniff, help="product schema, to decode P0 datapoints by name (else shown as hex)")
    sniff.add_argument("--json", action="store_true", help="print one JSON object per event instead of text")
    sniff.add_argument(
        "--record", metavar="FILE", help="live only: also write what passes into a capture file (replayable)"
    )
    options.add_baud_option(sniff, help="line speed of both serial ports (default 9600, the protocol's)")
    sniff.add_argument(
        "--idle-ms",
        type=options.positive_seconds,
        default=DEFAULT_IDLE_S * 1000,
        help=f"silence (ms) after which a partial frame is reported (default {DEFAULT_IDLE_S * 1000:g})",
    )
    sniff.set_defaults(run=run_sniff)


def _formatter(as_json: bool) -> Callable[[TraceEvent], str]:
    if as_json:
        return lambda event: json.dumps(event_json(event), ensure_ascii=False)
    return event_text


def run_sniff(args: argparse.Namespace) -> int:
    live = args.mcu_side is not None or args.module_side is not None
    if live and args.replay is not None:
        raise ConfigError("give either --replay FILE or --mcu-side and --module-side, not both")
    if not live and args.replay is None:
        raise ConfigError("nothing to sniff: give --mcu-side PORT and --module-side PORT, or --replay FILE")
    if live and (args.mcu_side is None or args.module_side is None):
        raise ConfigError("live sniffing needs both --mcu-side PORT and --module-side PORT")
    if not live and args.record is not None:
        raise ConfigError("--record is for live sniffing (the capture given to --replay is one already)")
    product = load_product(args.product) if args.product else None
    if not live:
        return _replay(args.replay, product, _formatter(args.json))
    return asyncio.run(_live(args, product, _formatter(args.json)))


# ---- replay -------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _capture_input(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin
        return
    try:
        stream = open(path, encoding="utf-8", errors="replace", newline=None)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"--replay {path}: cannot open: {exc.strerror or exc}") from None
    with stream:
        yield stream


def _replay(path: str, product: Product | None, formatter: Callable[[TraceEvent], str]) -> int:
    decoder = TraceDecoder(product)

    def emit(event: TraceEvent) -> None:
        print(formatter(event))

    with _capture_input(path) as stream:
        try:
            replay(stream, decoder, emit)
        except OSError as exc:  # e.g. a directory given as the file, or a read error
            raise ConfigError(f"--replay {path}: cannot read: {exc.strerror or exc}") from None
    sys.stdout.flush()
    lines = [f"gizdev sniff: replayed {path}"]
    lines += [_direction_line(decoder, direction, None) for direction in Direction if decoder.stats(direction).bytes]
    if decoder.bad_lines:
        lines.append(f"  {_count(decoder.bad_lines, 'bad capture line')} skipped")
    print("\n".join(lines), file=sys.stderr)
    return 1 if decoder.bad_lines else 0


def _direction_line(decoder: TraceDecoder, direction: Direction, relay: RelayStats | None) -> str:
    stats = decoder.stats(direction)
    relayed = relay.bytes(direction) if relay is not None else stats.bytes
    what = "relayed" if relay is not None else "read"
    return (
        f"  {direction:<7} {relayed} bytes {what}, {_count(stats.frames, 'frame')}, "
        f"{_count(stats.errors, 'bad stretch', 'bad stretches')}, {_count(stats.undecodable, 'undecodable payload')}"
    )


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


# ---- live ---------------------------------------------------------------------------------------------------------


class _Output:
    """Trace lines reach stdout from a thread: a slow or stuck reader of stdout never holds up the relay."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: queue.Queue[str | None] = queue.Queue(OUTPUT_QUEUE_LINES)
        self.dropped = 0
        self.broken = False
        self._thread = threading.Thread(target=self._run, name="sniff-output", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        try:
            self._queue.put(None, timeout=OUTPUT_CLOSE_S)
        except queue.Full:
            return
        self._thread.join(OUTPUT_CLOSE_S)

    def _run(self) -> None:
        while (line := self._queue.get()) is not None:
            if self.broken:
                continue
            try:
                self._stream.write(line + "\n")
                if self._queue.empty():
                    self._stream.flush()
            except (OSError, ValueError):  # the reader went away (broken pipe) or stdout was closed
                self.broken = True


def _open_record(path: str, mcu_side: str, module_side: str) -> TextIO:
    try:
        record = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise ConfigError(f"--record {path}: cannot create: {exc.strerror or exc}") from None
    record.write(
        "# gizdev sniff capture: [TIME] DIR HEX per line, see gizdev sniff --help\n"
        f"# MCU side {mcu_side}, module side {module_side}\n"
    )
    return record


async def _live(args: argparse.Namespace, product: Product | None, formatter: Callable[[TraceEvent], str]) -> int:
    record = _open_record(args.record, args.mcu_side, args.module_side) if args.record else None
    output = _Output(sys.stdout)
    decoder = TraceDecoder(product)
    tap = TraceTap(decoder, lambda event: output.put(formatter(event)), record=record)
    relay = Relay(tap, idle_s=args.idle_ms / 1000)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    started = time.monotonic()
    status = 0
    try:
        await relay.open(args.mcu_side, args.module_side, baudrate=args.baud)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print(
            f"gizdev sniff: relaying {args.mcu_side} (MCU side) <-> {args.module_side} (module side); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        stopped = loop.create_task(stop.wait(), name="sniff-stop")
        lost = loop.create_task(relay.wait_closed(), name="sniff-relay")
        try:
            await asyncio.wait({stopped, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopped, lost):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if lost.done() and not lost.cancelled() and lost.result() is not None:
            print(f"gizdev sniff: {lost.result()}", file=sys.stderr)
            status = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await relay.close()
        tap.finish(time.time())
        output.close()
        if record is not None:
            record.close()
    _summary(decoder, relay.stats, output, time.monotonic() - started, args.record)
    return status


def _summary(decoder: TraceDecoder, stats: RelayStats, output: _Output, seconds: float, record: str | None) -> None:
    lines = [f"gizdev sniff: stopped after {seconds:.1f} s"]
    lines += [_direction_line(decoder, d, stats) for d in (Direction.MCU_TO_MODULE, Direction.MODULE_TO_MCU)]
    if record:
        lines.append(f"  capture written to {record}")
    if output.dropped:
        lines.append(f"  {_count(output.dropped, 'trace line')} dropped (stdout too slow; the relay was not affected)")
    if stats.observer_failures:
        lines.append(f"  decoding failed {stats.observer_failures} times (see the log; bytes were relayed anyway)")
    print("\n".join(lines), file=sys.stderr)
