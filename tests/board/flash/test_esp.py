"""The esptool wrapper: its command line, and real esptool runs that fail the ways a user meets first."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gizdev.board.flash.errors import FirmwareFileError, FlashError
from gizdev.board.flash.esp import EspFlashOptions, esptool_command, flash_module, map_esptool_failure
from gizdev.errors import TransportError
from gizdev.transport import open_pty_pair


def test_command_line_defaults(tmp_path: Path) -> None:
    firmware = tmp_path / "gagent.bin"
    args = esptool_command(EspFlashOptions(port="/dev/ttyUSB1", firmware=firmware))
    # esptool v5's global options come before the command, write-flash's after it, then address/file pairs.
    assert args == [
        "--chip", "esp8266", "--port", "/dev/ttyUSB1", "--baud", "115200",
        "--before", "default-reset", "--after", "hard-reset", "--connect-attempts", "7",
        "write-flash", "--flash-mode", "keep", "0x0", str(firmware),
    ]  # fmt: skip


def test_command_line_options() -> None:
    options = EspFlashOptions(
        port="/dev/ttyUSB0",
        firmware=Path("fw.bin"),
        address=0x1000,
        baud=460800,
        flash_mode="dio",
        flash_size="4MB",
        erase_all=True,
        before="no-reset",
        after="no-reset",
        connect_attempts=2,
    )
    args = esptool_command(options)
    assert args[args.index("--baud") + 1] == "460800"
    assert args[args.index("--before") + 1] == "no-reset" and args[args.index("--after") + 1] == "no-reset"
    assert args[args.index("write-flash") :] == [
        "write-flash", "--flash-mode", "dio", "--flash-size", "4MB", "--erase-all", "0x1000", "fw.bin",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"flash_mode": "fast"}, "flash mode 'fast'"),
        ({"before": "usb-magic"}, "--before 'usb-magic'"),
        ({"after": "explode"}, "--after 'explode'"),
        ({"address": 0x800}, "0x800 is not a multiple of 0x1000"),
    ],
)
def test_command_line_refusals(change: dict[str, object], message: str) -> None:
    options = EspFlashOptions(port="/dev/ttyUSB0", firmware=Path("fw.bin"))
    with pytest.raises(FlashError, match=message):
        esptool_command(EspFlashOptions(**{**_fields(options), **change}))  # type: ignore[arg-type]


def _fields(options: EspFlashOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in options.__slots__}


def test_error_mapping_of_esptool_messages() -> None:
    # Lines as esptool 5 prints them.
    no_sync = ["Connecting.....", "", "A fatal error occurred: Failed to connect to ESP8266: No serial data received."]
    error = map_esptool_failure("/dev/ttyUSB1", 2, no_sync)
    assert isinstance(error, FlashError) and "no answer from the module's ROM bootloader" in str(error)
    assert "GPIO0" in str(error) and "No serial data received" in str(error)
    busy = [
        " ERROR: A fatal error occurred: Could not open /dev/ttyUSB9, the port is busy or doesn't exist.",
        "([Errno 2] could not open port /dev/ttyUSB9: [Errno 2] No such file or directory: '/dev/ttyUSB9')",
        "",
        "Hint: Check if the port is correct and ESP connected",
    ]
    error = map_esptool_failure("/dev/ttyUSB9", 2, busy)
    assert isinstance(error, TransportError) and "No such file or directory" in str(error)
    assert "Hint" not in str(error)
    other = ["A fatal error occurred: This chip is ESP32, not ESP8266. Wrong --chip argument?"]
    assert "not the chip expected" in str(map_esptool_failure("p", 2, other))
    unknown = map_esptool_failure("p", 1, ["Traceback ...", "KeyError: 'x'"])
    assert str(unknown) == "p: esptool failed (exit status 1): KeyError: 'x'"
    assert "no output" in str(map_esptool_failure("p", 1, []))


def test_real_esptool_fails_to_sync_on_a_silent_pty(tmp_path: Path) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(bytes(range(256)) * 16)
    out = io.StringIO()
    with open_pty_pair() as pair:
        options = EspFlashOptions(
            port=pair.slave_path, firmware=firmware, before="no-reset", after="no-reset", connect_attempts=1
        )
        with pytest.raises(FlashError) as caught:
            flash_module(options, output=out)
    assert f"{pair.slave_path}: no answer from the module's ROM bootloader" in str(caught.value)
    assert "Connecting" in out.getvalue()  # esptool's own progress was streamed through


def test_real_esptool_on_a_missing_port(tmp_path: Path) -> None:
    firmware = tmp_path / "fw.bin"
    firmware.write_bytes(b"\xe9" + b"\x00" * 15)
    options = EspFlashOptions(port="/dev/nonexistent-gizdev", firmware=firmware, connect_attempts=1)
    with pytest.raises(TransportError, match="/dev/nonexistent-gizdev: esptool could not open the port"):
        flash_module(options, output=io.StringIO())


def test_firmware_problems_are_found_before_esptool_runs(tmp_path: Path) -> None:
    out = io.StringIO()
    with pytest.raises(FirmwareFileError, match="cannot read"):
        flash_module(EspFlashOptions(port="/dev/null", firmware=tmp_path / "missing.bin"), output=out)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(FirmwareFileError, match="the file is empty"):
        flash_module(EspFlashOptions(port="/dev/null", firmware=empty), output=out)
    assert out.getvalue() == ""  # esptool never started
