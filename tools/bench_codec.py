#!/usr/bin/env python3
"""Benchmark: GoKit report frames/s through gizdev's codec beside a hand-written ``struct`` baseline.

Both sides do the same work in the same process: encode = app values -> stuffed wire frame; decode = a buffer of
back-to-back wire frames -> frames (header search, unstuffing, checksum) -> a dict of the 15 app values. The
baseline knows the GoKit layout by heart; gizdev reads it from the schema. Reported: the median of several runs,
and gizdev as a fraction of the baseline (target >= 0.1x each way). Uses only gizdev's public API.

    .venv/bin/python tools/bench_codec.py [--frames N] [--runs N] [--product protocols/gokit.json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import machine

import gizdev

COLORS = ("Customize", "Yellow", "Purple", "Pink")
STATUS = struct.Struct(">BBBBBBBBBB")
HEADER = struct.Struct(">HHBBH")  # FF FF, len, cmd, sn, flags


def random_values(rng: random.Random) -> dict[str, Any]:
    return {
        "LED_OnOff": rng.random() < 0.5,
        "LED_Color": rng.choice(COLORS),
        "LED_R": rng.randint(0, 254),
        "LED_G": rng.randint(0, 254),
        "LED_B": rng.randint(0, 254),
        "Motor_Speed": rng.randint(-5, 5),
        "Infrared": rng.random() < 0.5,
        "Temperature": rng.randint(-13, 187),
        "Humidity": rng.randint(0, 100),
        "Alert_1": rng.random() < 0.5,
        "Alert_2": rng.random() < 0.5,
        "Fault_LED": rng.random() < 0.5,
        "Fault_Motor": rng.random() < 0.5,
        "Fault_TemHum": rng.random() < 0.5,
        "Fault_IR": rng.random() < 0.5,
    }


# ---- the hand-written baseline ---------------------------------------------------------------------------


def baseline_encode(sn: int, v: dict[str, Any]) -> bytes:
    status = STATUS.pack(
        int(v["LED_OnOff"]) | COLORS.index(v["LED_Color"]) << 1,
        v["LED_R"],
        v["LED_G"],
        v["LED_B"],
        v["Motor_Speed"] + 5,
        int(v["Infrared"]),
        v["Temperature"] + 13,
        v["Humidity"],
        int(v["Alert_1"]) | int(v["Alert_2"]) << 1,
        int(v["Fault_LED"]) | int(v["Fault_Motor"]) << 1 | int(v["Fault_TemHum"]) << 2 | int(v["Fault_IR"]) << 3,
    )
    body = HEADER.pack(0xFFFF, 16, 5, sn, 0)[2:] + b"\x04" + status
    logical = b"\xff\xff" + body + bytes((sum(body) & 0xFF,))
    return logical[:2] + logical[2:].replace(b"\xff", b"\xff\x55")


def baseline_decode(buffer: bytes) -> list[dict[str, Any]]:
    out = []
    position = 0
    while True:
        start = buffer.find(b"\xff\xff", position)
        if start < 0:
            return out
        (length,) = struct.unpack_from(">H", buffer, start + 2)
        end = start + 4 + length
        chunk = buffer[start + 2 : end]
        if b"\xff" in chunk:  # stuffed frame: every logical FF took two wire bytes
            chunk = buffer[start + 2 : start + 2 + 2 * (2 + length)].replace(b"\xff\x55", b"\xff")[: 2 + length]
            end = start + 2 + len(chunk) + chunk.count(b"\xff")
        if (sum(chunk[:-1]) & 0xFF) != chunk[-1]:
            position = start + 2
            continue
        b0, r, g, b, motor, ir, temp, hum, alerts, faults = STATUS.unpack_from(chunk, 7)
        out.append(
            {
                "LED_OnOff": b0 & 1 == 1,
                "LED_Color": COLORS[b0 >> 1 & 3],
                "LED_R": r,
                "LED_G": g,
                "LED_B": b,
                "Motor_Speed": motor - 5,
                "Infrared": ir & 1 == 1,
                "Temperature": temp - 13,
                "Humidity": hum,
                "Alert_1": alerts & 1 == 1,
                "Alert_2": alerts >> 1 & 1 == 1,
                "Fault_LED": faults & 1 == 1,
                "Fault_Motor": faults >> 1 & 1 == 1,
                "Fault_TemHum": faults >> 2 & 1 == 1,
                "Fault_IR": faults >> 3 & 1 == 1,
            }
        )
        position = end


# ---- gizdev ------------------------------------------------------------------------------------------------


def gizdev_encoder(product: gizdev.Product) -> Callable[[int, dict[str, Any]], bytes]:
    encode_frame, encode = gizdev.encode_frame, product.encode

    def run(sn: int, values: dict[str, Any]) -> bytes:
        return encode_frame(0x05, sn, encode("report", values))

    return run


def gizdev_decoder(product: gizdev.Product) -> Callable[[bytes], list[dict[str, Any]]]:
    decode, frame_type = product.decode, gizdev.Frame

    def run(buffer: bytes) -> list[dict[str, Any]]:
        return [decode(item.payload).attrs for item in gizdev.Deframer().feed(buffer) if isinstance(item, frame_type)]

    return run


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50_000, help="frames per run (default 50000)")
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement; the median is reported")
    parser.add_argument("--product", default=str(Path(__file__).parent.parent / "protocols" / "gokit.json"))
    args = parser.parse_args()

    product = gizdev.load_product(args.product)
    rng = random.Random(1)
    values = [random_values(rng) for _ in range(256)]
    jobs = [(index & 0xFF, values[index & 0xFF]) for index in range(args.frames)]

    encoders = {"baseline": baseline_encode, "gizdev": gizdev_encoder(product)}
    buffers = {name: b"".join(encode(sn, v) for sn, v in jobs) for name, encode in encoders.items()}
    if buffers["baseline"] != buffers["gizdev"]:
        raise SystemExit("the baseline and gizdev disagree on the wire bytes; not benchmarking")
    buffer = buffers["gizdev"]
    decoders = {"baseline": baseline_decode, "gizdev": gizdev_decoder(product)}
    expected = [v for _, v in jobs]
    for name, decode in decoders.items():
        if decode(buffer) != expected:
            raise SystemExit(f"{name} decoder does not give back the encoded values; not benchmarking")

    results: dict[tuple[str, str], list[float]] = {}
    for run in range(args.runs):  # interleaved, so that machine noise hits both sides alike
        for name, encode in encoders.items():
            seconds = timed(lambda encode=encode: [encode(sn, v) for sn, v in jobs])
            results.setdefault(("encode", name), []).append(args.frames / seconds)
        for name, decode in decoders.items():
            seconds = timed(lambda decode=decode: decode(buffer))
            results.setdefault(("decode", name), []).append(args.frames / seconds)
        print(f"run {run + 1}/{args.runs} done", flush=True)

    print(f"\nmachine: {machine()}")
    print(
        f"GoKit report frames ({len(buffer) // args.frames} bytes on the wire), {args.frames} per run, "
        f"median of {args.runs} runs\n"
    )
    print(f"{'':28}{'baseline':>14}{'gizdev':>14}{'ratio':>9}")
    for what, label in (("encode", "encode (values -> wire)"), ("decode", "deframe + decode")):
        base = statistics.median(results[(what, "baseline")])
        ours = statistics.median(results[(what, "gizdev")])
        print(f"{label:28}{base:>12,.0f}/s{ours:>12,.0f}/s{ours / base:>8.2f}x")


if __name__ == "__main__":
    main()
