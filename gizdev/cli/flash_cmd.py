"""``gizdev flash``: program an STM32 board through its ROM bootloader, the ESP8266 WiFi module through esptool,
and run a virtual STM32 bootloader on a pty to try the former without hardware."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from gizdev.board.flash.boot import BootControl, GpioBoot, LineBoot, NoBoot, SysfsGpioPin
from gizdev.board.flash.esp import AFTER_CHOICES, BEFORE_CHOICES, FLASH_MODES, EspFlashOptions, flash_module
from gizdev.board.flash.image import load_firmware
from gizdev.board.flash.port import open_stream
from gizdev.board.flash.progress import NullProgress, Progress, ProgressReporter
from gizdev.board.flash.stm32 import ANSWER_TIMEOUT_S, ERASE_TIMEOUT_S, Stm32Bootloader
from gizdev.board.flash.stm32_flasher import FlashPlan, flash_stm32
from gizdev.cli import options
from gizdev.errors import ConfigError
from gizdev.protocol.stm32_boot import FLASH_BASE
from gizdev.sim.stm32_bootloader import BootloaderConfig, BootloaderFaults, PtyBootloader, VirtualStm32Bootloader

_LOGGER = logging.getLogger(__name__)

FLASH_HELP = """\
Program boards:
  stm32           an STM32 through its ROM UART bootloader (AN3155): BOOT0 high and reset, or --reset
  module          the ESP8266-based WiFi module through esptool (pip install 'gizdev[flash]')
  sim-bootloader  a virtual STM32 bootloader on a pty, to try 'flash stm32' without a board
"""

STM32_HELP = """\
Program an STM32 through its ROM UART bootloader (ST AN3155) over a serial port (8E1).

Steps: sync (0x7F), identify (Get, Get ID, the flash-size register), refuse an image that does not fit the flash
the chip reports, optionally back up the whole flash, erase (Extended Erase 0x44 if the bootloader lists it,
else Erase 0x43; the pages the image touches, or all), write in 256-byte blocks, read everything back and
compare, optionally start the program (Go).

A Write Memory the bootloader refuses (NACK) is retried once, same block and address; a second refusal, and any
other NACK or timeout, ends the run with an error naming the command and address (exit status 1). Nothing is
resumed silently: after a failure the flash holds a partial image; run the command again.

Progress goes to stderr; the last line on stdout says what was flashed.

examples:
  gizdev flash stm32 firmware.hex --port /dev/ttyUSB0 --reset rts-dtr --go
  gizdev flash stm32 firmware.bin --port /dev/serial0 --reset gpio --gpio-reset 529 --gpio-boot0 530
  gizdev flash stm32 app.bin --port /dev/pts/5 --address 0x08004000 --backup old.bin --erase pages
"""

MODULE_HELP = """\
Write a firmware file to the ESP8266 WiFi module's SPI flash with esptool (write-flash), at 0x0 unless
--address says otherwise. esptool's own progress is shown on stderr as it runs; its failures are reported as
gizdev errors (no answer from the module, port missing or busy, wrong chip). The module must be in its ROM
bootloader: GPIO0 low at reset, done by the adapter's DTR/RTS with --before default-reset, else by hand.

example:
  gizdev flash module gagent_esp8266.bin --port /dev/ttyUSB1 --baud 460800 --flash-mode dio
"""

SIM_HELP = """\
Run a virtual STM32 ROM bootloader on a new pseudo-terminal. The first line on stdout is a JSON object with the
path to open: {"pty": "/dev/pts/N", "chip_id": "0x410", "flash_bytes": 65536}. It runs until SIGINT or SIGTERM,
then prints one JSON line with what it saw (syncs, commands, writes, erased pages, the Go address) and, with
--dump FILE, writes its flash contents to FILE.

The memory model follows the hardware: flash starts erased (or holds --initial), writes must be word aligned and
hit erased flash only, reads and writes outside flash, RAM (0x20000000) and the flash-size register are refused.

(It lives under 'flash' because 'gizdev sim' is the virtual MCU, a command with options of its own.)

example:
  gizdev flash sim-bootloader --flash-kib 128 --extended-erase --nack-write 3
