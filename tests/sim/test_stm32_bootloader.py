"""The virtual bootloader alone, driven with byte sequences written from AN3155 (not by our flasher)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.sim.stm32_bootloader import BootloaderConfig, BootloaderFaults, VirtualStm32Bootloader

ACK, NACK = b"\x79", b"\x1f"
FLASH = 0x08000000


def cmd(code: int) -> bytes:
    return bytes([code, code ^ 0xFF])


def addr(address: int) -> bytes:
    raw = address.to_bytes(4, "big")
    return raw + bytes([raw[0] ^ raw[1] ^ raw[2] ^ raw[3]])


def block(data: bytes) -> bytes:
    body = bytes([len(data) - 1]) + data
    check = 0
    for byte in body:
        check ^= byte
    return body + bytes([check])


def synced(config: BootloaderConfig | None = None, faults: BootloaderFaults | None = None) -> VirtualStm32Bootloader:
    bootloader = VirtualStm32Bootloader(config, faults)
    assert bootloader.feed(b"\x7f") == ACK
    return bootloader


def test_noise_before_sync_is_ignored_then_sync() -> None:
    bootloader = VirtualStm32Bootloader()
    assert bootloader.feed(b"\x00\x55\xaa") == b""
    assert bootloader.feed(b"\x7f") == ACK


def test_get_get_version_get_id() -> None:
    bootloader = synced()
    # F1 bootloader 2.2 with the commands this sim implements, Erase 0x43 (not 0x44).
    assert bootloader.feed(cmd(0x00)) == ACK + bytes([7, 0x22, 0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x43]) + ACK
    assert bootloader.feed(cmd(0x01)) == ACK + b"\x22\x00\x00" + ACK
    assert bootloader.feed(cmd(0x02)) == ACK + b"\x01\x04\x10" + ACK
    extended = synced(BootloaderConfig(chip_id=0x440, extended_erase=True, version=0x31))
    answer = extended.feed(cmd(0x00))
    assert answer[2] == 0x31 and 0x44 in answer[3:-1] and 0x43 not in answer[3:-1]
    assert extended.feed(cmd(0x02)) == ACK + b"\x01\x04\x40" + ACK


def test_bad_complement_and_unsupported_command_are_nacked_and_session_goes_on() -> None:
    bootloader = synced()
    assert bootloader.feed(b"\x00\x00") == NACK
    assert bootloader.feed(cmd(0x44)) == NACK  # not offered by this (F1) bootloader
    assert bootloader.feed(b"\x7f") == b""  # a second sync byte is taken for a command byte ...
    assert bootloader.feed(b"\x7f") == NACK  # ... and refused once its "complement" arrives
    assert bootloader.feed(cmd(0x01)) == ACK + b"\x22\x00\x00" + ACK


def test_write_then_read_byte_by_byte() -> None:
    bootloader = synced()
    wire = cmd(0x31) + addr(FLASH + 0x100) + block(b"\x11\x22\x33\x44\x55\x66\x77\x88")
    answers = b"".join(bootloader.feed(bytes([byte])) for byte in wire)
    assert answers == ACK * 3
    assert bootloader.flash[0x100:0x108] == b"\x11\x22\x33\x44\x55\x66\x77\x88"
    # Read 4 bytes: count N-1 = 3 and its complement.
    assert bootloader.feed(cmd(0x11) + addr(FLASH + 0x102) + b"\x03\xfc") == ACK * 3 + b"\x33\x44\x55\x66"


def test_flash_size_register_reads_as_kib_little_endian() -> None:
    bootloader = synced(BootloaderConfig(flash_bytes=128 * 1024))
    assert bootloader.feed(cmd(0x11) + addr(0x1FFFF7E0) + b"\x01\xfe") == ACK * 3 + (128).to_bytes(2, "little")


@pytest.mark.parametrize(
    ("wire", "answers", "why"),
    [
        (cmd(0x31) + addr(FLASH + 2) + block(b"\x00" * 4), ACK * 2 + NACK, "unaligned address"),
        (cmd(0x31) + addr(FLASH) + block(b"\x00" * 3), ACK * 2 + NACK, "length not a multiple of 4"),
        (cmd(0x31) + addr(FLASH) + block(b"\x00" * 4)[:-1] + b"\x00", ACK * 2 + NACK, "bad data checksum"),
        (cmd(0x31) + addr(0x1FFFF7E0) + block(b"\x00\x00"), ACK * 2 + NACK, "read-only register"),
        (cmd(0x31) + addr(0x0400_0000), ACK + NACK, "address outside memory"),
        (cmd(0x31) + addr(FLASH)[:4] + b"\x00", ACK + NACK, "bad address checksum"),
        (cmd(0x31) + addr(FLASH + 0xFFFC) + block(b"\x00" * 8), ACK * 2 + NACK, "past the end of the flash"),
        (cmd(0x11) + addr(FLASH + 0xFFF0) + b"\x1f\xe0", ACK * 2 + NACK, "read past the end of the flash"),
        (cmd(0x11) + addr(FLASH) + b"\x03\x00", ACK * 2 + NACK, "bad count complement"),
    ],
)
def test_refused_operations(wire: bytes, answers: bytes, why: str) -> None:
    bootloader = synced()
    assert bootloader.feed(wire) == answers, why
    assert bytes(bootloader.flash) == b"\xff" * len(bootloader.flash)
    assert bootloader.feed(cmd(0x01)) == ACK + b"\x22\x00\x00" + ACK  # still serving


def test_write_to_programmed_flash_is_refused_until_erased() -> None:
    bootloader = synced()
    assert bootloader.feed(cmd(0x31) + addr(FLASH + 1024) + block(b"\x00\x01\x02\x03")) == ACK * 3
    assert bootloader.feed(cmd(0x31) + addr(FLASH + 1024) + block(b"\x00\x01\x02\x03")) == ACK * 2 + NACK
    # Legacy erase of page 1: N-1 = 0, page 1, checksum 0 ^ 1.
    assert bootloader.feed(cmd(0x43) + b"\x00\x01\x01") == ACK * 2
    assert bootloader.stats.pages_erased == [1]
    assert bootloader.feed(cmd(0x31) + addr(FLASH + 1024) + block(b"\x09\x09\x09\x09")) == ACK * 3


def test_erase_variants() -> None:
    initial = bytes(range(256)) * 16  # 4 KiB: pages 0..3
    bootloader = synced(BootloaderConfig(initial_flash=initial))
    assert bootloader.feed(cmd(0x43) + b"\x01\x00\x02\x03") == ACK * 2  # pages 0 and 2
    assert bootloader.flash[:1024] == b"\xff" * 1024 and bootloader.flash[1024:2048] == initial[1024:2048]
    assert bootloader.flash[2048:3072] == b"\xff" * 1024 and bootloader.flash[3072:4096] == initial[3072:4096]
    assert bootloader.feed(cmd(0x43) + b"\x00\x40\x41") == ACK + NACK  # page 64 does not exist in 64 KiB
    assert bootloader.feed(cmd(0x43) + b"\x01\x00\x02\x00") == ACK + NACK  # bad checksum
    assert bootloader.feed(cmd(0x43) + b"\xff\x00") == ACK * 2  # global
    assert bytes(bootloader.flash) == b"\xff" * 65536 and bootloader.stats.mass_erases == 1

    extended = synced(BootloaderConfig(extended_erase=True, initial_flash=initial))
    # N-1 = 1 (two pages): 0x0001, 0x0003; checksum over all bytes.
    assert extended.feed(cmd(0x44) + b"\x00\x01\x00\x01\x00\x03" + bytes([0x01 ^ 0x01 ^ 0x03])) == ACK * 2
    assert extended.stats.pages_erased == [1, 3]
    assert extended.flash[:1024] == initial[:1024] and extended.flash[1024:2048] == b"\xff" * 1024
    assert extended.feed(cmd(0x44) + b"\xff\xfd\x02") == ACK + NACK  # bank 2: this part has one bank
    assert extended.feed(cmd(0x44) + b"\xff\xff\x00") == ACK * 2
    assert bytes(extended.flash) == b"\xff" * 65536


def test_go_then_silence() -> None:
    bootloader = synced()
    assert bootloader.feed(cmd(0x21) + addr(FLASH)) == ACK * 2
    assert bootloader.started and bootloader.stats.go_address == FLASH
    assert bootloader.feed(b"\x7f" + cmd(0x00)) == b""


def test_ram_write_needs_no_alignment() -> None:
    bootloader = synced()
    assert bootloader.feed(cmd(0x31) + addr(0x20000001) + block(b"\xab\xcd\xef")) == ACK * 3
    assert bootloader.ram[1:4] == b"\xab\xcd\xef"


def test_faults() -> None:
    bootloader = synced(faults=BootloaderFaults(nack_writes=frozenset({2}), corrupt_reads=frozenset({1})))
    write = cmd(0x31) + addr(FLASH) + block(b"\x01\x02\x03\x04")
    assert bootloader.feed(write) == ACK * 3
    assert bootloader.feed(cmd(0x31) + addr(FLASH + 4) + block(b"\x05\x06\x07\x08")) == ACK * 2 + NACK
    assert bootloader.flash[4:8] == b"\xff" * 4  # a refused write changes nothing
    answer = bootloader.feed(cmd(0x11) + addr(FLASH) + b"\x03\xfc")
    assert answer[:3] == ACK * 3 and answer[3:] != b"\x01\x02\x03\x04"
    assert bootloader.feed(cmd(0x11) + addr(FLASH) + b"\x03\xfc")[3:] == b"\x01\x02\x03\x04"

    refusing = synced(faults=BootloaderFaults(nack_commands=frozenset({0x02})))
    assert refusing.feed(cmd(0x02)) == NACK

    deaf = VirtualStm32Bootloader(faults=BootloaderFaults(drop_sync=True))
    assert deaf.feed(b"\x7f" * 5) == b""
    assert VirtualStm32Bootloader(faults=BootloaderFaults(silent=True)).feed(b"\x7f") == b""

    dying = synced(faults=BootloaderFaults(silent_after_writes=1))
    assert dying.feed(write) == ACK * 3
    assert dying.feed(cmd(0x31) + addr(FLASH + 4) + block(b"\x05\x06\x07\x08")) == b""
    assert dying.feed(cmd(0x01)) == b""


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="multiple of the page size"):
        VirtualStm32Bootloader(BootloaderConfig(flash_bytes=1000))
    with pytest.raises(ValueError, match="larger than the flash"):
        VirtualStm32Bootloader(BootloaderConfig(flash_bytes=1024, initial_flash=b"\x00" * 2048))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=40))
def test_any_bytes_any_chunking_same_answers(data: bytes, cuts: list[int]) -> None:
    """Hostile host bytes never break the sim, and how they are split into reads changes nothing."""
    whole = VirtualStm32Bootloader()
    expected = whole.feed(b"\x7f" + data)
    chunked = VirtualStm32Bootloader()
    wire = b"\x7f" + data
    got = bytearray()
    position = 0
    for cut in cuts:
        got += chunked.feed(wire[position : position + cut])
        position += cut
    got += chunked.feed(wire[position:])
    assert bytes(got) == expected
    assert bytes(chunked.flash) == bytes(whole.flash)
    assert set(expected) <= set(range(256))
