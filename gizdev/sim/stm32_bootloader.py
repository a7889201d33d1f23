"""A virtual STM32 ROM UART bootloader (AN3155) with a memory model and fault injection, for testing flashers.

:class:`VirtualStm32Bootloader` is pure (sans-I/O): :meth:`~VirtualStm32Bootloader.feed` takes the bytes a host
sent and returns the bytes the bootloader answers. :class:`PtyBootloader` serves one on a pseudo-terminal from a
thread, so that a flasher opens the slave path exactly like a USB serial adapter.

The memory model follows the hardware where a flasher can get it wrong: flash starts erased (0xFF); Write Memory
to flash must be word aligned, a multiple of 4 bytes long, and hit only erased half-words, else the whole write
is refused with a NACK (as the real bootloader does on a programming error); reads and writes outside the flash,
the RAM and the flash-size register are refused. Erase and Extended Erase erase pages or everything. Go records
the address and stops answering, as the started program would own the UART.

The session is a generator that asks for the number of bytes it needs next; ``feed`` hands them over as they
arrive, so a command split over many reads (or many commands in one read) is the same to it.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field

from gizdev.protocol.stm32_boot import (
    ACK,
    CHIPS,
    CMD_ERASE,
    CMD_EXTENDED_ERASE,
    CMD_GET,
    CMD_GET_ID,
    CMD_GET_VERSION,
    CMD_GO,
    CMD_READ_MEMORY,
    CMD_WRITE_MEMORY,
    COMMAND_NAMES,
    ERASE_GLOBAL,
    EXTENDED_ERASE_BANK1,
    EXTENDED_ERASE_MASS,
    FLASH_BASE,
    NACK,
    SYNC,
    xor,
)
from gizdev.transport.pty import PtyPair, open_pty_pair

__all__ = ["BootloaderConfig", "BootloaderFaults", "BootloaderStats", "PtyBootloader", "VirtualStm32Bootloader"]

_LOGGER = logging.getLogger(__name__)

RAM_BASE = 0x2000_0000
#: The F1 flash-size register, used when the chip ID is not in the chip table.
DEFAULT_FLASH_SIZE_REGISTER = 0x1FFF_F7E0

_Session = Generator[int, bytes, None]


@dataclass(frozen=True, slots=True)
class BootloaderConfig:
    """The chip the bootloader runs on; the default is an STM32F103C8 (medium density, 64 KiB, 1 KiB pages)."""

    chip_id: int = 0x410
    flash_bytes: int = 64 * 1024
    page_bytes: int = 1024
    ram_bytes: int = 20 * 1024
    version: int = 0x22  # the F1 bootloader's protocol version 2.2
    extended_erase: bool = False  # F1 bootloaders offer Erase (0x43) only; F0/F3/F4/G0 offer 0x44 instead
    #: Flash contents at power-up (the rest erased); e.g. a previous firmware, to test backups.
    initial_flash: bytes = b""

    @property
    def commands(self) -> tuple[int, ...]:
        """The command bytes Get lists, in the bootloader's order."""
        erase = CMD_EXTENDED_ERASE if self.extended_erase else CMD_ERASE
        return (CMD_GET, CMD_GET_VERSION, CMD_GET_ID, CMD_READ_MEMORY, CMD_GO, CMD_WRITE_MEMORY, erase)

    @property
    def flash_size_register(self) -> int:
        """Where this chip keeps its flash size in KiB."""
        chip = CHIPS.get(self.chip_id)
        if chip is not None and chip.flash_size_register is not None:
            return chip.flash_size_register
        return DEFAULT_FLASH_SIZE_REGISTER


@dataclass(slots=True)
class BootloaderFaults:
    """Misbehaviour on purpose. Ordinals count from 1 over the whole session (retries count too)."""

    nack_writes: frozenset[int] = frozenset()  # NACK these Write Memory commands at the data stage
    corrupt_reads: frozenset[int] = frozenset()  # flip a bit in the data of these Read Memory commands
    nack_commands: frozenset[int] = frozenset()  # NACK these command bytes at once (as if unsupported)
    silent: bool = False  # answer nothing (an unpowered board, BOOT0 low, wrong port)
    drop_sync: bool = False  # ignore the 0x7F sync byte (autobaud never happens)
    silent_after_writes: int | None = None  # stop answering after this many Write Memory commands (power lost)


@dataclass(slots=True)
class BootloaderStats:
    """What the bootloader saw: for tests and the sim's final report."""

    syncs: int = 0
    commands: dict[str, int] = field(default_factory=dict)
    nacks: int = 0
    writes: int = 0
    reads: int = 0
    pages_erased: list[int] = field(default_factory=list)
    mass_erases: int = 0
    go_address: int | None = None


class _Refused(Exception):
    """Inside the session only: answer NACK and wait for the next command."""


