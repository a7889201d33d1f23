"""Progress of long transfers on stderr: bytes done of total and the rate, redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO

__all__ = ["NullProgress", "Progress", "ProgressReporter"]

_BAR_CHARS = 30


class Progress(Protocol):
    """What a flasher reports to: one phase at a time."""

    def start(self, phase: str, total: int) -> None:
        """A phase (erase, write, verify, backup) of ``total`` bytes begins."""
        ...

    def update(self, done: int) -> None:
        """``done`` bytes of the phase are through."""
        ...

    def finish(self) -> None:
        """The phase ended well."""
        ...


class NullProgress:
    """Reports nothing."""

    def start(self, phase: str, total: int) -> None:
        """Ignore."""

    def update(self, done: int) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


class ProgressReporter:
    """A text bar; redrawn with CR on a terminal, a line per tenth elsewhere (a log file stays readable)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._phase = ""
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._shown_tenth = -1
        self._last_draw = 0.0

    def start(self, phase: str, total: int) -> None:
        """Begin a phase."""
        self._phase, self._total, self._done = phase, total, 0
        self._started = time.monotonic()
        self._shown_tenth = -1
        self._draw(force=True)

    def update(self, done: int) -> None:
        """Move the bar."""
        self._done = done
        self._draw(force=False)

    def finish(self) -> None:
        """Draw the full bar and end the line."""
        self._done = self._total
        self._draw(force=True)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()

    def line(self) -> str:
        """The current bar as text."""
        total = max(self._total, 1)
        filled = _BAR_CHARS * self._done // total
        elapsed = time.monotonic() - self._started
        rate = self._done / elapsed / 1024 if elapsed > 0 else 0.0
        bar = "#" * filled + "." * (_BAR_CHARS - filled)
        percent = 100 * self._done // total
        return f"{self._phase:<7} [{bar}] {self._done}/{self._total} bytes {percent:3d}% {rate:.1f} KiB/s"

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if self._tty:
            if force or now - self._last_draw >= 0.1:
                self._stream.write("\r" + self.line())
                self._stream.flush()
                self._last_draw = now
            return
        tenth = 10 * self._done // max(self._total, 1)
        if force and self._done == self._total and tenth == self._shown_tenth:
            return
        if force or tenth > self._shown_tenth:
            self._shown_tenth = tenth
            self._stream.write(self.line() + "\n")
            self._stream.flush()
