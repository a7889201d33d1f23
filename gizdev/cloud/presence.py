"""Device presence from the broker's own connection events.

Plain MQTT tells a subscriber nothing about other clients connecting, and GAgent sets no will message (cloud
protocol §1.4; gagent-wire-observations §3.1), so waiting for traffic would leave a quiet device "offline" and a
dead one "online" for minutes. The broker knows exactly: Mosquitto logs every connect and disconnect
(``connection_messages true``) — including the keepalive timeout it enforces at 1.5 × the client's keepalive —
and EMQX publishes ``$SYS/brokers/<node>/clients/<clientid>/connected|disconnected`` events. This module turns
either into :class:`Presence` events; the device bus stores them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["EMQX_EVENT_TOPIC", "BrokerRestarted", "Presence", "parse_emqx_event", "parse_mosquitto_line"]

EMQX_EVENT_TOPIC = "$SYS/brokers/+/clients/+/+"

# Mosquitto 2.0 wording (src/handle_connect.c, src/loop.c); an optional "<unix time>: " prefix when
# log_timestamp is on.
_PREFIX = r"^(?:\d+: )?"
_CONNECTED = re.compile(
    _PREFIX + r"New client connected from (?P<peer>\S+) as (?P<client>\S+) \(p\d+, c\d+, k(?P<keepalive>\d+)"
    r"(?:, u'(?P<user>[^']*)')?\)\.$"
)
_DISCONNECTED = re.compile(
    _PREFIX + r"(?:Client (?P<client>\S+) (?:disconnected|closed its connection|has exceeded timeout)"
    r"|Socket error on client (?P<client2>\S+))"
)
_TAKEOVER = re.compile(_PREFIX + r"Client \S+ already connected, closing old connection\.$")
_STARTING = re.compile(_PREFIX + r"mosquitto version \S+ starting$")


@dataclass(frozen=True, slots=True)
class Presence:
    """A client connected (``online``) or went away; ``client_id`` is the DID for devices."""

    client_id: str
    online: bool
    username: str | None = None
    peer: str | None = None  # host:port
    keepalive_s: int | None = None


@dataclass(frozen=True, slots=True)
class BrokerRestarted:
    """The broker process started again: every client it had is gone."""


def parse_mosquitto_line(line: str) -> Presence | BrokerRestarted | None:
    """The presence event in one Mosquitto log line, or None if the line is about something else."""
    if match := _CONNECTED.match(line):
        return Presence(
            client_id=match["client"],
            online=True,
            username=match["user"],
            peer=match["peer"],
            keepalive_s=int(match["keepalive"]),
        )
    if _TAKEOVER.match(line):
        return None  # the old session's end; the new session's connect line follows
    if match := _DISCONNECTED.match(line):
        client = match["client"] or match["client2"]
        if client == "<unknown>":  # refused before it had an identity (bad password, bad packet)
            return None
        return Presence(client_id=client.rstrip(",."), online=False)
    if _STARTING.match(line):
        return BrokerRestarted()
    return None


def parse_emqx_event(topic: str, payload: bytes) -> Presence | None:
    """An EMQX client event (``$SYS/brokers/<node>/clients/<clientid>/connected``), or None if not one."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "$SYS" or parts[1] != "brokers" or parts[3] != "clients":
        return None
    if parts[5] not in ("connected", "disconnected"):
        return None
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    username = body.get("username")
    keepalive = body.get("keepalive")
    peer = body.get("ipaddress")
    return Presence(
        client_id=parts[4],
        online=parts[5] == "connected",
        username=username if isinstance(username, str) else None,
        peer=peer if isinstance(peer, str) else None,
        keepalive_s=keepalive if isinstance(keepalive, int) and not isinstance(keepalive, bool) else None,
    )
