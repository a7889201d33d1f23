"""``gizdev flash``: the sim-bootloader and stm32 commands as separate processes, as a user runs them; errors and
help in-process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gizdev.cli.main import main
from gizdev.sim.stm32_bootloader import BootloaderConfig, BootloaderFaults, PtyBootloader, VirtualStm32Bootloader
from tests.board.flash.helpers import firmware
from tests.board.flash.test_image import EOF_LINE, record
from tests.conftest import REPO_ROOT

GIZDEV = [sys.executable, "-m", "gizdev.cli.main"]


def test_flash_a_hex_file_into_the_sim_bootloader_process(tmp_path: Path) -> None:
    old = firmware(2048, seed=9)
    initial = tmp_path / "initial.bin"
    initial.write_bytes(old)
    dump = tmp_path / "dump.bin"
    sim = subprocess.Popen(
        [*GIZDEV, "flash", "sim-bootloader", "--extended-erase", "--chip-id", "0x440", "--flash-kib", "32",
         "--initial", str(initial), "--dump", str(dump)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        announce = json.loads(sim.stdout.readline())
        assert announce["chip_id"] == "0x440" and announce["flash_bytes"] == 32 * 1024
        hexfile = tmp_path / "app.hex"
        hexfile.write_text(
            "\n".join([record(0x04, 0, b"\x08\x00"), record(0, 0x0400, b"\x10\x20\x30\x40"), EOF_LINE]) + "\n"
        )
        backup = tmp_path / "backup.bin"
        flash = subprocess.run(
            [*GIZDEV, "flash", "stm32", str(hexfile), "--port", announce["pty"], "--go", "--backup", str(backup)],
            check=False, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
        )  # fmt: skip
        assert flash.returncode == 0, flash.stderr
        assert "4/4 bytes 100%" in flash.stderr  # the write bar reached the end
        assert flash.stdout.startswith("flashed 4 bytes")
        assert "STM32F05x / F030x8 (ID 0x440, 32 KiB flash)" in flash.stdout
        assert "verified" in flash.stdout and "started at 0x08000400" in flash.stdout
        assert backup.read_bytes() == old + b"\xff" * (32 * 1024 - 2048)
    finally:
        sim.send_signal(signal.SIGTERM)
        out, err = sim.communicate(timeout=10)
    assert sim.returncode == 0, err
    stats = json.loads(out.splitlines()[-1])
    assert stats["go"] == "0x08000400" and stats["pages_erased"] == [1]  # 0x400 is in page 1 of 1 KiB
    assert stats["commands"]["Extended Erase"] == 1 and "Erase" not in stats["commands"]
    expected = bytearray(old + b"\xff" * (32 * 1024 - 2048))
    expected[1024:2048] = b"\xff" * 1024
    expected[1024:1028] = b"\x10\x20\x30\x40"
    assert dump.read_bytes() == expected


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_silent_board(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary = tmp_path / "fw.bin"
    binary.write_bytes(firmware(1024))
    with PtyBootloader(VirtualStm32Bootloader(faults=BootloaderFaults(silent=True))) as sim:
        status, out, err = run_cli(capsys, "flash", "stm32", str(binary), "--port", sim.path, "--timeout", "0.2")
    assert status == 1 and out == ""
    assert err.startswith(f"gizdev flash: {sim.path}: no answer to the bootloader sync byte 0x7f after 3 attempts")


def test_nack_and_too_large(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary = tmp_path / "fw.bin"
    binary.write_bytes(firmware(2048))
    faults = BootloaderFaults(nack_writes=frozenset({2, 3}))
    with PtyBootloader(VirtualStm32Bootloader(faults=faults)) as sim:
        status, _, err = run_cli(capsys, "flash", "stm32", str(binary), "--port", sim.path, "--quiet")
    assert status == 1
    assert "refused Write Memory (0x31) at the data, address 0x08000100: refused again after 1 retry" in err

    binary.write_bytes(firmware(16 * 1024 + 4))
    with PtyBootloader(VirtualStm32Bootloader(BootloaderConfig(flash_bytes=16 * 1024))) as sim:
        status, _, err = run_cli(capsys, "flash", "stm32", str(binary), "--port", sim.path)
        assert sim.bootloader.stats.writes == 0
    assert status == 1 and "16388 bytes do not fit into the 16 KiB flash" in err


def test_option_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hexfile = tmp_path / "fw.hex"
    hexfile.write_text(EOF_LINE + "\n")
    status, _, err = run_cli(capsys, "flash", "stm32", str(hexfile), "--port", "/dev/null", "--address", "0x0")
    assert status == 1 and "--address is for .bin files" in err
    hexfile.write_text(record(0, 0, b"\x01") + "\n:0100000001FF\n" + EOF_LINE + "\n")
    status, _, err = run_cli(capsys, "flash", "stm32", str(hexfile), "--port", "/dev/null")
    assert status == 1 and f"{hexfile}:2: checksum 0xff, expected 0xfe" in err
    binary = tmp_path / "fw.bin"
    binary.write_bytes(b"\x00" * 4)
    with PtyBootloader(VirtualStm32Bootloader()) as sim:
        status, _, err = run_cli(capsys, "flash", "stm32", str(binary), "--port", sim.path, "--reset", "rts-dtr")
        assert status == 1 and "cannot drive" in err and "--reset none" in err
        status, _, err = run_cli(capsys, "flash", "stm32", str(binary), "--port", sim.path, "--reset", "gpio")
        assert status == 1 and "--reset gpio needs both --gpio-reset N and --gpio-boot0 N" in err
    with pytest.raises(SystemExit):
        main(["flash", "stm32", str(binary), "--port", "x", "--address", "banana"])
    assert "not an address" in capsys.readouterr().err


def test_module_command_reports_the_failed_sync(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary = tmp_path / "fw.bin"
    binary.write_bytes(b"\xe9" + b"\x00" * 255)
    with PtyBootloader(VirtualStm32Bootloader(faults=BootloaderFaults(silent=True))) as sim:
        status, out, err = run_cli(
            capsys,
            "flash",
            "module",
            str(binary),
            "--port",
            sim.path,
            "--before",
            "no-reset",
            "--connect-attempts",
            "1",
        )
    assert status == 1 and out == ""
    assert f"gizdev flash: {sim.path}: no answer from the module's ROM bootloader" in err
    assert "Connecting" in err  # esptool's own output came through


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("stm32", ["--backup", "--go", "--erase", "--reset", "--invert-boot0", "--gpio-reset", "retried once"]),
        ("module", ["--flash-mode", "--erase-all", "--baud", "esptool"]),
        ("sim-bootloader", ["--nack-write", "--corrupt-read", "--drop-sync", "--silent", '{"pty"']),
    ],
)
def test_help(capsys: pytest.CaptureFixture[str], target: str, expected: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["flash", target, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in expected:
        assert word in text
