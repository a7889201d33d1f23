#!/usr/bin/env python3
"""Benchmark: gizdev's STM32 flasher against stm32loader (PyPI), both writing and verifying the same 64 KiB image
into gizdev's virtual bootloader over a pty, unpaced and paced like a UART at 115200 baud (8E1).

Both do the same work: sync, Get, Get ID, global erase, write 64 KiB in 256-byte blocks, read it all back and
compare. stm32loader always toggles DTR/RTS from its command line, which a pty cannot, so it is driven through
its library with a connection without modem lines (what its docs allow). Needs ``pip install stm32loader``
in the same environment (it is not a gizdev dependency).

    .venv/bin/python tools/bench_flash.py [--repeat 5] [--baud 115200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

from gizdev.board.flash.image import FirmwareImage, Segment
from gizdev.board.flash.port import open_stream
from gizdev.board.flash.stm32 import Stm32Bootloader
from gizdev.board.flash.stm32_flasher import FlashPlan, flash_stm32
from gizdev.sim.stm32_bootloader import PtyBootloader, VirtualStm32Bootloader

FLASH = 0x08000000
SIZE = 64 * 1024


def run_gizdev(path: str, data: bytes) -> None:
    stream = open_stream(path, baudrate=115200, parity="E")
    try:
        image = FirmwareImage((Segment(FLASH, data),), source="bench")
        flash_stm32(Stm32Bootloader(stream), image, FlashPlan(erase="global"))
    finally:
        stream.close()


def run_stm32loader(path: str, data: bytes) -> None:
    import serial  # type: ignore[import-untyped]  # noqa: PLC0415 - optional, see the doc
    from stm32loader.bootloader import (  # type: ignore[import-not-found]  # noqa: PLC0415
        Stm32Bootloader as Loader,
    )

    # A plain pyserial port has no enable_reset/enable_boot0, so stm32loader skips the modem lines.
    port = serial.Serial(path, baudrate=115200, parity="N", timeout=5)
    try:
        loader = Loader(port, device_family="F1", verbosity=0)
        loader.reset_from_system_memory()
        version = loader.get()
        assert version, "no answer to Get"
        loader.get_id()
        loader.erase_memory(None)
        loader.write_memory_data(FLASH, data)
        readback = loader.read_memory_data(FLASH, len(data))
        loader.verify_data(readback, data)
    finally:
        port.close()


def measure(
    flashers: dict[str, Callable[[str, bytes], None]], data: bytes, repeat: int, baud: int | None
) -> dict[str, float]:
    """Median seconds per flasher; runs alternate, so that a busy moment of the machine hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in flashers}
    for _ in range(repeat):
        for name, flasher in flashers.items():
            bootloader = VirtualStm32Bootloader()
            with PtyBootloader(bootloader, baud=baud) as sim:
                start = time.perf_counter()
                flasher(sim.path, data)
                times[name].append(time.perf_counter() - start)
                with sim.locked():
                    assert bytes(bootloader.flash) == data, f"{name}: flash content differs"
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="unpaced runs per flasher (the median is shown)")
    parser.add_argument("--baud", type=int, default=115200, help="UART speed for the paced case")
    args = parser.parse_args()
    data = random.Random(0).randbytes(SIZE)
    flashers: dict[str, Callable[[str, bytes], None]] = {"gizdev": run_gizdev}
    try:
        import stm32loader  # type: ignore[import-not-found]  # noqa: F401, PLC0415
    except ImportError:
        print("stm32loader not installed (pip install stm32loader): measuring gizdev only", file=sys.stderr)
    else:
        flashers["stm32loader"] = run_stm32loader
    print(f"write + verify {SIZE // 1024} KiB (global erase); unpaced: median of {args.repeat}, paced: one run")
    for pace in (None, args.baud):
        label = "pty, unpaced" if pace is None else f"pty paced at {pace} baud 8E1"
        for name, seconds in measure(flashers, data, args.repeat if pace is None else 1, pace).items():
            print(f"  {label:<28} {name:<12} {seconds:6.2f} s  {SIZE / 1024 / seconds:7.1f} KiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
