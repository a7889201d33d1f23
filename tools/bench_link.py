#!/usr/bin/env python3
"""Benchmark: acknowledged GoKit status reports per second through a real pty pair throttled to a UART's rate.

The virtual MCU sits on the pty master, the module session on the slave path (opened with pyserial, as a USB
serial port would be); both directions are paced by the transport throttle. The MCU sends reports back to back,
each waiting for its 0x06 ACK before the next one, exactly as the link does. The wire's theoretical maximum
for that cycle is one report frame plus one ACK frame per report at 10 bits per byte (8N1)::

    max_frames_per_s = baud / 10 / (report_bytes + ack_bytes)

(byte counts as they went on the wire, 0xFF stuffing included). Printed per rate: the median frames/s of
several runs, that maximum and the ratio (target >= 95%); the emulation's own ceiling (the throttle hands a byte
over when the wire would *start* it, so each frame is complete one byte time early: report + ACK - 2 bytes per
cycle) and the ratio to it; the time per cycle lost beyond the emulated wire; and an unthrottled run of the same
loop, which shows what one report/ACK cycle costs with no wire at all (link, codec, pty and event loop). Uses
only gizdev's public modules.

    .venv/bin/python tools/bench_link.py [--bauds 9600 115200] [--runs 5] [--seconds 3] [--product PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import machine

from gizdev import load_product
from gizdev.codec.p0 import Product
from gizdev.link import ModuleSession, SerialLink
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_port, open_pty_pair

BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit
WARMUP_REPORTS = 20
UNTHROTTLED_REPORTS = 3000


@dataclass
class Run:
    reports: int
    seconds: float
    mcu_bytes: int  # report bytes on the wire (MCU -> module)
    module_bytes: int  # ACK bytes on the wire (module -> MCU)

    @property
    def frames_per_s(self) -> float:
        return self.reports / self.seconds

    @property
    def bytes_per_cycle(self) -> float:
        return (self.mcu_bytes + self.module_bytes) / self.reports


def count_bytes(link: SerialLink, counter: list[int]) -> None:
    """Count what the link puts on the wire, behind whatever fault filter it already has."""
    inner = link.outgoing_filter

    def outgoing(wire: bytes, is_ack: bool) -> bytes | None:
        out = inner(wire, is_ack) if inner is not None else wire
        if out is not None:
            counter[0] += len(out)
        return out

    link.outgoing_filter = outgoing


def report_values(product: Product, index: int) -> dict[str, Any]:
    """A changing status, so that every report carries different bytes (as a live board's would)."""
    return {"LED_R": index % 255, "LED_G": (index * 7) % 255, "Temperature": index % 50, "Humidity": index % 100}


async def module_side(product_path: str, slave_path: str, baud: int | None) -> None:
    """The module end in its own process (--split): handshake, then acknowledge reports until killed."""
    module = ModuleSession(load_product(product_path), name="bench-module")
    await open_port(slave_path, module.protocol_factory, baudrate=baud or 115200, throttle_baud=baud)
    await module.handshake()
    while True:  # drain, so that the queue does not grow for the whole run
        await module.reports_queue.get()


async def split_run(product: Product, product_path: str, baud: int | None, seconds: float) -> Run:
    """As one_run, with the module in a second process: on a gateway the MCU is a separate chip, so the
    bridge's event loop does not share its time with the board's."""
    mcu = VirtualMcu(product, name="bench-mcu")
    with open_pty_pair() as pair:
        _, mcu_link = await pair.connect_master(mcu.protocol_factory, throttle_baud=baud)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--module-side",
            pair.slave_path,
            "--product",
            product_path,
            *(["--bauds", str(baud)] if baud else []),
        )
        try:
            while mcu.session.link is None or mcu_link.stats.frames_in == 0:  # the child's handshake
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            pair.close_slave()
            for index in range(WARMUP_REPORTS):
                await mcu.session.report({**mcu.state, **report_values(product, index)})
            mcu_bytes, module_bytes = [0], [0]
            count_bytes(mcu_link, mcu_bytes)
            received = mcu_link.data_received

            def counting(data: bytes) -> None:
                module_bytes[0] += len(data)
                received(data)

            mcu_link.data_received = counting  # type: ignore[method-assign]
            budget = max(20, int(seconds * baud / BITS_PER_BYTE / 30)) if baud else UNTHROTTLED_REPORTS
            started = time.perf_counter()
            for index in range(budget):
                await mcu.session.report({**mcu.state, **report_values(product, index)})
            elapsed = time.perf_counter() - started
            if mcu_link.stats.resends or mcu_link.stats.bad_frames:
                raise SystemExit(f"the wire was not clean: {mcu_link.stats}; the figures would be wrong")
            return Run(budget, elapsed, mcu_bytes[0], module_bytes[0])
        finally:
            child.terminate()
            await child.wait()
            await mcu.close()
            await asyncio.wait_for(mcu_link.wait_closed(), 5)


