#!/usr/bin/env python3
"""Benchmark: the latency ``gizdev sniff`` adds to each frame it relays, on pseudo-terminals.

Set-up: two pty pairs. ``gizdev sniff`` runs as its own process (as a user runs it) on the two slave paths, with
``--product`` and ``--json`` (so every frame is fully decoded and printed; stdout goes to /dev/null). This script
plays the MCU on master A and the module on master B: it writes one GoKit report frame (20 bytes, serial
protocol §7 Ex 1, a fresh sn each time) and times how long until the whole frame is read on the other master,
one frame in flight at a time, alternating directions.

Baseline: the same loop over one pty pair without a sniffer (write the master, read the slave), i.e. the wire
as it would be with the MCU and the module connected directly. The added latency is the difference of the
medians; it includes the extra pty hop and the wake-up of the sniffer process, which a real pair of USB adapters
replaces with its own (larger) latency. Printed: median, p90 and p99 of each, and the sniffer's own summary (its
frame count proves it decoded every frame).

    .venv/bin/python tools/bench_sniff.py [--frames 2000] [--product protocols/gokit.json]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import machine

from gizdev.codec.frame import encode_frame
from gizdev.transport import open_pty_pair

REPO = Path(__file__).resolve().parent.parent
EX1_P0 = bytes.fromhex("04050a141e0701263c0202")  # serial protocol §7 Ex 1, the GoKit report body
READ_TIMEOUT_MS = 5000


def read_exactly(fd: int, count: int) -> bytes:
    """Block until ``count`` bytes came from a non-blocking fd."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = b""
    while len(data) < count:
        if not poller.poll(READ_TIMEOUT_MS):
            raise SystemExit(f"no data within {READ_TIMEOUT_MS} ms ({len(data)} of {count} bytes)")
        try:
            data += os.read(fd, count - len(data))
        except BlockingIOError:
            continue
    return data


def one_way(write_fd: int, read_fd: int, frame: bytes) -> float:
    """Seconds from writing ``frame`` on one fd until all of it was read on the other."""
    start = time.perf_counter()
    os.write(write_fd, frame)
    got = read_exactly(read_fd, len(frame))
    elapsed = time.perf_counter() - start
    if got != frame:
        raise SystemExit(f"frame altered: sent {frame.hex()}, got {got.hex()}")
    return elapsed


def frames(count: int) -> list[bytes]:
    return [encode_frame(0x05, n & 0xFF, EX1_P0) for n in range(count)]


def baseline(count: int) -> list[float]:
    with open_pty_pair() as pair:
        return [
            one_way(pair.master_fd, pair.slave_fd, f) if n % 2 == 0 else one_way(pair.slave_fd, pair.master_fd, f)
            for n, f in enumerate(frames(count))
        ]


def through_sniffer(count: int, product: str) -> tuple[list[float], str]:
    with open_pty_pair() as mcu, open_pty_pair() as module:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gizdev.cli.main",
                "sniff",
                "--mcu-side",
                mcu.slave_path,
                "--module-side",
                module.slave_path,
                "--product",
                product,
                "--json",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()  # the sniffer's first line says it is relaying
            if "relaying" not in line:
                raise SystemExit(f"the sniffer did not start: {line}{proc.stderr.read()}")
            # Warm-up frames are not counted: the first ones pay for imports and caches.
            for f in frames(20):
                one_way(mcu.master_fd, module.master_fd, f)
            times = [
                one_way(mcu.master_fd, module.master_fd, f)
                if n % 2 == 0
                else one_way(module.master_fd, mcu.master_fd, f)
                for n, f in enumerate(frames(count))
            ]
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return times, err


def describe(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[int(len(ordered) * 0.9)]
    p99 = ordered[int(len(ordered) * 0.99)]
    return (
        f"  {label:<22} median {statistics.median(times) * 1e6:7.1f} us   p90 {p90 * 1e6:7.1f} us   "
        f"p99 {p99 * 1e6:7.1f} us   ({len(times)} frames)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000, help="frames per measurement (default 2000)")
    parser.add_argument("--product", default=str(REPO / "protocols" / "gokit.json"), help="product schema")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"one-way latency of a 20-byte GoKit report, {args.frames} frames, alternating directions:", flush=True)
    direct = baseline(args.frames)
    print(describe("direct (one pty)", direct), flush=True)
    relayed, summary = through_sniffer(args.frames, args.product)
    print(describe("through gizdev sniff", relayed))
    added = statistics.median(relayed) - statistics.median(direct)
    print(f"  added by the sniffer: {added * 1e6:.1f} us per frame (median)")
    print("sniffer summary:\n" + "\n".join(line for line in summary.splitlines() if line.strip()))


if __name__ == "__main__":
    main()
