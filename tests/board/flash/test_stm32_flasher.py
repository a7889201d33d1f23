"""The STM32 flasher against the virtual bootloader over a real pty: the acceptance cases and every failure path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gizdev.board.flash.errors import BootloaderNack, BootloaderTimeout, FlashError, ImageTooLarge, VerifyError
from gizdev.board.flash.image import FirmwareImage, Segment, parse_intel_hex
from gizdev.board.flash.progress import ProgressReporter
from gizdev.board.flash.stm32_flasher import FlashPlan, erase_pages, flash_stm32, identify, write_blocks
from gizdev.protocol.stm32_boot import CHIPS
from gizdev.sim.stm32_bootloader import BootloaderConfig, BootloaderFaults
from tests.board.flash.helpers import FLASH, RecordingProgress, client, firmware, served
from tests.board.flash.test_image import EOF_LINE, record


def image_of(data: bytes, address: int = FLASH) -> FirmwareImage:
    return FirmwareImage((Segment(address, data),), source="test.bin")


def test_writes_and_verifies_64_kib_with_progress() -> None:
    data = firmware(64 * 1024)
    progress = RecordingProgress()
    with served() as (sim, stream):
        report = flash_stm32(client(stream), image_of(data), FlashPlan(), progress)
        with sim.locked():
            assert bytes(sim.bootloader.flash) == data
            stats = sim.bootloader.stats
            assert stats.pages_erased == list(range(64)) and stats.mass_erases == 0
            assert stats.writes == 256 and stats.reads == 1 + 256  # flash-size register, then verify
            assert stats.go_address is None
    assert report.product_id == 0x410 and report.flash_bytes == 64 * 1024
    assert report.flash_size_source == "register 0x1ffff7e0"
    assert progress.phases() == [("start erase", 65536), ("start write", 65536), ("start verify", 65536)]
    writes = progress.events[progress.events.index(("start write", 65536)) + 1 :]
    done = [value for name, value in writes if name == "update"][:256]
    assert done == [256 * (i + 1) for i in range(256)]


def test_progress_text_on_a_non_terminal() -> None:
    out = io.StringIO()
    reporter = ProgressReporter(out)
    reporter.start("write", 1000)
    for done in range(0, 1001, 50):
        reporter.update(done)
    reporter.finish()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("write   [") and " 0/1000 bytes   0%" in lines[0]
    assert lines[-1].startswith("write   [" + "#" * 30 + "]") and "1000/1000 bytes 100%" in lines[-1]
    assert len(lines) == 11  # one per tenth, not one per update
    assert all("KiB/s" in line for line in lines)


def test_hex_with_gaps_leaves_the_gaps_erased_and_shares_words_safely() -> None:
    text = "\n".join(
        [
            record(0x04, 0, b"\x08\x00"),
            record(0x00, 0x0000, b"\x01\x02\x03"),  # ends mid-word
            record(0x00, 0x0003, b"\x04"),  # same word, later record: one write of the word
            record(0x00, 0x0006, b"\x07"),  # gap of two bytes inside the next word
            record(0x00, 0x2001, b"\xaa\xbb\xcc"),  # unaligned start, page 8
            record(0x00, 0xFFFE, b"\xee\xff"),  # last half-word of the 64 KiB
            EOF_LINE,
        ]
    )
    image = parse_intel_hex(text.encode(), source="gaps.hex")
    with served(BootloaderConfig(initial_flash=b"\x00" * 65536)) as (sim, stream):
        flash_stm32(client(stream), image, FlashPlan())
        flash = sim.bootloader.flash
        stats = sim.bootloader.stats
    assert stats.pages_erased == [0, 8, 63]
    assert flash[0:8] == b"\x01\x02\x03\x04\xff\xff\x07\xff"
    assert flash[8:1024] == b"\xff" * 1016  # rest of page 0: erased, nothing written
    assert flash[1024:8192] == b"\x00" * 7168  # pages 1..7 untouched
    assert flash[0x2000:0x2004] == b"\xff\xaa\xbb\xcc"
    assert flash[0xFFFC:] == b"\xff\xff\xee\xff"


def test_write_blocks_are_aligned_and_bounded() -> None:
    image = FirmwareImage((Segment(FLASH + 0x0FE, bytes(range(200))), Segment(FLASH + 0x1C7, b"\x01")))
    blocks = write_blocks(image)
    # 0x0FC..0x1C8 joined (they share the word 0x1C4), split at the 256-byte boundary 0x100.
    assert [(hex(a - FLASH), len(d)) for a, d in blocks] == [("0xfc", 4), ("0x100", 0xC8)]
    assert blocks[0][1] == b"\xff\xff\x00\x01" and blocks[1][1][-1] == 0x01 and blocks[1][1][-2] == 0xFF
    for address, data in blocks:
        assert address % 4 == 0 and len(data) % 4 == 0 and 0 < len(data) <= 256
        assert address // 256 == (address + len(data) - 1) // 256


@pytest.mark.parametrize("extended", [False, True])
def test_erase_strategies(extended: bool) -> None:
    old = firmware(64 * 1024, seed=2)
    data = firmware(3000)
    config = BootloaderConfig(extended_erase=extended, initial_flash=old)
    with served(config) as (sim, stream):
        flash_stm32(client(stream), image_of(data, FLASH + 1024), FlashPlan(erase="pages"))
        assert sim.bootloader.stats.commands.get("Extended Erase" if extended else "Erase") == 3
        assert sim.bootloader.stats.pages_erased == [1, 2, 3]
        flash = bytes(sim.bootloader.flash)
    assert flash[:1024] == old[:1024]  # page 0 kept
    assert flash[1024 : 1024 + 3000] == data and flash[4024:4096] == b"\xff" * 72
    assert flash[4096:] == old[4096:]

    with served(config) as (sim, stream):
        flash_stm32(client(stream), image_of(data), FlashPlan(erase="global"))
        assert sim.bootloader.stats.mass_erases == 1 and sim.bootloader.stats.pages_erased == []
        assert bytes(sim.bootloader.flash) == data + b"\xff" * (65536 - 3000)

    # No erase on a programmed chip: the first write is refused, retried once, then the flash fails.
    with served(config) as (sim, stream), pytest.raises(BootloaderNack) as caught:
        flash_stm32(client(stream), image_of(data), FlashPlan(erase="none"))
    assert caught.value.address == FLASH and sim.bootloader.stats.writes == 2


def test_backup_holds_the_previous_flash(tmp_path: Path) -> None:
    old = firmware(64 * 1024, seed=3)
    backup = tmp_path / "old.bin"
    with served(BootloaderConfig(initial_flash=old)) as (sim, stream):
        flash_stm32(client(stream), image_of(firmware(5000)), FlashPlan(backup=backup))
        assert sim.bootloader.flash[:5000] == firmware(5000)
    assert backup.read_bytes() == old


def test_go_reaches_the_sim() -> None:
    with served() as (sim, stream):
        flash_stm32(client(stream), image_of(firmware(512)), FlashPlan(go=FLASH))
        assert sim.bootloader.stats.go_address == FLASH


def test_one_nack_is_retried_once_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    data = firmware(4096)
    with served(faults=BootloaderFaults(nack_writes=frozenset({3}))) as (sim, stream):
        flash_stm32(client(stream), image_of(data), FlashPlan())
        assert sim.bootloader.flash[:4096] == data
        assert sim.bootloader.stats.writes == 17  # 16 blocks + the retry
    assert any("retrying this block once" in r.getMessage() and "0x08000200" in r.getMessage() for r in caplog.records)


def test_second_nack_of_the_same_block_stops_everything() -> None:
    with served(faults=BootloaderFaults(nack_writes=frozenset({3, 4}))) as (sim, stream):
        with pytest.raises(BootloaderNack) as caught:
            flash_stm32(client(stream), image_of(firmware(4096)), FlashPlan(go=FLASH))
        stats = sim.bootloader.stats
        assert stats.writes == 4 and stats.reads == 1 and stats.go_address is None  # nothing after the failure
        assert sim.bootloader.flash[0x200:0x1000] == b"\xff" * 0xE00
    message = str(caught.value)
    assert caught.value.command == 0x31 and caught.value.address == FLASH + 0x200
    assert "Write Memory (0x31)" in message and "0x08000200" in message and "refused again after 1 retry" in message


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (0x00, "bootloader refused Get (0x00) at the command byte"),
        (0x02, "bootloader refused Get ID (0x02) at the command byte"),
        (0x43, "bootloader refused Erase (0x43) at the command byte"),
        (0x31, "bootloader refused Write Memory (0x31) at the command byte, address 0x08000000"),
        (0x21, "bootloader refused Go (0x21) at the command byte, address 0x08000000"),
    ],
)
def test_every_nack_names_command_and_address(command: int, expected: str) -> None:
    with (
        served(faults=BootloaderFaults(nack_commands=frozenset({command}))) as (_, stream),
        pytest.raises(BootloaderNack) as caught,
    ):
        flash_stm32(client(stream), image_of(firmware(256)), FlashPlan(go=FLASH))
    assert str(caught.value).startswith(expected)


def test_read_refused_during_verify_and_identify(caplog: pytest.LogCaptureFixture) -> None:
    # Read Memory refused altogether (as on a read-protected chip): the flash size falls back to the family's
    # maximum (with a warning), and verify fails with the address.
    with (
        served(faults=BootloaderFaults(nack_commands=frozenset({0x11}))) as (_, stream),
        pytest.raises(BootloaderNack, match=r"Read Memory \(0x11\) at the command byte, address 0x08000000"),
    ):
        flash_stm32(client(stream), image_of(firmware(256)), FlashPlan())
    assert any("flash-size register unreadable" in r.getMessage() for r in caplog.records)


def test_address_stage_nack_names_the_address() -> None:
    with served() as (_, stream):
        bootloader = client(stream)
        bootloader.sync()
        with pytest.raises(BootloaderNack) as caught:
            bootloader.read_memory(0x0400_0000, 16)
    assert str(caught.value) == "bootloader refused Read Memory (0x11) at the address, address 0x04000000"


def test_corrupted_read_fails_verify_with_the_bytes() -> None:
    data = firmware(1024)
    # Read 1 is the flash-size register; read 3 is the second verify block (0x08000100).
    with (
        served(faults=BootloaderFaults(corrupt_reads=frozenset({3}))) as (_, stream),
        pytest.raises(VerifyError) as caught,
    ):
        flash_stm32(client(stream), image_of(data), FlashPlan())
    error = caught.value
    assert error.address == FLASH + 0x180  # the sim flips a bit in the middle of the block, row 0x80
    assert error.expected == data[0x180:0x190] and error.actual != error.expected
    assert f"wrote {data[0x180:0x190].hex()}, read back" in str(error)


def test_silent_board_times_out_with_a_clear_message() -> None:
    with served(faults=BootloaderFaults(silent=True)) as (_, stream), pytest.raises(BootloaderTimeout) as caught:
        flash_stm32(client(stream, timeout_s=0.2), image_of(firmware(256)), FlashPlan())
    assert "no answer to the bootloader sync byte 0x7f after 3 attempts of 0.2 s" in str(caught.value)
    assert "BOOT0" in str(caught.value) and isinstance(caught.value, TimeoutError)


def test_dropped_sync_times_out() -> None:
    with served(faults=BootloaderFaults(drop_sync=True)) as (sim, stream):
        with pytest.raises(BootloaderTimeout, match="sync byte 0x7f"):
            client(stream, timeout_s=0.2).sync()
        assert sim.bootloader.stats.syncs == 0


def test_board_dying_mid_write_times_out_naming_the_block() -> None:
    with (
        served(faults=BootloaderFaults(silent_after_writes=5)) as (_, stream),
        pytest.raises(BootloaderTimeout) as caught,
    ):
        flash_stm32(client(stream, timeout_s=0.3), image_of(firmware(4096)), FlashPlan())
    assert "Write Memory (0x31) at 0x08000500 (data) within 0.3 s" in str(caught.value)


def test_resync_on_an_already_synced_bootloader() -> None:
    with served() as (sim, stream):
        bootloader = client(stream, timeout_s=0.3)
        bootloader.sync()
        bootloader.sync()  # the first 0x7F is taken as a command byte; the second makes it NACK
        assert bootloader.get_version() == 0x22
        assert sim.bootloader.stats.syncs == 1


def test_refuses_an_image_larger_than_the_flash_before_touching_it() -> None:
    old = firmware(64 * 1024, seed=4)
    with served(BootloaderConfig(flash_bytes=64 * 1024, initial_flash=old)) as (sim, stream):
        with pytest.raises(ImageTooLarge) as caught:
            flash_stm32(client(stream), image_of(firmware(64 * 1024 + 4)), FlashPlan())
        assert sim.bootloader.stats.pages_erased == [] and sim.bootloader.stats.writes == 0
        assert bytes(sim.bootloader.flash) == old
    assert "65540 bytes do not fit into the 64 KiB flash" in str(caught.value)
    assert "register 0x1ffff7e0" in str(caught.value)


def test_refuses_an_image_outside_the_flash() -> None:
    with served() as (sim, stream):
        with pytest.raises(
            ImageTooLarge, match=r"0x0800f800\.\.0x080107ff, outside the flash 0x08000000\.\.0x0800ffff"
        ):
            flash_stm32(client(stream, timeout_s=0.3), image_of(firmware(4096), FLASH + 0xF800), FlashPlan())
        with pytest.raises(ImageTooLarge, match="outside the flash"):
            flash_stm32(client(stream, timeout_s=0.3), image_of(firmware(16), 0x20000000), FlashPlan())
        assert sim.bootloader.stats.writes == 0


def test_unknown_chip_needs_a_flash_size() -> None:
    with served(BootloaderConfig(chip_id=0x999)) as (sim, stream):
        with pytest.raises(FlashError, match=r"0x999 is not in the chip table.*--flash-size"):
            flash_stm32(client(stream, timeout_s=0.3), image_of(firmware(256)), FlashPlan())
        with pytest.raises(FlashError, match="erase layout of unknown chip 0x999 is unknown; use --erase global"):
            flash_stm32(client(stream, timeout_s=0.3), image_of(firmware(256)), FlashPlan(flash_bytes=65536))
        flash_stm32(
            client(stream, timeout_s=0.3), image_of(firmware(256)), FlashPlan(flash_bytes=65536, erase="global")
        )
        assert sim.bootloader.flash[:256] == firmware(256)


def test_implausible_flash_size_register_falls_back_to_the_family_maximum() -> None:
    # 0x440 (F05x) keeps its size at 0x1FFFF7CC; a 256 KiB claim exceeds the family's 64 KiB.
    with served(BootloaderConfig(chip_id=0x440, flash_bytes=256 * 1024)) as (_, stream):
        bootloader = client(stream)
        bootloader.sync()
        report = identify(bootloader)
    assert report.flash_bytes == 64 * 1024 and report.flash_size_source == "family maximum"


def test_sector_layout_of_f4_chips() -> None:
    chip = CHIPS[0x413]
    units = chip.erase_units(1024 * 1024)
    assert [size // 1024 for _, size in units] == [16, 16, 16, 16, 64] + [128] * 7
    assert units[5] == (128 * 1024, 128 * 1024)
    from gizdev.board.flash.stm32 import BootloaderInfo
    from gizdev.board.flash.stm32_flasher import ChipReport

    report = ChipReport(BootloaderInfo(0x31, frozenset({0x44})), 0x413, chip, 1024 * 1024, "given")
    image = FirmwareImage((Segment(FLASH + 0x3FFF, b"\x00\x00"), Segment(FLASH + 0x20000, b"\x00")))
    assert erase_pages(image, report) == [0, 1, 5]


def test_the_same_pty_opens_again_after_a_run() -> None:
    """A pty drops even parity; reopening one that was set to 8E1 must still work (a second flash run)."""
    from gizdev.board.flash.port import open_stream
    from gizdev.sim.stm32_bootloader import PtyBootloader, VirtualStm32Bootloader

    with PtyBootloader(VirtualStm32Bootloader()) as sim:
        for _ in range(3):
            stream = open_stream(sim.path, baudrate=115200, parity="E")
            try:
                bootloader = client(stream, timeout_s=0.3)
                bootloader.sync()
                assert bootloader.get_id() == 0x410
            finally:
                stream.close()


def test_paced_sim_takes_the_wire_time() -> None:
    """At 19200 baud 8E1 a 256-byte read answer alone needs 256 * 11 / 19200 = 0.147 s."""
    import time

    from gizdev.board.flash.port import open_stream
    from gizdev.sim.stm32_bootloader import PtyBootloader, VirtualStm32Bootloader

    with PtyBootloader(VirtualStm32Bootloader(), baud=19200) as sim:
        stream = open_stream(sim.path, baudrate=19200, parity="E")
        try:
            bootloader = client(stream)
            bootloader.sync()
            start = time.monotonic()
            assert bootloader.read_memory(FLASH, 256) == b"\xff" * 256
            assert time.monotonic() - start > 0.14
        finally:
            stream.close()
