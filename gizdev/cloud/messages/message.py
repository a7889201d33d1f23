"""A message to a person, and what delivers it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from gizdev.errors import CloudError

__all__ = ["Channel", "Message", "SendFailed", "Sender"]

Channel = Literal["sms", "email", "captcha"]


@dataclass(frozen=True, slots=True)
class Message:
    channel: Channel
    to: str  # a phone number, a mail address, or (captcha) the captcha id
    text: str
    subject: str = ""  # mails only
    code: str | None = None  # the code the text carries, when there is one
    link: str | None = None  # the link the text carries, when there is one


class SendFailed(CloudError):
    """The message could not be handed to its carrier (SMTP server, SMS webhook); nothing was sent."""


class Sender(Protocol):
    async def send(self, message: Message) -> None:
        """Deliver ``message`` or raise :class:`SendFailed`."""
        ...
