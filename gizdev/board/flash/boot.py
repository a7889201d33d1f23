"""Putting an STM32 into its ROM bootloader and back: BOOT0 and RESET driven by DTR/RTS or by GPIO pins.

The bootloader runs when the chip leaves reset with BOOT0 high. So: BOOT0 high, RESET low for a moment, RESET
high, wait for the bootloader to start; afterwards BOOT0 low and another reset pulse start the new firmware.

Adapters and boards wire the lines differently (through a transistor, which inverts, or not), so each line has
an inversion flag. Without inversion, "asserted" DTR/RTS (pyserial ``True``, a low level on the adapter pin)
means RESET active and BOOT0 high; a GPIO pin drives 1 for BOOT0 high and 0 for RESET active.

GPIO goes through the Linux sysfs interface (``/sys/class/gpio``: export, direction, value). On kernels whose
GPIO numbers are offset (Raspberry Pi OS with 6.x kernels numbers the header pins from 512), pass the sysfs
number: the BCM number plus the ``base`` of ``/sys/class/gpio/gpiochip*``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gizdev.board.flash.port import LineControl
from gizdev.errors import TransportError

__all__ = ["BootControl", "GpioBoot", "LineBoot", "NoBoot", "OutputPin", "SysfsGpioPin"]

_LOGGER = logging.getLogger(__name__)

RESET_PULSE_S = 0.1
#: The ROM bootloader needs a few ms after reset before it listens; generous for slow adapters.
BOOTLOADER_START_S = 0.2
SYSFS_GPIO = Path("/sys/class/gpio")
#: udev may need a moment to make a freshly exported pin writable.
_EXPORT_WAIT_S = 1.0


class BootControl(Protocol):
    """Gets the chip into the bootloader before flashing and into the new firmware afterwards."""

    def enter_bootloader(self) -> None:
        """BOOT0 high, reset pulse."""
        ...

    def start_firmware(self, *, reset: bool) -> None:
        """BOOT0 low, and a reset pulse if ``reset`` (not needed when Go started the program)."""
        ...


class NoBoot:
    """The user put the board into the bootloader by hand (jumper and reset button)."""

    def enter_bootloader(self) -> None:
        """Nothing to do."""

    def start_firmware(self, *, reset: bool) -> None:
        """Nothing to do."""


class OutputPin(Protocol):
    """One output line."""

    def set(self, high: bool) -> None:
        """Drive the line."""
        ...


class _Sequence:
    """The pulse sequence over two abstract outputs: ``reset(active)`` and ``boot0(high)``."""

    def __init__(self, reset: Callable[[bool], None], boot0: Callable[[bool], None], sleep: Callable[[float], None]):
        self._reset = reset
        self._boot0 = boot0
        self._sleep = sleep

    def enter_bootloader(self) -> None:
        _LOGGER.info("BOOT0 high, resetting into the bootloader")
        self._boot0(True)
        self._pulse()
        self._sleep(BOOTLOADER_START_S)

    def start_firmware(self, *, reset: bool) -> None:
        _LOGGER.info("BOOT0 low%s", ", resetting into the firmware" if reset else "")
        self._boot0(False)
        if reset:
            self._pulse()

    def _pulse(self) -> None:
        self._reset(True)
        self._sleep(RESET_PULSE_S)
        self._reset(False)


class LineBoot(_Sequence):
    """RESET and BOOT0 on the adapter's DTR and RTS (``reset_line`` "rts" or "dtr", BOOT0 on the other)."""

    def __init__(
        self,
        lines: LineControl,
        *,
        reset_line: str = "rts",
        invert_reset: bool = False,
        invert_boot0: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if reset_line not in ("rts", "dtr"):
            raise ValueError(f"reset_line must be rts or dtr, not {reset_line!r}")
        reset_set = lines.set_rts if reset_line == "rts" else lines.set_dtr
        boot0_set = lines.set_dtr if reset_line == "rts" else lines.set_rts
        super().__init__(
            lambda active: reset_set(active != invert_reset),
            lambda high: boot0_set(high != invert_boot0),
            sleep,
        )


class GpioBoot(_Sequence):
    """RESET and BOOT0 on GPIO pins (e.g. of the Raspberry Pi the board hangs off)."""

    def __init__(
        self,
        reset: OutputPin,
        boot0: OutputPin,
        *,
        invert_reset: bool = False,
        invert_boot0: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Not inverted: RESET is active low (nRST), BOOT0 active high.
        super().__init__(
            lambda active: reset.set((not active) != invert_reset),
            lambda high: boot0.set(high != invert_boot0),
            sleep,
        )


class SysfsGpioPin:
    """An output pin through ``/sys/class/gpio`` (exported on first use, left exported)."""

    def __init__(self, number: int, *, root: Path = SYSFS_GPIO) -> None:
        self.number = number
        self._root = root
        self._ready = False

    def set(self, high: bool) -> None:
        """Drive the pin."""
        pin = self._root / f"gpio{self.number}"
        try:
            if not self._ready:
                if not pin.exists():
                    (self._root / "export").write_text(str(self.number))
                self._write_when_ready(pin / "direction", "out")
                self._ready = True
            (pin / "value").write_text("1" if high else "0")
        except OSError as exc:
            raise TransportError(f"GPIO {self.number} via {self._root}: {exc.strerror or exc}") from exc

    def _write_when_ready(self, path: Path, text: str) -> None:
        deadline = time.monotonic() + _EXPORT_WAIT_S
        while True:
            try:
                path.write_text(text)
                return
            except (FileNotFoundError, PermissionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
