"""Errors of the flashers; every one is a :class:`~gizdev.errors.GizdevError`, so the CLI reports it plainly."""

from __future__ import annotations

from gizdev.errors import ConfigError, GizdevError, LinkError

__all__ = [
    "BootloaderNack",
    "BootloaderTimeout",
    "FirmwareFileError",
    "FlashError",
    "ImageTooLarge",
    "VerifyError",
]


class FlashError(GizdevError):
    """Flashing a board failed; the board may hold a partly written image now."""


class FirmwareFileError(ConfigError):
    """A firmware file cannot be used: unreadable, malformed Intel HEX (``line`` says where), empty."""

    def __init__(self, path: str, reason: str, *, line: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        super().__init__(path, reason, line)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


class ImageTooLarge(FlashError):
    """The image does not fit into the flash the chip reports, or lies (partly) outside of it."""


class BootloaderNack(FlashError, LinkError):
    """The ROM bootloader answered NACK (0x1F); ``command`` is the command byte, ``address`` the target, if any."""

    def __init__(self, command: int, name: str, stage: str, *, address: int | None = None, detail: str = "") -> None:
        self.command = command
        self.name = name
        self.stage = stage
        self.address = address
        self.detail = detail
        super().__init__(command, name, stage, address)

    def __str__(self) -> str:
        text = f"bootloader refused {self.name} (0x{self.command:02x}) at the {self.stage}"
        if self.address is not None:
            text += f", address 0x{self.address:08x}"
        if self.detail:
            text += f": {self.detail}"
        return text


class BootloaderTimeout(FlashError, LinkError, TimeoutError):
    """The ROM bootloader did not answer in time (a silent board, a wrong port or baud rate, BOOT0 low)."""


class VerifyError(FlashError):
    """What was read back differs from what was written."""

    def __init__(self, address: int, expected: bytes, actual: bytes) -> None:
        self.address = address
        self.expected = bytes(expected)
        self.actual = bytes(actual)
        super().__init__(address, expected, actual)

    def __str__(self) -> str:
        return f"verify failed at 0x{self.address:08x}: wrote {self.expected.hex()}, read back {self.actual.hex()}"
