"""The STM32 ROM UART bootloader protocol (ST application note AN3155) and the chips it reports: data only.

Wire rules, shared by the flasher and the virtual bootloader:

* the host opens with 0x7F so that the bootloader measures the baud rate, and it answers ACK (0x79); the line is
  8 data bits, even parity, 1 stop bit;
* every command is its byte followed by the byte's complement; the bootloader answers ACK or NACK (0x1F);
* every address is 4 bytes, most significant first, followed by their XOR; counts are sent as N-1 (a byte, or two
  bytes for Extended Erase) and the XOR of everything in the block closes a data block;
* at most 256 bytes move per Read Memory or Write Memory.

The chip table maps the product ID of Get ID to the flash layout (size and erase units) of the family, and to
the address of the flash-size register, which holds the actual flash size in KiB (a family's parts differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

__all__ = [
    "ACK",
    "CHIPS",
    "CMD_ERASE",
    "CMD_EXTENDED_ERASE",
    "CMD_GET",
    "CMD_GET_ID",
    "CMD_GET_VERSION",
    "CMD_GO",
    "CMD_READ_MEMORY",
    "CMD_WRITE_MEMORY",
    "COMMAND_NAMES",
    "FLASH_BASE",
    "MAX_BLOCK_BYTES",
    "NACK",
    "SYNC",
    "Chip",
    "xor",
]

SYNC = 0x7F  # AN3155 §2: the byte from which the bootloader measures the baud rate
ACK = 0x79
NACK = 0x1F

CMD_GET = 0x00
CMD_GET_VERSION = 0x01
CMD_GET_ID = 0x02
CMD_READ_MEMORY = 0x11
CMD_GO = 0x21
CMD_WRITE_MEMORY = 0x31
CMD_ERASE = 0x43
CMD_EXTENDED_ERASE = 0x44

COMMAND_NAMES = {
    CMD_GET: "Get",
    CMD_GET_VERSION: "Get Version",
    CMD_GET_ID: "Get ID",
    CMD_READ_MEMORY: "Read Memory",
    CMD_GO: "Go",
    CMD_WRITE_MEMORY: "Write Memory",
    CMD_ERASE: "Erase",
    CMD_EXTENDED_ERASE: "Extended Erase",
}

MAX_BLOCK_BYTES = 256  # AN3155: Read Memory and Write Memory move 1..256 bytes
FLASH_BASE = 0x0800_0000  # main flash of every STM32 family listed here

# Erase (0x43): 0xFF then 0x00 erases everything. Extended Erase (0x44): 0xFFFF mass erase, 0xFFFE bank 1,
# 0xFFFD bank 2, each followed by the XOR of its two bytes.
ERASE_GLOBAL = 0xFF
EXTENDED_ERASE_MASS = 0xFFFF
EXTENDED_ERASE_BANK1 = 0xFFFE
EXTENDED_ERASE_BANK2 = 0xFFFD
#: Extended Erase counts pages in two bytes, but 0xFFF0 and up are the special codes.
EXTENDED_ERASE_MAX_PAGES = 0xFFF0


def xor(data: bytes | bytearray) -> int:
    """The bootloader's checksum: XOR of all bytes."""
    return reduce(lambda acc, byte: acc ^ byte, data, 0)


@dataclass(frozen=True, slots=True)
class Chip:
    """What the flasher must know of a product ID: flash size range and how the flash is erased."""

    product_id: int
    name: str
    max_flash_bytes: int
    #: Uniform erase pages, in bytes; None where the flash has sectors of different sizes.
    page_bytes: int | None
    #: Sizes of the erase sectors in order, repeating the last one up to the flash size (non-uniform families).
    sector_kib: tuple[int, ...] = ()
    #: Address of the 16-bit flash-size register (flash size in KiB), readable through the bootloader.
    flash_size_register: int | None = None

    def erase_units(self, flash_bytes: int) -> list[tuple[int, int]]:
        """(offset from the flash base, size) of every erasable unit, page or sector number = list index."""
        if self.page_bytes is not None:
            return [(offset, self.page_bytes) for offset in range(0, flash_bytes, self.page_bytes)]
        units: list[tuple[int, int]] = []
        offset = 0
        index = 0
        while offset < flash_bytes:
            size = self.sector_kib[min(index, len(self.sector_kib) - 1)] * 1024
            units.append((offset, size))
            offset += size
            index += 1
        return units


