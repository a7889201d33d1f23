"""One sender per channel: SMS to the webhook, mail to SMTP, whatever has no carrier (and every captcha answer
under ``--insecure-test-captcha``) to the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gizdev.cloud.messages.message import Channel, Message, Sender

__all__ = ["ChannelRouter"]


@dataclass(frozen=True, slots=True)
class ChannelRouter:
    fallback: Sender  # the outbox
    routes: Mapping[Channel, Sender] = field(default_factory=dict)

    async def send(self, message: Message) -> None:
        await self.routes.get(message.channel, self.fallback).send(message)