async def one_run(product: Product, baud: int | None, seconds: float) -> Run:
    """Back-to-back acknowledged reports for about ``seconds``; baud None = unthrottled."""
    mcu = VirtualMcu(product, name="bench-mcu")
    module = ModuleSession(product, name="bench-module")
    with open_pty_pair() as pair:
        _, mcu_link = await pair.connect_master(mcu.protocol_factory, throttle_baud=baud)
        _, module_link = await open_port(
            pair.slave_path, module.protocol_factory, baudrate=baud or 115200, throttle_baud=baud
        )
        pair.close_slave()  # the module's own fd keeps the line up from now on
        try:
            await module.handshake()
            for index in range(WARMUP_REPORTS):
                await mcu.session.report({**mcu.state, **report_values(product, index)})
            while not module.reports_queue.empty():
                module.reports_queue.get_nowait()
            mcu_bytes, module_bytes = [0], [0]
            count_bytes(mcu_link, mcu_bytes)
            count_bytes(module_link, module_bytes)
            # About `seconds` of traffic at the wire's rate (30 bytes a cycle); timed from the first report out to
            # the last ACK in.
            budget = max(20, int(seconds * baud / BITS_PER_BYTE / 30)) if baud else UNTHROTTLED_REPORTS
            started = time.perf_counter()
            for index in range(budget):
                sent = {**mcu.state, **report_values(product, index)}
                await mcu.session.report(sent)
            elapsed = time.perf_counter() - started
            received = [module.reports_queue.get_nowait() for _ in range(module.reports_queue.qsize())]
            if len(received) != budget or received[-1].attrs != sent:
                raise SystemExit(f"the module got {len(received)} reports of {budget}, or not what was sent")
            if module_link.stats.bad_frames or mcu_link.stats.resends or module_link.stats.duplicates:
                raise SystemExit(
                    f"the wire was not clean: {module_link.stats} / {mcu_link.stats}; the figures would be wrong"
                )
            return Run(budget, elapsed, mcu_bytes[0], module_bytes[0])
        finally:
            await module.close()
            await mcu.close()
            for link in (module_link, mcu_link):
                await asyncio.wait_for(link.wait_closed(), 5)


def measure(
    product: Product, product_path: str, baud: int | None, seconds: float, runs: int, *, split: bool
) -> list[Run]:
    results = []
    label = f"{baud} baud" if baud else "unthrottled"
    for number in range(runs):
        run = split_run(product, product_path, baud, seconds) if split else one_run(product, baud, seconds)
        result = asyncio.run(run)
        results.append(result)
        print(f"  {label} run {number + 1}/{runs}: {result.frames_per_s:,.1f} frames/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bauds", type=int, nargs="+", default=[9600, 115200], help="rates to measure")
    parser.add_argument("--runs", type=int, default=5, help="runs per rate; the median is reported")
    parser.add_argument("--seconds", type=float, default=3.0, help="approximate length of one run")
    parser.add_argument("--product", default=str(Path(__file__).parent.parent / "protocols" / "gokit.json"))
    parser.add_argument(
        "--split",
        action="store_true",
        help="run the module in a second process (default: one event loop for both ends, which measured faster "
        "on a 2-vCPU VM, where waking another process costs more than sharing a loop)",
    )
    parser.add_argument("--module-side", metavar="PTY", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.module_side:
        logging.basicConfig(level=logging.ERROR)
        baud = args.bauds[0] if len(args.bauds) == 1 else None
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(module_side(args.product, args.module_side, baud))
        return
    # The library logs the MCU going offline at every teardown; keep the figures readable.
    logging.basicConfig(level=logging.ERROR)
    product = load_product(args.product)

    print(f"machine: {machine()}")
    print(
        f"{product.name}: back-to-back acknowledged status reports (0x05 -> 0x06) over a pty pair, both directions "
        f"throttled; median of {args.runs} runs of about {args.seconds:g} s\n",
        flush=True,
    )
    rows = []
    for baud in args.bauds:
        results = measure(product, args.product, baud, args.seconds, args.runs, split=args.split)
        measured = statistics.median(run.frames_per_s for run in results)
        cycle_bytes = statistics.median(run.bytes_per_cycle for run in results)
        rows.append((baud, measured, cycle_bytes))
    free = statistics.median(
        run.frames_per_s for run in measure(product, args.product, None, 0.0, args.runs, split=args.split)
    )

    print(
        f"\n{'':12}{'measured':>12}{'bytes/cycle':>13}{'wire max':>12}{'ratio':>8}"
        f"{'emulation max':>15}{'ratio':>8}{'lost/cycle':>12}"
    )
    for baud, measured, cycle_bytes in rows:
        maximum = baud / BITS_PER_BYTE / cycle_bytes
        ceiling = baud / BITS_PER_BYTE / (cycle_bytes - 2)
        lost_us = (1 / measured - 1 / ceiling) * 1e6
        print(
            f"{f'{baud} baud':12}{measured:>10,.1f}/s{cycle_bytes:>13.2f}{maximum:>10,.1f}/s{measured / maximum:>8.1%}"
            f"{ceiling:>13,.1f}/s{measured / ceiling:>8.1%}{lost_us:>9,.0f} us"
        )
    print(f"{'unthrottled':12}{free:>10,.1f}/s   (one report/ACK cycle with no wire: {1e6 / free:,.0f} us)")
    print(
        "\nwire max = baud / 10 / (report + ACK bytes): one report and its ACK per cycle, 10 bits a byte.\n"
        "The throttle hands each byte over when the wire would start sending it, so a frame is complete at the\n"
        "receiver one byte time before a real UART's stop bit; emulation max = baud / 10 / (report + ACK - 2).\n"
        "lost/cycle = time per cycle beyond the emulated wire: link, codec, pty and event-loop latency."
    )


if __name__ == "__main__":
    main()
