"""A client of the STM32 ROM UART bootloader (AN3155), one method per bootloader command.

Each method sends one command and reads its answers with a deadline; a NACK raises :class:`BootloaderNack`
naming the command, the stage that was refused and the address, silence raises :class:`BootloaderTimeout`.
Nothing is retried here: the retry policy belongs to the caller (see :mod:`gizdev.board.flash.stm32_flasher`).
After a NACK the bootloader waits for a new command, so the client stays usable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gizdev.board.flash.errors import BootloaderNack, BootloaderTimeout, FlashError
from gizdev.board.flash.port import ByteStream
from gizdev.protocol.stm32_boot import (
    ACK,
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
    EXTENDED_ERASE_MASS,
    MAX_BLOCK_BYTES,
    NACK,
    SYNC,
    xor,
)

__all__ = ["BootloaderInfo", "Stm32Bootloader"]

_LOGGER = logging.getLogger(__name__)

#: Time for an answer that needs no flash operation (generous: a USB adapter adds latency, a Pi is slow).
ANSWER_TIMEOUT_S = 1.0
#: Mass erase of a 1 MiB part takes several seconds (RM0090: up to 32 s for 2 MiB at x8 parallelism).
ERASE_TIMEOUT_S = 40.0
SYNC_ATTEMPTS = 3
#: Pages per Erase command: the legacy command counts them in one byte; Extended Erase gets batches this size
#: too, so that no bootloader's receive buffer is overrun.
ERASE_BATCH_PAGES = 128


@dataclass(frozen=True, slots=True)
class BootloaderInfo:
    """The answer to Get: protocol version (0x22 = 2.2) and the command bytes the bootloader implements."""

    version: int
    commands: frozenset[int]

    @property
    def version_text(self) -> str:
        """The version as ST writes it (2.2)."""
        return f"{self.version >> 4}.{self.version & 0xF}"


class Stm32Bootloader:
    """Talks to one bootloader over a byte stream."""

    def __init__(
        self, stream: ByteStream, *, timeout_s: float = ANSWER_TIMEOUT_S, erase_timeout_s: float = ERASE_TIMEOUT_S
    ) -> None:
        self.stream = stream
        self.timeout_s = timeout_s
        self.erase_timeout_s = erase_timeout_s

    # -- commands ---------------------------------------------------------------------------------------------

    def sync(self, attempts: int = SYNC_ATTEMPTS) -> None:
        """Send 0x7F until the bootloader answers; a NACK means it had been synced already, which is fine."""
        self.stream.discard_input()
        for attempt in range(1, attempts + 1):
            self.stream.write(bytes([SYNC]))
            answer = self.stream.read(1, self.timeout_s)
            if answer == bytes([ACK]):
                _LOGGER.info("%s: bootloader synced", self.stream.name)
                return
            if answer == bytes([NACK]):
                # A bootloader past autobaud takes 0x7F for a command byte and refuses it.
                _LOGGER.info("%s: bootloader was synced already", self.stream.name)
                return
            if answer:
                _LOGGER.debug("%s: sync attempt %d answered %s, retrying", self.stream.name, attempt, answer.hex())
                self.stream.discard_input()
        raise BootloaderTimeout(
            f"{self.stream.name}: no answer to the bootloader sync byte 0x7f after {attempts} attempts "
            f"of {self.timeout_s:g} s (is BOOT0 high and was the board reset? right port and baud rate?)"
        )

    def get(self) -> BootloaderInfo:
        """Get (0x00): version and supported commands."""
        self._command(CMD_GET)
        count = self._read(1, CMD_GET, "answer length")[0] + 1
        body = self._read(count, CMD_GET, "command list")
        self._ack(CMD_GET, "end of the answer")
        return BootloaderInfo(body[0], frozenset(body[1:]))

    def get_version(self) -> int:
        """Get Version (0x01): the protocol version byte (the two option bytes after it are ignored)."""
        self._command(CMD_GET_VERSION)
        body = self._read(3, CMD_GET_VERSION, "answer")
        self._ack(CMD_GET_VERSION, "end of the answer")
        return body[0]

    def get_id(self) -> int:
        """Get ID (0x02): the product ID (e.g. 0x410)."""
        self._command(CMD_GET_ID)
        count = self._read(1, CMD_GET_ID, "answer length")[0] + 1
        body = self._read(count, CMD_GET_ID, "product ID")
        self._ack(CMD_GET_ID, "end of the answer")
        return int.from_bytes(body, "big")

    def read_memory(self, address: int, length: int) -> bytes:
        """Read Memory (0x11): 1..256 bytes from ``address``."""
        _check_block(length)
        self._command(CMD_READ_MEMORY, address)
        self._send_address(CMD_READ_MEMORY, address)
        self.stream.write(bytes([length - 1, (length - 1) ^ 0xFF]))
        self._ack(CMD_READ_MEMORY, "byte count", address)
        return self._read(length, CMD_READ_MEMORY, "data", address)

    def write_memory(self, address: int, data: bytes) -> None:
        """Write Memory (0x31): 1..256 bytes to ``address`` (flash wants a multiple of 4, word aligned)."""
        _check_block(len(data))
        self._command(CMD_WRITE_MEMORY, address)
        self._send_address(CMD_WRITE_MEMORY, address)
        block = bytes([len(data) - 1]) + data
        self.stream.write(block + bytes([xor(block)]))
        self._ack(CMD_WRITE_MEMORY, "data", address)

    def erase(self, pages: list[int] | None, *, extended: bool) -> None:
        """Erase the given pages (None: all of the flash) with Extended Erase (0x44) or Erase (0x43)."""
        command = CMD_EXTENDED_ERASE if extended else CMD_ERASE
        if pages is None:
            self._command(command)
            special = (
                EXTENDED_ERASE_MASS.to_bytes(2, "big") + bytes([0x00]) if extended else bytes([ERASE_GLOBAL, 0x00])
            )
            self.stream.write(special)
            self._ack(command, "mass erase", timeout_s=self.erase_timeout_s)
            return
        for first in range(0, len(pages), ERASE_BATCH_PAGES):
            batch = pages[first : first + ERASE_BATCH_PAGES]
            if extended:
                body = (len(batch) - 1).to_bytes(2, "big") + b"".join(page.to_bytes(2, "big") for page in batch)
            else:
                if max(batch) > 0xFF:
                    raise FlashError(f"page {max(batch)} cannot be named by Erase (0x43), which counts to 255")
                body = bytes([len(batch) - 1, *batch])
            self._command(command)
            self.stream.write(body + bytes([xor(body)]))
            self._ack(
                command,
                f"erase of pages {batch[0]}..{batch[-1]}" if len(batch) > 1 else f"erase of page {batch[0]}",
                timeout_s=self.erase_timeout_s,
            )

    def go(self, address: int) -> None:
        """Go (0x21): start the program whose vector table is at ``address``."""
        self._command(CMD_GO, address)
        self._send_address(CMD_GO, address)

    # -- wire helpers -----------------------------------------------------------------------------------------

    def _command(self, command: int, address: int | None = None) -> None:
        self.stream.write(bytes([command, command ^ 0xFF]))
        self._ack(command, "command byte", address)

    def _send_address(self, command: int, address: int) -> None:
        raw = address.to_bytes(4, "big")
        self.stream.write(raw + bytes([xor(raw)]))
        self._ack(command, "address", address)

    def _ack(self, command: int, stage: str, address: int | None = None, *, timeout_s: float | None = None) -> None:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        answer = self.stream.read(1, timeout)
        if answer == bytes([ACK]):
            return
        if answer == bytes([NACK]):
            raise BootloaderNack(command, COMMAND_NAMES[command], stage, address=address)
        if not answer:
            raise BootloaderTimeout(
                f"{self.stream.name}: no answer from the bootloader to {_what(command, address)} "
                f"({stage}) within {timeout:g} s"
            )
        raise FlashError(
            f"{self.stream.name}: expected ACK (0x79) to {_what(command, address)} ({stage}), got 0x{answer[0]:02x}"
        )

    def _read(self, size: int, command: int, stage: str, address: int | None = None) -> bytes:
        data = self.stream.read(size, self.timeout_s)
        if len(data) < size:
            raise BootloaderTimeout(
                f"{self.stream.name}: {_what(command, address)}: {stage} cut short, {len(data)} of {size} bytes "
                f"within {self.timeout_s:g} s [{data.hex()}]"
            )
        return data


def _what(command: int, address: int | None) -> str:
    text = f"{COMMAND_NAMES[command]} (0x{command:02x})"
    return text if address is None else f"{text} at 0x{address:08x}"


def _check_block(length: int) -> None:
    if not 1 <= length <= MAX_BLOCK_BYTES:
        raise ValueError(f"a bootloader block is 1..{MAX_BLOCK_BYTES} bytes, not {length}")
