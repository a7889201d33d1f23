"""Flashing an STM32 through its ROM bootloader: identify, check the fit, back up, erase, write, verify, start.

Retry policy, explicit because a flasher that papers over errors leaves boards with half an image: a Write
Memory that the bootloader NACKs is retried once, the same block at the same address; a second
NACK ends the flash with an error naming the command and the address. Every other NACK (erase, read, go) and every
timeout ends the flash at once. Nothing continues past a failed block.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gizdev.board.flash.errors import BootloaderNack, FlashError, ImageTooLarge, VerifyError
from gizdev.board.flash.image import FirmwareImage
from gizdev.board.flash.progress import NullProgress, Progress
from gizdev.board.flash.stm32 import BootloaderInfo, Stm32Bootloader
from gizdev.protocol.stm32_boot import (
    CHIPS,
    CMD_ERASE,
    CMD_EXTENDED_ERASE,
    CMD_READ_MEMORY,
    EXTENDED_ERASE_MAX_PAGES,
    FLASH_BASE,
    MAX_BLOCK_BYTES,
    Chip,
)

__all__ = ["ChipReport", "EraseMode", "FlashPlan", "flash_stm32", "identify", "write_blocks"]

_LOGGER = logging.getLogger(__name__)

EraseMode = Literal["pages", "global", "none"]
WRITE_RETRIES = 1
_WORD = 4  # flash is programmed in whole words through the bootloader


@dataclass(frozen=True, slots=True)
class ChipReport:
    """Who answered: bootloader, product ID, chip family (None if not in the table), flash size and layout."""

    info: BootloaderInfo
    product_id: int
    chip: Chip | None
    flash_bytes: int
    flash_size_source: str

    @property
    def name(self) -> str:
        """The family, or the bare ID."""
        return self.chip.name if self.chip else f"unknown chip 0x{self.product_id:03x}"


@dataclass(frozen=True, slots=True)
class FlashPlan:
    """What to do besides writing."""

    erase: EraseMode = "pages"
    verify: bool = True
    backup: Path | None = None
    go: int | None = None  # the address for Go, None for no Go
    flash_bytes: int | None = None  # overrides what the chip reports (for IDs not in the table)


def identify(bootloader: Stm32Bootloader, *, flash_bytes: int | None = None) -> ChipReport:
    """Get, Get ID and the flash-size register (if the family has one and the chip lets us read it)."""
    info = bootloader.get()
    product_id = bootloader.get_id()
    chip = CHIPS.get(product_id)
    _LOGGER.info(
        "%s: bootloader %s, product ID 0x%03x (%s), commands %s",
        bootloader.stream.name,
        info.version_text,
        product_id,
        chip.name if chip else "not in the chip table",
        " ".join(f"{command:02x}" for command in sorted(info.commands)),
    )
    if flash_bytes is not None:
        return ChipReport(info, product_id, chip, flash_bytes, "given")
    if chip is None:
        raise FlashError(
            f"product ID 0x{product_id:03x} is not in the chip table, so its flash size is unknown; "
            "give it with --flash-size"
        )
    if chip.flash_size_register is not None and CMD_READ_MEMORY in info.commands:
        try:
            raw = bootloader.read_memory(chip.flash_size_register, 2)
        except BootloaderNack as exc:
            # Read-protected chips refuse every read; the family's maximum is then the best we know.
            _LOGGER.warning("%s: flash-size register unreadable (%s); assuming the family maximum", chip.name, exc)
        else:
            kib = int.from_bytes(raw, "little")
            if 0 < kib * 1024 <= chip.max_flash_bytes:
                return ChipReport(info, product_id, chip, kib * 1024, f"register 0x{chip.flash_size_register:08x}")
            _LOGGER.warning(
                "%s: flash-size register says %d KiB, implausible; using the family maximum", chip.name, kib
            )
    return ChipReport(info, product_id, chip, chip.max_flash_bytes, "family maximum")


def write_blocks(image: FirmwareImage) -> list[tuple[int, bytes]]:
    """The image as Write Memory blocks: word aligned (padded with 0xFF), at most 256 bytes, none crossing a
    256-byte boundary, and no word written twice even where two segments share it."""
    spans: list[tuple[int, bytearray]] = []
    for segment in image.segments:
        start = segment.address - segment.address % _WORD
        end = -(-segment.end // _WORD) * _WORD
        if spans and start < spans[-1][0] + len(spans[-1][1]):
            base, buffer = spans[-1]
            buffer.extend(b"\xff" * (end - base - len(buffer)))
        else:
            base, buffer = start, bytearray(b"\xff" * (end - start))
            spans.append((base, buffer))
        buffer[segment.address - base : segment.end - base] = segment.data
    blocks: list[tuple[int, bytes]] = []
    for base, buffer in spans:
        address = base
        while address < base + len(buffer):
            block_end = min(base + len(buffer), (address // MAX_BLOCK_BYTES + 1) * MAX_BLOCK_BYTES)
            blocks.append((address, bytes(buffer[address - base : block_end - base])))
            address = block_end
    return blocks


def check_fits(image: FirmwareImage, report: ChipReport) -> None:
    """Refuse an image larger than the flash, or any part of it outside the flash."""
    flash_end = FLASH_BASE + report.flash_bytes
    if image.size > report.flash_bytes:
        raise ImageTooLarge(
            f"{image.source}: {image.size} bytes do not fit into the {report.flash_bytes // 1024} KiB flash of "
            f"the {report.name} ({report.flash_size_source})"
        )
    if image.start < FLASH_BASE or image.end > flash_end:
        raise ImageTooLarge(
            f"{image.source}: image spans 0x{image.start:08x}..0x{image.end - 1:08x}, outside the flash "
            f"0x{FLASH_BASE:08x}..0x{flash_end - 1:08x} of the {report.name} ({report.flash_size_source})"
        )


def erase_pages(image: FirmwareImage, report: ChipReport) -> list[int]:
    """Numbers of the erase units (pages or sectors) that the image touches."""
    if report.chip is None:
        raise FlashError(f"the erase layout of {report.name} is unknown; use --erase global")
    pages: list[int] = []
    for number, (offset, size) in enumerate(report.chip.erase_units(report.flash_bytes)):
        start, end = FLASH_BASE + offset, FLASH_BASE + offset + size
        if any(segment.address < end and segment.end > start for segment in image.segments):
            pages.append(number)
    return pages


def flash_stm32(
    bootloader: Stm32Bootloader, image: FirmwareImage, plan: FlashPlan, progress: Progress | None = None
) -> ChipReport:
    """Flash ``image``: the whole sequence of the module doc; raises a FlashError on the first failure."""
    progress = progress or NullProgress()
    name = bootloader.stream.name
    bootloader.sync()
    report = identify(bootloader, flash_bytes=plan.flash_bytes)
    check_fits(image, report)
    blocks = write_blocks(image)
    if plan.backup is not None:
        _backup(bootloader, report, plan.backup, progress)
    if plan.erase != "none":
        _erase(bootloader, image, report, plan.erase, progress)
    total = sum(len(data) for _, data in blocks)
    progress.start("write", total)
    done = 0
    for address, data in blocks:
        _write_with_retry(bootloader, address, data)
        done += len(data)
        progress.update(done)
    progress.finish()
    _LOGGER.info("%s: wrote %d bytes in %d blocks", name, total, len(blocks))
    if plan.verify:
        progress.start("verify", total)
        done = 0
        for address, data in blocks:
            actual = bootloader.read_memory(address, len(data))
            if actual != data:
                first = next(i for i, (a, b) in enumerate(zip(data, actual, strict=True)) if a != b)
                at = first - first % 16
                raise VerifyError(address + at, data[at : at + 16], actual[at : at + 16])
            done += len(data)
            progress.update(done)
        progress.finish()
        _LOGGER.info("%s: verified %d bytes", name, total)
    if plan.go is not None:
        bootloader.go(plan.go)
        _LOGGER.info("%s: started the program at 0x%08x", name, plan.go)
    return report


def _backup(bootloader: Stm32Bootloader, report: ChipReport, path: Path, progress: Progress) -> None:
    progress.start("backup", report.flash_bytes)
    data = bytearray()
    for address in range(FLASH_BASE, FLASH_BASE + report.flash_bytes, MAX_BLOCK_BYTES):
        data += bootloader.read_memory(address, min(MAX_BLOCK_BYTES, FLASH_BASE + report.flash_bytes - address))
        progress.update(len(data))
    progress.finish()
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise FlashError(f"cannot write the backup to {path}: {exc.strerror or exc}") from exc
    _LOGGER.info("%s: backed up %d bytes of flash to %s", bootloader.stream.name, len(data), path)


def _erase(
    bootloader: Stm32Bootloader, image: FirmwareImage, report: ChipReport, mode: EraseMode, progress: Progress
) -> None:
    if CMD_EXTENDED_ERASE in report.info.commands:
        extended = True
    elif CMD_ERASE in report.info.commands:
        extended = False
    else:
        raise FlashError(f"the bootloader of the {report.name} lists neither Erase (0x43) nor Extended Erase (0x44)")
    if mode == "global":
        progress.start("erase", report.flash_bytes)
        bootloader.erase(None, extended=extended)
        progress.finish()
        _LOGGER.info("%s: erased all of the flash", bootloader.stream.name)
        return
    pages = erase_pages(image, report)
    limit = EXTENDED_ERASE_MAX_PAGES if extended else 0x100
    if pages[-1] >= limit:
        raise FlashError(f"page {pages[-1]} cannot be erased one by one with this bootloader; use --erase global")
    assert report.chip is not None  # erase_pages checked
    units = report.chip.erase_units(report.flash_bytes)
    total = sum(units[page][1] for page in pages)
    progress.start("erase", total)
    done = 0
    # One command per page keeps the progress honest and each command well inside the erase timeout.
    for page in pages:
        bootloader.erase([page], extended=extended)
        done += units[page][1]
        progress.update(done)
    progress.finish()
    _LOGGER.info(
        "%s: erased %d page(s) %d..%d with %s",
        bootloader.stream.name,
        len(pages),
        pages[0],
        pages[-1],
        "Extended Erase (0x44)" if extended else "Erase (0x43)",
    )


def _write_with_retry(bootloader: Stm32Bootloader, address: int, data: bytes) -> None:
    for attempt in range(WRITE_RETRIES + 1):
        try:
            bootloader.write_memory(address, data)
            return
        except BootloaderNack as exc:
            if attempt == WRITE_RETRIES:
                raise BootloaderNack(
                    exc.command,
                    exc.name,
                    exc.stage,
                    address=exc.address,
                    detail=f"refused again after {WRITE_RETRIES} retry; the flash is only partly written",
                ) from exc
            # The bootloader waits for a new command after a NACK, so the block can go again as it is.
            _LOGGER.warning("%s: %s; retrying this block once", bootloader.stream.name, exc)
