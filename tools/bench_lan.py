#!/usr/bin/env python3
"""Benchmark: LAN control round trip (0x0093 -> 0x0094) through the bridge's LAN server to a virtual MCU.

Wiring, all in one process and all real: an app on a TCP socket to 127.0.0.1 -> ``LanServer`` ->
``ModuleSessionLanDevice`` -> ``ModuleSession`` on the slave end of a pty pair (opened with pyserial) -> the
virtual MCU on the master end. The app logs in, then sends one 0x0093 at a time (a read, P0 ``02``, or with
``--write`` a write toggling LED_OnOff) and waits for the 0x0094 carrying the same sn; each round trip is timed
from the write to the socket to the last byte of the reply. Printed: median, p90, p99 and max over ``--requests``
requests (after a warm-up), with the pty unthrottled by default or paced at ``--baud`` (8N1) to show what a real
UART adds. Uses only gizdev's public modules.

    .venv/bin/python tools/bench_lan.py [--requests 1000] [--baud 9600] [--write] [--product PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import sys
import time
from pathlib import Path

from benchlib import machine

from gizdev import load_product
from gizdev.bridge.lan import LanIdentity, LanServer, LanSettings
from gizdev.bridge.lan_device import BindingWindow, ModuleSessionLanDevice, forward_reports
from gizdev.codec.envelope import Envelope, EnvelopeDeframer, encode_envelope
from gizdev.codec.p0 import Product
from gizdev.link import ModuleSession
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_port, open_pty_pair

WARMUP = 50
PASSCODE = "BENCHBENCH"


class App:
    """The LAN app side: one TCP connection, envelopes in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.deframer = EnvelopeDeframer()
        self.pending: list[Envelope] = []

    async def recv(self) -> Envelope:
        while not self.pending:
            data = await self.reader.read(65536)
            if not data:
                raise SystemExit("the LAN server closed the connection")
            for item in self.deframer.feed(data):
                if not isinstance(item, Envelope):
                    raise SystemExit(f"bad bytes from the LAN server: {item}")
                self.pending.append(item)
        return self.pending.pop(0)

    async def reply_to(self, sn: int) -> Envelope:
        """The 0x0094 with this sn (0x0091 reports that come in between are skipped)."""
        while True:
            envelope = await self.recv()
            if envelope.cmd == 0x0094:
                if envelope.sn != sn:
                    raise SystemExit(f"0x0094 with sn {envelope.sn}, expected {sn}")
                return envelope


async def measure(product: Product, requests: int, baud: int | None, write: bool) -> list[float]:
    mcu = VirtualMcu(product, name="bench-mcu")
    module = ModuleSession(product, name="bench-module")
    identity = LanIdentity(did="benchdid", mac=bytes(6), product_key="", passcode=PASSCODE)
    settings = LanSettings(hosts=("127.0.0.1",), udp_port=0, tcp_port=0, broadcast_rounds=0)
    with open_pty_pair() as pair:
        _, mcu_link = await pair.connect_master(mcu.protocol_factory, throttle_baud=baud)
        _, module_link = await open_port(
            pair.slave_path, module.protocol_factory, baudrate=baud or 115200, throttle_baud=baud
        )
        pair.close_slave()
        mcu.start()
        server = LanServer(ModuleSessionLanDevice(module, identity, BindingWindow(0)), settings)
        forward: asyncio.Task[None] | None = None
        try:
            await module.handshake()
            await server.start()
            forward = asyncio.create_task(forward_reports(module, server.push_report))
            reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_addresses[0][1])
            app = App(reader, writer)
            writer.write(encode_envelope(0x0008, len(PASSCODE).to_bytes(2, "big") + PASSCODE.encode()))
            login = await app.recv()
            if (login.cmd, login.payload) != (0x0009, b"\x00"):
                raise SystemExit(f"login failed: {login}")
            times: list[float] = []
            for sn in range(WARMUP + requests):
                p0 = product.encode("write", {"LED_OnOff": bool(sn & 1)}) if write else product.encode("read")
                request = encode_envelope(0x0093, p0, sn=sn)
                started = time.perf_counter()
                writer.write(request)
                await app.reply_to(sn)
                elapsed = time.perf_counter() - started
                if sn >= WARMUP:
                    times.append(elapsed)
                if requests >= 10 and (sn - WARMUP + 1) % (requests // 10) == 0 and sn >= WARMUP:
                    print(f"  {sn - WARMUP + 1}/{requests}", flush=True)
            if server.stats.control_failures or module_link.stats.resends or mcu_link.stats.resends:
                raise SystemExit(f"not clean: {server.stats}, {module_link.stats}, {mcu_link.stats}")
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            return times
        finally:
            if forward is not None:
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forward
            await server.close()
            await module.close()
            await mcu.close()
            for link in (module_link, mcu_link):
                await asyncio.wait_for(link.wait_closed(), 5)


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    index = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="timed 0x0093 requests (after a warm-up)")
    parser.add_argument("--baud", type=int, default=None, help="pace the pty like a UART at this rate (8N1)")
    parser.add_argument("--write", action="store_true", help="time writes (LED_OnOff toggled) instead of reads")
    parser.add_argument("--product", default=str(Path(__file__).parent.parent / "protocols" / "gokit.json"))
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be >= 1")
    product = load_product(args.product)
    kind = "write" if args.write else "read"
    wire = f"pty paced at {args.baud} baud" if args.baud else "unthrottled pty"
    print(f"LAN 0x0093 -> 0x0094 round trip, {kind}, {args.requests} requests, {wire}")
    print(f"machine: {machine()}", flush=True)
    times = sorted(asyncio.run(measure(product, args.requests, args.baud, args.write)))
    ms = [t * 1000 for t in times]
    print(
        f"median {statistics.median(ms):.3f} ms, p90 {percentile(ms, 0.90):.3f} ms, "
        f"p99 {percentile(ms, 0.99):.3f} ms, max {ms[-1]:.3f} ms, mean {statistics.fmean(ms):.3f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