class VirtualStm32Bootloader:
    """The bootloader's state: memory, protocol position, faults and counters."""

    def __init__(self, config: BootloaderConfig | None = None, faults: BootloaderFaults | None = None) -> None:
        self.config = config or BootloaderConfig()
        self.faults = faults or BootloaderFaults()
        self.stats = BootloaderStats()
        if self.config.flash_bytes % self.config.page_bytes:
            raise ValueError("the flash size must be a multiple of the page size")
        if len(self.config.initial_flash) > self.config.flash_bytes:
            raise ValueError("the initial flash contents are larger than the flash")
        self.flash = bytearray(b"\xff" * self.config.flash_bytes)
        self.flash[: len(self.config.initial_flash)] = self.config.initial_flash
        self.ram = bytearray(self.config.ram_bytes)
        size_kib = (self.config.flash_bytes // 1024).to_bytes(2, "little")
        self._regions: list[tuple[int, bytearray, str]] = [
            (FLASH_BASE, self.flash, "flash"),
            (RAM_BASE, self.ram, "ram"),
            (self.config.flash_size_register, bytearray(size_kib), "rom"),
        ]
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._session: _Session = self._run()
        self._need = next(self._session)

    # -- the byte interface -----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the host; return the answer bytes (possibly none)."""
        self._inbox += data
        while len(self._inbox) >= self._need:
            chunk = bytes(self._inbox[: self._need])
            del self._inbox[: self._need]
            self._need = self._session.send(chunk)
        out = bytes(self._outbox)
        self._outbox.clear()
        if self.faults.silent:
            return b""
        return out

    @property
    def started(self) -> bool:
        """True once Go handed control to the program."""
        return self.stats.go_address is not None

    # -- the session --------------------------------------------------------------------------------------------

    def _run(self) -> _Session:
        while (yield 1) != bytes([SYNC]) or self.faults.drop_sync:
            pass  # noise before autobaud is not answered
        self.stats.syncs += 1
        self._outbox.append(ACK)
        while self.stats.go_address is None:
            command, complement = yield 2
            try:
                if complement != command ^ 0xFF or command not in self.config.commands:
                    raise _Refused(f"command 0x{command:02x} 0x{complement:02x}")
                name = COMMAND_NAMES[command]
                self.stats.commands[name] = self.stats.commands.get(name, 0) + 1
                if command in self.faults.nack_commands:
                    raise _Refused(f"{name}: refused by fault plan")
                self._outbox.append(ACK)
                yield from self._handle(command)
            except _Refused as refusal:
                _LOGGER.debug("bootloader: NACK: %s", refusal)
                self.stats.nacks += 1
                self._outbox.append(NACK)
        while True:  # the program runs and owns the UART; the bootloader hears nothing more
            yield 1

    def _handle(self, command: int) -> _Session:
        if command == CMD_GET:
            commands = self.config.commands
            self._outbox += bytes([len(commands), self.config.version, *commands, ACK])
        elif command == CMD_GET_VERSION:
            self._outbox += bytes([self.config.version, 0x00, 0x00, ACK])
        elif command == CMD_GET_ID:
            self._outbox += bytes([0x01, *self.config.chip_id.to_bytes(2, "big"), ACK])
        elif command == CMD_READ_MEMORY:
            yield from self._read_memory()
        elif command == CMD_WRITE_MEMORY:
            yield from self._write_memory()
        elif command == CMD_GO:
            address = yield from self._address()
            self._outbox.append(ACK)
            self.stats.go_address = address
            _LOGGER.info("bootloader: Go 0x%08x", address)
        elif command == CMD_ERASE:
            yield from self._erase()
        else:
            yield from self._extended_erase()

    def _address(self) -> Generator[int, bytes, int]:
        raw = yield 5
        if xor(raw[:4]) != raw[4]:
            raise _Refused(f"address checksum [{raw.hex()}]")
        address = int.from_bytes(raw[:4], "big")
        self._region(address, 1)
        return address

    def _region(self, address: int, length: int) -> tuple[bytearray, int, str]:
        for base, memory, kind in self._regions:
            if base <= address and address + length <= base + len(memory):
                return memory, address - base, kind
        raise _Refused(f"{length} bytes at 0x{address:08x} lie outside memory")

    def _read_memory(self) -> _Session:
        address = yield from self._address()
        self._outbox.append(ACK)
        count, complement = yield 2
        if complement != count ^ 0xFF:
            raise _Refused(f"read count 0x{count:02x} 0x{complement:02x}")
        memory, offset, _ = self._region(address, count + 1)
        self.stats.reads += 1
        data = bytearray(memory[offset : offset + count + 1])
        if self.stats.reads in self.faults.corrupt_reads:
            data[len(data) // 2] ^= 0x10
        self._outbox.append(ACK)
        self._outbox += data

    def _write_memory(self) -> _Session:
        address = yield from self._address()
        self._outbox.append(ACK)
        (count,) = yield 1
        data = yield count + 1
        (checksum,) = yield 1
        self.stats.writes += 1
        ordinal = self.stats.writes
        limit = self.faults.silent_after_writes
        if limit is not None and ordinal > limit:
            self.faults.silent = True
        if checksum != xor(bytes([count]) + data):
            raise _Refused(f"write data checksum 0x{checksum:02x}")
        if ordinal in self.faults.nack_writes:
            raise _Refused(f"write #{ordinal} refused by fault plan")
        memory, offset, kind = self._region(address, len(data))
        if kind == "rom":
            raise _Refused(f"0x{address:08x} is read-only")
        if kind == "flash":
            if address % 4 or len(data) % 4:
                raise _Refused(f"flash write of {len(data)} bytes at 0x{address:08x} is not word aligned")
            if any(byte != 0xFF for byte in memory[offset : offset + len(data)]):
                raise _Refused(f"flash at 0x{address:08x} is not erased")
        memory[offset : offset + len(data)] = data
        self._outbox.append(ACK)

    def _erase(self) -> _Session:
        (count,) = yield 1
        if count == ERASE_GLOBAL:
            (check,) = yield 1
            if check != 0x00:
                raise _Refused(f"global erase checksum 0x{check:02x}")
            self._mass_erase()
            return
        pages = yield count + 1
        (checksum,) = yield 1
        if checksum != xor(bytes([count]) + pages):
            raise _Refused(f"erase checksum 0x{checksum:02x}")
        self._erase_pages(list(pages))

    def _extended_erase(self) -> _Session:
        head = yield 2
        code = int.from_bytes(head, "big")
        if code >= 0xFFF0:
            (checksum,) = yield 1
            if checksum != xor(head) or code not in (EXTENDED_ERASE_MASS, EXTENDED_ERASE_BANK1):
                raise _Refused(f"special erase 0x{code:04x} checksum 0x{checksum:02x}")
            self._mass_erase()  # one bank: bank 1 is all of the flash
            return
        body = yield 2 * (code + 1)
        (checksum,) = yield 1
        if checksum != xor(head + body):
            raise _Refused(f"extended erase checksum 0x{checksum:02x}")
        self._erase_pages([int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2)])

    def _mass_erase(self) -> None:
        self.flash[:] = b"\xff" * len(self.flash)
        self.stats.mass_erases += 1
        self._outbox.append(ACK)

    def _erase_pages(self, pages: list[int]) -> None:
        page_bytes = self.config.page_bytes
        if any(page >= len(self.flash) // page_bytes for page in pages):
            raise _Refused(f"erase of pages {pages} beyond the flash")
        for page in pages:
            self.flash[page * page_bytes : (page + 1) * page_bytes] = b"\xff" * page_bytes
        self.stats.pages_erased += pages
        self._outbox.append(ACK)


class PtyBootloader:
    """Serves a virtual bootloader on a new pty from a thread; ``path`` is what a flasher opens."""

    def __init__(
        self, bootloader: VirtualStm32Bootloader, pair: PtyPair | None = None, *, baud: int | None = None
    ) -> None:
        self.bootloader = bootloader
        # A pty moves bytes at memory speed; with ``baud`` each byte costs its time on an 8E1 wire (11 bits),
        # both ways, so that timings come out as on a real UART.
        self._byte_s = 11 / baud if baud else 0.0
        self._pair = pair or open_pty_pair()
        self.path = self._pair.slave_path
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=f"stm32-bootloader {self.path}", daemon=True)
        self.error: OSError | None = None

    def start(self) -> PtyBootloader:
        """Start serving."""
        self._thread.start()
        _LOGGER.info("bootloader: serving on %s", self.path)
        return self

    def close(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pair.close()

    def __enter__(self) -> PtyBootloader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def locked(self) -> threading.Lock:
        """Hold this to look at the bootloader's memory or stats while it serves."""
        return self._lock

    def _serve(self) -> None:
        master = self._pair.master_fd
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([master], [], [], 0.05)
                if not readable:
                    continue
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    continue
                if self._byte_s:
                    time.sleep(len(data) * self._byte_s)
                with self._lock:
                    answer = self.bootloader.feed(data)
                if answer and self._byte_s:
                    time.sleep(len(answer) * self._byte_s)
                self._write_all(master, answer)
        except OSError as exc:
            self.error = exc
            _LOGGER.error("bootloader: %s: %s", self.path, exc)

    def _write_all(self, fd: int, data: bytes) -> None:
        while data and not self._stop.is_set():
            select.select([], [fd], [], 0.05)
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                continue