_F1_SIZE = 0x1FFF_F7E0  # RM0008 §30.1 flash size register (F1)
_F0_F3_SIZE = 0x1FFF_F7CC  # RM0091 / RM0316
_F4_SIZE = 0x1FFF_7A22  # RM0090
_G0_SIZE = 0x1FFF_75E0  # RM0444
_F4_SECTORS = (16, 16, 16, 16, 64, 128)
_K = 1024

# Product IDs from AN2606 (bootloader) and the families' reference manuals; the maximum flash of each family.
CHIPS: dict[int, Chip] = {
    chip.product_id: chip
    for chip in (
        Chip(0x412, "STM32F10x low-density", 32 * _K, 1 * _K, flash_size_register=_F1_SIZE),
        Chip(0x410, "STM32F10x medium-density", 128 * _K, 1 * _K, flash_size_register=_F1_SIZE),
        Chip(0x414, "STM32F10x high-density", 512 * _K, 2 * _K, flash_size_register=_F1_SIZE),
        Chip(0x430, "STM32F10x XL-density", 1024 * _K, 2 * _K, flash_size_register=_F1_SIZE),
        Chip(0x418, "STM32F105/F107 connectivity line", 256 * _K, 2 * _K, flash_size_register=_F1_SIZE),
        Chip(0x420, "STM32F100 value line low/medium-density", 128 * _K, 1 * _K, flash_size_register=_F1_SIZE),
        Chip(0x428, "STM32F100 value line high-density", 512 * _K, 2 * _K, flash_size_register=_F1_SIZE),
        Chip(0x444, "STM32F03x", 32 * _K, 1 * _K, flash_size_register=_F0_F3_SIZE),
        Chip(0x445, "STM32F04x", 32 * _K, 1 * _K, flash_size_register=_F0_F3_SIZE),
        Chip(0x440, "STM32F05x / F030x8", 64 * _K, 1 * _K, flash_size_register=_F0_F3_SIZE),
        Chip(0x448, "STM32F07x", 128 * _K, 2 * _K, flash_size_register=_F0_F3_SIZE),
        Chip(0x442, "STM32F09x / F030xC", 256 * _K, 2 * _K, flash_size_register=_F0_F3_SIZE),
        Chip(0x422, "STM32F302xB/C / F303xB/C", 256 * _K, 2 * _K, flash_size_register=_F0_F3_SIZE),
        Chip(0x438, "STM32F303x4/6/8 / F334", 64 * _K, 2 * _K, flash_size_register=_F0_F3_SIZE),
        Chip(0x466, "STM32G03x / G04x", 64 * _K, 2 * _K, flash_size_register=_G0_SIZE),
        Chip(0x460, "STM32G07x / G08x", 128 * _K, 2 * _K, flash_size_register=_G0_SIZE),
        Chip(0x413, "STM32F40x / F41x", 1024 * _K, None, _F4_SECTORS, flash_size_register=_F4_SIZE),
        Chip(0x423, "STM32F401xB/C", 256 * _K, None, _F4_SECTORS, flash_size_register=_F4_SIZE),
        Chip(0x433, "STM32F401xD/E", 512 * _K, None, _F4_SECTORS, flash_size_register=_F4_SIZE),
        Chip(0x431, "STM32F411xC/E", 512 * _K, None, _F4_SECTORS, flash_size_register=_F4_SIZE),
    )
}
