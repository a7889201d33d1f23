"""The bootloader client against scripted answers that no well-behaved bootloader gives."""

from __future__ import annotations

import pytest

from gizdev.board.flash.errors import BootloaderTimeout, FlashError
from gizdev.board.flash.stm32 import Stm32Bootloader


class Scripted:
    """A ByteStream that answers from a script and records what was sent."""

    name = "scripted"

    def __init__(self, answers: bytes) -> None:
        self.answers = bytearray(answers)
        self.sent = bytearray()

    def write(self, data: bytes) -> None:
        self.sent += data

    def read(self, size: int, timeout_s: float) -> bytes:
        chunk = bytes(self.answers[:size])
        del self.answers[:size]
        return chunk

    def discard_input(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_unexpected_byte_instead_of_ack() -> None:
    bootloader = Stm32Bootloader(Scripted(b"\x55"))
    with pytest.raises(FlashError, match=r"scripted: expected ACK \(0x79\) to Get \(0x00\) \(command byte\), got 0x55"):
        bootloader.get()


def test_answer_cut_short() -> None:
    # Get ID: ACK, N=1, then only one of the two ID bytes.
    bootloader = Stm32Bootloader(Scripted(b"\x79\x01\x04"), timeout_s=0.01)
    with pytest.raises(BootloaderTimeout, match=r"Get ID \(0x02\): product ID cut short, 1 of 2 bytes .* \[04\]"):
        bootloader.get_id()


def test_get_answer_longer_than_what_arrives() -> None:
    # Get claims 256 bytes follow (N = 0xFF) but three arrive.
    bootloader = Stm32Bootloader(Scripted(b"\x79\xff\x22\x00\x01"), timeout_s=0.01)
    with pytest.raises(BootloaderTimeout, match="command list cut short, 3 of 256 bytes"):
        bootloader.get()


def test_wire_format_of_commands() -> None:
    """What the client sends, checked against AN3155 byte by byte."""
    stream = Scripted(b"\x79" * 3 + b"\x79" * 3 + b"\x79\x79" + b"\x79\x79")
    bootloader = Stm32Bootloader(stream)
    bootloader.write_memory(0x08000100, b"\x01\x02\x03\x04")
    # 0x31 0xCE, address 08 00 01 00 + XOR 0x09, N-1 = 3, data, XOR(3, 1, 2, 3, 4) = 0x07.
    assert stream.sent.hex() == "31ce" + "0800010009" + "03" + "01020304" + "07"
    stream.sent.clear()
    bootloader.read_memory(0x08000000, 2)  # answers: ACK ACK ACK then 2 data bytes (taken from the script)
    assert stream.sent.hex() == "11ee" + "0800000008" + "01fe"
    stream.sent.clear()
    bootloader.erase([1, 2], extended=False)
    assert stream.sent.hex() == "43bc" + "01" + "0102" + "02"
    stream.sent.clear()
    stream.answers += b"\x79\x79"
    bootloader.erase([0x0102], extended=True)
    assert stream.sent.hex() == "44bb" + "0000" + "0102" + "03"


def test_legacy_erase_cannot_name_pages_past_255() -> None:
    bootloader = Stm32Bootloader(Scripted(b""))
    with pytest.raises(FlashError, match="page 256 cannot be named by Erase"):
        bootloader.erase([256], extended=False)


def test_block_size_limits() -> None:
    bootloader = Stm32Bootloader(Scripted(b""))
    with pytest.raises(ValueError, match=r"1\.\.256 bytes, not 257"):
        bootloader.write_memory(0x08000000, b"\x00" * 257)
    with pytest.raises(ValueError, match="not 0"):
        bootloader.read_memory(0x08000000, 0)
