"""BOOT0/RESET sequences: DTR/RTS through a recording LineControl (a pty has no modem lines), GPIO through a
sysfs tree laid out as the kernel does, and the clear error of a port without modem lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gizdev.board.flash.boot import BOOTLOADER_START_S, RESET_PULSE_S, GpioBoot, LineBoot, SysfsGpioPin
from gizdev.board.flash.port import open_stream
from gizdev.errors import TransportError
from gizdev.transport import open_pty_pair


class Lines:
    """Records DTR/RTS changes and pauses in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def set_dtr(self, active: bool) -> None:
        self.log.append(f"dtr={int(active)}")

    def set_rts(self, active: bool) -> None:
        self.log.append(f"rts={int(active)}")

    def sleep(self, seconds: float) -> None:
        self.log.append(f"sleep {seconds}")


def test_rts_reset_dtr_boot0() -> None:
    lines = Lines()
    boot = LineBoot(lines, reset_line="rts", sleep=lines.sleep)
    boot.enter_bootloader()
    # BOOT0 high first, then a reset pulse, then time for the bootloader to start.
    assert lines.log == ["dtr=1", "rts=1", f"sleep {RESET_PULSE_S}", "rts=0", f"sleep {BOOTLOADER_START_S}"]
    lines.log.clear()
    boot.start_firmware(reset=True)
    assert lines.log == ["dtr=0", "rts=1", f"sleep {RESET_PULSE_S}", "rts=0"]
    lines.log.clear()
    boot.start_firmware(reset=False)  # after Go: only BOOT0 low
    assert lines.log == ["dtr=0"]


def test_dtr_reset_with_inversions() -> None:
    lines = Lines()
    LineBoot(lines, reset_line="dtr", invert_reset=True, invert_boot0=True, sleep=lines.sleep).enter_bootloader()
    assert lines.log == ["rts=0", "dtr=0", f"sleep {RESET_PULSE_S}", "dtr=1", f"sleep {BOOTLOADER_START_S}"]
    with pytest.raises(ValueError, match="rts or dtr"):
        LineBoot(lines, reset_line="cts")


def fake_sysfs(root: Path, *numbers: int) -> None:
    """What the kernel shows once pins are exported: gpioN/direction and gpioN/value."""
    (root / "export").write_text("")
    for number in numbers:
        (root / f"gpio{number}").mkdir()
        (root / f"gpio{number}" / "direction").write_text("in")
        (root / f"gpio{number}" / "value").write_text("0")


def test_gpio_sequence_through_sysfs(tmp_path: Path) -> None:
    fake_sysfs(tmp_path, 529, 530)
    seen: list[tuple[str, str]] = []

    def sleep(seconds: float) -> None:
        # At each pause, the levels the board sees right then.
        seen.append(((tmp_path / "gpio529/value").read_text(), (tmp_path / "gpio530/value").read_text()))

    boot = GpioBoot(SysfsGpioPin(529, root=tmp_path), SysfsGpioPin(530, root=tmp_path), sleep=sleep)
    boot.enter_bootloader()
    # nRST is active low: held at 0 during the pulse with BOOT0 at 1; then released to 1.
    assert seen == [("0", "1"), ("1", "1")]
    assert (tmp_path / "gpio529/direction").read_text() == "out"
    assert (tmp_path / "gpio530/direction").read_text() == "out"
    boot.start_firmware(reset=True)
    assert (tmp_path / "gpio530/value").read_text() == "0" and (tmp_path / "gpio529/value").read_text() == "1"
    assert (tmp_path / "export").read_text() == ""  # already exported pins are not exported again


def test_gpio_export_then_missing_pin(tmp_path: Path) -> None:
    (tmp_path / "export").write_text("")
    pin = SysfsGpioPin(17, root=tmp_path)
    # The fake kernel never creates gpio17, so after exporting, the pin's files never appear.
    with pytest.raises(TransportError, match="GPIO 17 via"):
        pin.set(True)
    assert (tmp_path / "export").read_text() == "17"


def test_modem_lines_on_a_pty_give_a_clear_error() -> None:
    with open_pty_pair() as pair:
        stream = open_stream(pair.slave_path, baudrate=115200, parity="E")
        try:
            with pytest.raises(TransportError, match=r"cannot drive DTR.*use --reset none"):
                LineBoot(stream).enter_bootloader()
        finally:
            stream.close()


def test_open_stream_errors() -> None:
    with pytest.raises(TransportError, match="empty port name"):
        open_stream("", baudrate=115200)
    with pytest.raises(TransportError, match="/dev/nonexistent-gizdev: cannot open"):
        open_stream("/dev/nonexistent-gizdev", baudrate=115200)
