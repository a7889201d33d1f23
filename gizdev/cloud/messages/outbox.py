"""The outbox: every message as one JSON line in the data dir (and a log line), for developers to read codes.

The default sender of a cloud without SMTP or an SMS webhook is :class:`OutboxSender`; `gizdev cloud outbox`
prints the file. Lines: ``{"time", "channel", "to", "code"?, "link"?, "text"}`` (``time`` in UTC, ISO 8601).
The file is created 0600: it holds live codes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gizdev.cloud.messages.message import Message, SendFailed

__all__ = ["OUTBOX_FILE", "Outbox", "OutboxSender"]

_LOGGER = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.jsonl"


@dataclass(frozen=True, slots=True)
class Outbox:
    path: Path
    clock: Callable[[], float] = field(default=lambda: dt.datetime.now(dt.UTC).timestamp())

    def append(self, message: Message) -> dict[str, Any]:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat(timespec="seconds"),
            "channel": message.channel,
            "to": message.to,
        }
        if message.code is not None:
            line["code"] = message.code
        if message.link is not None:
            line["link"] = message.link
        line["text"] = message.text
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise SendFailed(f"cannot write the outbox {self.path}: {exc.strerror}") from exc
        return line

    def lines(self) -> Iterator[dict[str, Any]]:
        """The messages in the order written; a line that is not JSON (a torn write) is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        for raw in text.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                yield line


@dataclass(frozen=True, slots=True)
class OutboxSender:
    """Delivers nothing: writes the message to the outbox and the log (the default, for development)."""

    outbox: Outbox

    async def send(self, message: Message) -> None:
        self.outbox.append(message)
        _LOGGER.info(
            "outbox: %s to %s%s%s",
            message.channel,
            message.to,
            f" code {message.code}" if message.code is not None else "",
            f" link {message.link}" if message.link is not None else "",
        )
