"""The STM32 bootloader protocol rules both the flasher and the virtual bootloader use (AN3155)."""

from __future__ import annotations

from gizdev.protocol.stm32_boot import ACK, CHIPS, CMD_GET, COMMAND_NAMES, NACK, SYNC, xor


def test_wire_constants_and_checksum() -> None:
    assert (SYNC, ACK, NACK) == (0x7F, 0x79, 0x1F)
    assert COMMAND_NAMES[CMD_GET] == "Get"
    # AN3155 §3.5: the address 0x08000000 is sent as 08 00 00 00 with the checksum 08.
    assert xor(bytes.fromhex("08000000")) == 0x08
    assert xor(b"") == 0 and xor(bytearray(b"\xff\xff")) == 0


def test_uniform_pages_cover_the_flash_exactly() -> None:
    for chip in CHIPS.values():
        if chip.page_bytes is None:
            continue
        units = chip.erase_units(chip.max_flash_bytes)
        assert sum(size for _, size in units) == chip.max_flash_bytes, chip.name
        assert [offset for offset, _ in units] == list(range(0, chip.max_flash_bytes, chip.page_bytes))
