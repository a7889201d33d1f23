"""A virtual bootloader on a real pty and a flasher's port on its slave path."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager

from gizdev.board.flash.port import SerialStream, open_stream
from gizdev.board.flash.stm32 import Stm32Bootloader
from gizdev.sim.stm32_bootloader import BootloaderConfig, BootloaderFaults, PtyBootloader, VirtualStm32Bootloader

FLASH = 0x08000000


@contextmanager
def served(
    config: BootloaderConfig | None = None, faults: BootloaderFaults | None = None
) -> Iterator[tuple[PtyBootloader, SerialStream]]:
    with PtyBootloader(VirtualStm32Bootloader(config, faults)) as sim:
        stream = open_stream(sim.path, baudrate=115200, parity="E")
        try:
            yield sim, stream
        finally:
            stream.close()
        assert sim.error is None


def client(stream: SerialStream, timeout_s: float = 1.0) -> Stm32Bootloader:
    # Short sync/answer timeouts only where a test waits for silence on purpose.
    return Stm32Bootloader(stream, timeout_s=timeout_s, erase_timeout_s=5.0)


def firmware(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


class RecordingProgress:
    """A Progress that keeps every call, to check what a user would have seen."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self.out = io.StringIO()

    def start(self, phase: str, total: int) -> None:
        self.events.append((f"start {phase}", total))

    def update(self, done: int) -> None:
        self.events.append(("update", done))

    def finish(self) -> None:
        self.events.append(("finish", 0))

    def phases(self) -> list[tuple[str, int]]:
        return [event for event in self.events if event[0].startswith("start")]