"""


def address(text: str) -> int:
    """An address or size: decimal or 0x hex, 32 bits."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address (decimal or 0x...): {text!r}") from None
    if not 0 <= value < 1 << 32:
        raise argparse.ArgumentTypeError(f"not a 32-bit address: {text}")
    return value


def register(commands: Any) -> None:
    flash = commands.add_parser(
        "flash",
        help="program an STM32 board or the ESP8266 WiFi module",
        description=FLASH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = flash.add_subparsers(dest="target", metavar="TARGET", required=True)
    _register_stm32(targets)
    _register_module(targets)
    _register_sim(targets)


def _register_stm32(targets: Any) -> None:
    stm32 = targets.add_parser(
        "stm32",
        help="program an STM32 through its ROM UART bootloader",
        description=STM32_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stm32.add_argument("firmware", metavar="FIRMWARE", type=Path, help="image: Intel HEX (.hex) or raw binary")
    options.add_port_option(stm32, help="serial device or pty path (or a pyserial URL: socket://...)")
    options.add_baud_option(stm32, default=115200, help="line speed, 8E1 (default 115200; 57600 is safer)")
    stm32.add_argument(
        "--address",
        type=address,
        help=f"where a raw binary goes (default 0x{FLASH_BASE:08x}, the flash base); not for .hex files",
    )
    stm32.add_argument(
        "--format", choices=("auto", "bin", "hex"), default="auto", help="firmware format (default: by extension)"
    )
    stm32.add_argument(
        "--erase",
        choices=("pages", "global", "none"),
        default="pages",
        help="erase the pages the image touches (default), all of the flash, or nothing (flash already erased)",
    )
    stm32.add_argument("--no-verify", action="store_true", help="do not read the image back to compare")
    stm32.add_argument(
        "--backup", metavar="FILE", type=Path, help="first read the whole flash into FILE (as it was before)"
    )
    stm32.add_argument(
        "--go",
        nargs="?",
        const=-1,
        type=address,
        metavar="ADDRESS",
        help="start the program afterwards with Go (at ADDRESS, default: the image's first address)",
    )
    stm32.add_argument(
        "--flash-size",
        metavar="KIB",
        type=options.positive_int,
        help="flash size in KiB, instead of what the chip reports (needed for chips not in the table)",
    )
    boot = stm32.add_argument_group("BOOT0 and RESET control (default: none; put the board into its bootloader)")
    boot.add_argument(
        "--reset",
        choices=("none", "rts-dtr", "dtr-rts", "gpio"),
        default="none",
        help="rts-dtr: RESET on RTS and BOOT0 on DTR; dtr-rts: the other way round; gpio: --gpio-reset and "
        "--gpio-boot0 pins (sysfs numbers); afterwards BOOT0 goes low and, without --go, RESET is pulsed",
    )
    boot.add_argument(
        "--invert-reset", action="store_true", help="RESET is active when the line is released (not asserted/high)"
    )
    boot.add_argument("--invert-boot0", action="store_true", help="BOOT0 is high when the line is released/low")
    boot.add_argument("--gpio-reset", metavar="N", type=int, help="sysfs GPIO number wired to nRST (--reset gpio)")
    boot.add_argument("--gpio-boot0", metavar="N", type=int, help="sysfs GPIO number wired to BOOT0 (--reset gpio)")
    stm32.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=options.positive_seconds,
        default=ANSWER_TIMEOUT_S,
        help=f"wait for each answer (default {ANSWER_TIMEOUT_S:g}; erases get {ERASE_TIMEOUT_S:g})",
    )
    stm32.add_argument("--quiet", action="store_true", help="no progress bar")
    stm32.set_defaults(run=run_stm32)


def _register_module(targets: Any) -> None:
    module = targets.add_parser(
        "module",
        help="program the ESP8266 WiFi module with esptool",
        description=MODULE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_argument("firmware", metavar="FIRMWARE", type=Path, help="raw binary image for the module")
    options.add_port_option(module, help="serial device of the module")
    options.add_baud_option(module, default=115200, help="flashing speed (default 115200)")
    module.add_argument("--address", type=address, default=0, help="flash offset (default 0x0), 4 KiB aligned")
    module.add_argument("--flash-mode", choices=FLASH_MODES, default="keep", help="SPI flash mode (default keep)")
    module.add_argument("--flash-size", metavar="SIZE", help="SPI flash size for the image header (e.g. 4MB)")
    module.add_argument("--erase-all", action="store_true", help="erase all of the flash first, not only the image")
    module.add_argument("--before", choices=BEFORE_CHOICES, default="default-reset", help="reset before connecting")
    module.add_argument("--after", choices=AFTER_CHOICES, default="hard-reset", help="reset after writing")
    module.add_argument(
        "--connect-attempts", type=options.positive_int, default=7, help="esptool's sync attempts (default 7)"
    )
    module.set_defaults(run=run_module)


def _register_sim(targets: Any) -> None:
    sim = targets.add_parser(
        "sim-bootloader",
        help="run a virtual STM32 bootloader on a pty",
        description=SIM_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--chip-id", type=address, default=0x410, help="product ID for Get ID (default 0x410, F103)")
    sim.add_argument("--flash-kib", type=options.positive_int, default=64, help="flash size in KiB (default 64)")
    sim.add_argument("--page-bytes", type=options.positive_int, default=1024, help="erase page size (default 1024)")
    sim.add_argument("--bl-version", type=address, default=0x22, help="bootloader version byte (default 0x22)")
    sim.add_argument(
        "--extended-erase", action="store_true", help="offer Extended Erase (0x44) instead of Erase (0x43)"
    )
    options.add_baud_option(
        sim, default=None, help="take as long per byte as a UART at this speed, 8E1 (default: as fast as the pty goes)"
    )
    sim.add_argument("--initial", metavar="FILE", type=Path, help="flash contents at start (a raw binary)")
    sim.add_argument("--dump", metavar="FILE", type=Path, help="write the flash contents to FILE when stopped")
    faults = sim.add_argument_group("fault injection (ordinals count from 1 over the session, retries included)")
    faults.add_argument("--nack-write", metavar="N", type=options.positive_int, action="append", default=[],
                        help="NACK the N-th Write Memory (repeatable)")  # fmt: skip
    faults.add_argument("--corrupt-read", metavar="N", type=options.positive_int, action="append", default=[],
                        help="flip a bit in the data of the N-th Read Memory (repeatable)")  # fmt: skip
    faults.add_argument("--nack-command", metavar="BYTE", type=address, action="append", default=[],
                        help="NACK this command byte, e.g. 0x21 (repeatable)")  # fmt: skip
    faults.add_argument("--silent", action="store_true", help="answer nothing")
    faults.add_argument("--drop-sync", action="store_true", help="ignore the 0x7F sync byte")
    faults.add_argument("--silent-after-writes", metavar="N", type=int, help="stop answering after N writes")
    sim.set_defaults(run=run_sim_bootloader)


# ---- stm32 ----------------------------------------------------------------------------------------------------


def _boot_control(args: argparse.Namespace, stream: Any) -> BootControl:
    if args.reset == "none":
        if args.gpio_reset is not None or args.gpio_boot0 is not None:
            raise ConfigError("--gpio-reset and --gpio-boot0 need --reset gpio")
        return NoBoot()
    if args.reset == "gpio":
        if args.gpio_reset is None or args.gpio_boot0 is None:
            raise ConfigError("--reset gpio needs both --gpio-reset N and --gpio-boot0 N")
        return GpioBoot(
            SysfsGpioPin(args.gpio_reset),
            SysfsGpioPin(args.gpio_boot0),
            invert_reset=args.invert_reset,
            invert_boot0=args.invert_boot0,
        )
    return LineBoot(
        stream,
        reset_line="rts" if args.reset == "rts-dtr" else "dtr",
        invert_reset=args.invert_reset,
        invert_boot0=args.invert_boot0,
    )


def run_stm32(args: argparse.Namespace) -> int:
    image = load_firmware(args.firmware, address=args.address, fmt=args.format, default_address=FLASH_BASE)
    go = None if args.go is None else (image.start if args.go == -1 else args.go)
    plan = FlashPlan(
        erase=args.erase,
        verify=not args.no_verify,
        backup=args.backup,
        go=go,
        flash_bytes=args.flash_size * 1024 if args.flash_size else None,
    )
    progress: Progress = NullProgress() if args.quiet else ProgressReporter(sys.stderr)
    stream = open_stream(args.port, baudrate=args.baud, parity="E")
    try:
        boot = _boot_control(args, stream)
        boot.enter_bootloader()
        started = time.monotonic()
        report = flash_stm32(Stm32Bootloader(stream, timeout_s=args.timeout), image, plan, progress)
        took = time.monotonic() - started
        boot.start_firmware(reset=go is None)
    finally:
        stream.close()
    parts = [
        f"flashed {image.size} bytes ({image.source}) to the {report.name} (ID 0x{report.product_id:03x}, "
        f"{report.flash_bytes // 1024} KiB flash) on {args.port} in {took:.1f} s",
        "verified" if plan.verify else "not verified",
    ]
    if plan.backup is not None:
        parts.append(f"previous flash saved to {plan.backup}")
    if go is not None:
        parts.append(f"started at 0x{go:08x}")
    print("; ".join(parts))
    return 0


# ---- module -----------------------------------------------------------------------------------------------------


def run_module(args: argparse.Namespace) -> int:
    flash_module(
        EspFlashOptions(
            port=args.port,
            firmware=args.firmware,
            address=args.address,
            baud=args.baud,
            flash_mode=args.flash_mode,
            flash_size=args.flash_size,
            erase_all=args.erase_all,
            before=args.before,
            after=args.after,
            connect_attempts=args.connect_attempts,
        ),
        output=sys.stderr,
    )
    print(f"flashed {args.firmware} to the module on {args.port} at 0x{args.address:x}")
    return 0


# ---- sim-bootloader -----------------------------------------------------------------------------------------


def run_sim_bootloader(args: argparse.Namespace) -> int:
    initial = b""
    if args.initial is not None:
        try:
            initial = args.initial.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--initial {args.initial}: {exc.strerror or exc}") from exc
    flash_bytes = args.flash_kib * 1024
    if flash_bytes % args.page_bytes:
        raise ConfigError(f"--flash-kib {args.flash_kib} is not a whole number of --page-bytes {args.page_bytes}")
    if len(initial) > flash_bytes:
        raise ConfigError(f"--initial {args.initial}: {len(initial)} bytes, larger than the {args.flash_kib} KiB flash")
    config = BootloaderConfig(
        chip_id=args.chip_id,
        flash_bytes=flash_bytes,
        page_bytes=args.page_bytes,
        version=args.bl_version,
        extended_erase=args.extended_erase,
        initial_flash=initial,
    )
    faults = BootloaderFaults(
        nack_writes=frozenset(args.nack_write),
        corrupt_reads=frozenset(args.corrupt_read),
        nack_commands=frozenset(args.nack_command),
        silent=args.silent,
        drop_sync=args.drop_sync,
        silent_after_writes=args.silent_after_writes,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _LOGGER.info("sim-bootloader: %s received", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    server = PtyBootloader(VirtualStm32Bootloader(config, faults), baud=args.baud)
    try:
        server.start()
        print(json.dumps({"pty": server.path, "chip_id": f"0x{config.chip_id:03x}", "flash_bytes": flash_bytes}))
        sys.stdout.flush()
        while not stop.wait(0.2):
            if server.error is not None:
                raise ConfigError(f"sim-bootloader: {server.path}: {server.error}")
    finally:
        server.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    bootloader = server.bootloader
    stats = bootloader.stats
    print(
        json.dumps(
            {
                "syncs": stats.syncs,
                "commands": stats.commands,
                "nacks": stats.nacks,
                "writes": stats.writes,
                "reads": stats.reads,
                "pages_erased": stats.pages_erased,
                "mass_erases": stats.mass_erases,
                "go": None if stats.go_address is None else f"0x{stats.go_address:08x}",
            }
        )
    )
    if args.dump is not None:
        try:
            args.dump.write_bytes(bytes(bootloader.flash))
        except OSError as exc:
            raise ConfigError(f"--dump {args.dump}: {exc.strerror or exc}") from exc
    return 0
