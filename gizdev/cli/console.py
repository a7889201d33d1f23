"""What the long-running commands (``demo``, ``cloud serve``) share: stop signals, and output whose reader may go.

A user stops them with Ctrl-C (SIGINT), ``kill`` (SIGTERM) or by closing the terminal (SIGHUP); all three end in
the same clean shutdown, so that no child process (the managed Mosquitto runs in its own session and is not hit
by the terminal's signals) or temporary directory outlives the command. Their output often goes through a pipe
(``gizdev demo | tee log``): when the reader goes away, a write fails with EPIPE. That is not an error of the
command, but it means nobody is listening: :class:`Console` stops writing, points the stream at ``/dev/null`` (so
that later writes and the interpreter's final flush cannot fail again) and tells the command to shut down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

__all__ = ["EXIT_PIPE_CLOSED", "STOP_SIGNALS", "Console", "silence", "start_or_stop", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What a shell reports for a command killed by SIGPIPE (128 + 13), as for `yes | head` under `set -o pipefail`:
# a script sees a vanished reader the same way for gizdev as for the tools it is used with.
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE


def silence(stream: TextIO) -> None:
    """Point ``stream`` (whose reader went away) at /dev/null, so that no later write or flush raises."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not backed by a file descriptor (a test's capture): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class Console:
    """Lines to ``stream``; the first write that finds the reader gone calls ``on_closed`` and the rest are dropped."""

    def __init__(self, stream: TextIO | None = None, on_closed: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self.on_closed = on_closed
        self.closed = False

    @property
    def stream(self) -> TextIO:
        # Looked up at each write by default: sys.stdout may be replaced after this object is made (tests do).
        return self._stream if self._stream is not None else sys.stdout

    def say(self, text: str = "") -> None:
        """Write one line and flush it (a reader such as ``tee`` should see it at once)."""
        if self.closed:
            return
        stream = self.stream
        try:
            stream.write(text + "\n")
            stream.flush()
        except BrokenPipeError:
            self.closed = True
            silence(stream)
            if self.on_closed is not None:
                self.on_closed()


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT, SIGTERM and SIGHUP (in the running loop) instead of dying at once."""
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)


async def start_or_stop(start: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``start`` unless ``stop`` is set first, which cancels it (its own clean-up runs); True if it finished.

    Starting can take seconds (a broker, a board, a registration); a Ctrl-C meanwhile must not wait for it.
    """
    task = asyncio.ensure_future(start)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
        # Both end here: the start's clean-up (stopping what it had started) runs to the end before we go on.
        await asyncio.wait({task, stopped})
    if task.cancelled():
        return False
    task.result()  # its error, if it failed
    return True
