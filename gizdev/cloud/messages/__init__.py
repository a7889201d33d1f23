"""What the cloud tells people: SMS codes, mails (sign-up notices, reset links), and the outbox they all go to."""

from __future__ import annotations

from gizdev.cloud.messages.message import Channel, Message, Sender, SendFailed
from gizdev.cloud.messages.outbox import OUTBOX_FILE, Outbox, OutboxSender
from gizdev.cloud.messages.routing import ChannelRouter

__all__ = ["OUTBOX_FILE", "Channel", "ChannelRouter", "Message", "Outbox", "OutboxSender", "SendFailed", "Sender"]
