"""Flashing the ESP8266 WiFi module with esptool: building its command line, streaming its output, mapping errors.

esptool runs as ``python -m esptool`` in a child process rather than imported: it prints its progress itself,
exits the process on fatal errors and sets up its own logging, none of which belongs in the caller's process.
It comes with the ``flash`` extra; its presence is checked before anything is started, for a clear message.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gizdev.board.flash.errors import FirmwareFileError, FlashError
from gizdev.errors import TransportError

__all__ = [
    "AFTER_CHOICES",
    "BEFORE_CHOICES",
    "FLASH_MODES",
    "EspFlashOptions",
    "esptool_command",
    "flash_module",
    "map_esptool_failure",
]

_LOGGER = logging.getLogger(__name__)

FLASH_MODES = ("keep", "qio", "qout", "dio", "dout")
BEFORE_CHOICES = ("default-reset", "no-reset", "no-reset-no-sync")
AFTER_CHOICES = ("hard-reset", "soft-reset", "no-reset")
#: How much of esptool's output is kept to explain a failure.
_TAIL_LINES = 40
_FATAL = re.compile(r"A fatal error occurred:\s*(.*)")


@dataclass(frozen=True, slots=True)
class EspFlashOptions:
    """One write of a firmware file to the module's SPI flash."""

    port: str
    firmware: Path
    address: int = 0x0
    baud: int = 115200
    chip: str = "esp8266"
    flash_mode: str = "keep"
    flash_size: str | None = None  # esptool's default (keep what the image header says)
    erase_all: bool = False
    before: str = "default-reset"
    after: str = "hard-reset"
    connect_attempts: int = 7  # esptool's own default


def esptool_command(options: EspFlashOptions) -> list[str]:
    """esptool's arguments (without the program) for ``options``; checks what esptool would only check late."""
    if options.flash_mode not in FLASH_MODES:
        raise FlashError(f"flash mode {options.flash_mode!r} is not one of {', '.join(FLASH_MODES)}")
    if options.before not in BEFORE_CHOICES:
        raise FlashError(f"--before {options.before!r} is not one of {', '.join(BEFORE_CHOICES)}")
    if options.after not in AFTER_CHOICES:
        raise FlashError(f"--after {options.after!r} is not one of {', '.join(AFTER_CHOICES)}")
    if options.address < 0 or options.address % 0x1000:
        # The SPI flash erases 4 KiB sectors; esptool refuses other addresses, but only after connecting.
        raise FlashError(f"address 0x{options.address:x} is not a multiple of 0x1000 (the flash's 4 KiB sector)")
    args = [
        "--chip",
        options.chip,
        "--port",
        options.port,
        "--baud",
        str(options.baud),
        "--before",
        options.before,
        "--after",
        options.after,
        "--connect-attempts",
        str(options.connect_attempts),
        "write-flash",
        "--flash-mode",
        options.flash_mode,
    ]
    if options.flash_size is not None:
        args += ["--flash-size", options.flash_size]
    if options.erase_all:
        args.append("--erase-all")
    args += [f"0x{options.address:x}", os.fspath(options.firmware)]
    return args


def map_esptool_failure(port: str, returncode: int, output: Sequence[str]) -> Exception:
    """The gizdev error for an esptool run that failed, from its exit status and last lines of output."""
    fatal = ""
    for index, line in enumerate(output):
        match = _FATAL.search(line)
        if match:
            # esptool continues the message on following lines (e.g. the OS error); keep them, up to a hint.
            rest = [more.strip() for more in output[index + 1 : index + 3] if more.strip() and "Hint" not in more]
            fatal = " ".join([match.group(1).strip(), *rest]).strip()
    text = fatal or (output[-1].strip() if output else "no output")
    if "Could not open" in text or "could not open port" in text:
        return TransportError(f"{port}: esptool could not open the port (busy or missing): {text}")
    if "Failed to connect" in text or "No serial data received" in text:
        return FlashError(
            f"{port}: no answer from the module's ROM bootloader ({text}); is GPIO0 held low at reset (or does the "
            "adapter's DTR/RTS do it), is this the module's port and is it powered?"
        )
    if "Wrong --chip" in text or "This chip is" in text:
        return FlashError(f"{port}: not the chip expected: {text}")
    return FlashError(f"{port}: esptool failed (exit status {returncode}): {text}")


def flash_module(options: EspFlashOptions, *, output: TextIO | None = None) -> None:
    """Run esptool's write-flash; its output goes to ``output`` (stderr) as it comes; errors become gizdev errors."""
    out = output if output is not None else sys.stderr
    path = os.fspath(options.firmware)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise FirmwareFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        raise FirmwareFileError(path, "the file is empty")
    args = esptool_command(options)
    if importlib.util.find_spec("esptool") is None:
        raise FlashError("esptool is not installed (pip install 'gizdev[flash]')")
    _LOGGER.info("%s: running esptool %s", options.port, " ".join(args))
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "esptool", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except OSError as exc:
        raise FlashError(f"cannot start esptool: {exc.strerror or exc}") from exc
    assert process.stdout is not None
    with process:
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            out.write(line)
            out.flush()
        returncode = process.wait()
    if returncode != 0:
        raise map_esptool_failure(options.port, returncode, list(tail))
    _LOGGER.info("%s: esptool wrote %d bytes at 0x%x", options.port, size, options.address)
