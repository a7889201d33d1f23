"""Device presence from the broker's own connection events.

Plain MQTT tells a subscriber nothing about other clients connecting, and GAgent sets no will message (cloud
protocol §1.4; gagent-wire-observations §3.1), so waiting for traffic would leave a quiet device "offline" and a
dead one "online" for minutes. The broker knows exactly: Mosquitto logs every connect and disconnect
(``connection_messages true``) — including the keepalive timeout it enforces at 1.5 × the client's keepalive —
and EMQX publishes ``$SYS/brokers/<node>/clients/<clientid>/connected|disconnected`` events; RabbitMQ's event
exchange (``rabbitmq_event_exchange``) has ``connection.created`` and ``connection.closed`` for every connection of
every node of a cluster. This module turns each into :class:`Presence` events; the device bus stores them.

A device that moves to another node of a cluster has two connections for a moment, and the close of the old one
may be reported after the new one's creation (each node reports its own connections).
:class:`ConnectionTracker` keeps the newest connection of each device, by the broker's event time, so that only
the close of that one takes the device offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "EMQX_EVENT_TOPIC",
    "BrokerRestarted",
    "ConnectionEvent",
    "ConnectionTracker",
    "Presence",
    "parse_emqx_event",
    "parse_mosquitto_line",
    "parse_rabbitmq_event",
]

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


# -- RabbitMQ ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A connection of a cluster node was created or closed (``user`` is known for creations only)."""

    connection: str  # the connection's Erlang pid, unique in the cluster: "<rabbit-1@host.1796193996.834.0>"
    created: bool
    at_ms: int  # the node's clock
    user: str | None = None
    peer: str | None = None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def parse_rabbitmq_event(routing_key: str, headers: Mapping[str, object]) -> ConnectionEvent | None:
    """A ``connection.created``/``connection.closed`` event of an MQTT connection, or None if not one.

    The event exchange puts the connection's properties in the message headers: ``pid``, ``timestamp_in_ms`` on
    both; ``user``, ``protocol`` (``{'MQTT',"3.1.0"}``) and ``name`` (``peer -> listener``) on creations only.
    """
    if routing_key not in ("connection.created", "connection.closed"):
        return None
    connection = _text(headers.get("pid"))
    at_ms = headers.get("timestamp_in_ms")
    if connection is None or not isinstance(at_ms, int) or isinstance(at_ms, bool):
        return None
    if routing_key == "connection.closed":
        return ConnectionEvent(connection=connection, created=False, at_ms=at_ms)
    protocol = _text(headers.get("protocol")) or ""
    user = _text(headers.get("user"))
    if "MQTT" not in protocol or user is None:
        return None  # an AMQP client (a cloud worker), not a device
    name = _text(headers.get("name")) or ""
    peer = name.split(" -> ", 1)[0] if " -> " in name else None
    return ConnectionEvent(connection=connection, created=True, at_ms=at_ms, user=user, peer=peer)


@dataclass
class _Current:
    connection: str
    at_ms: int


class ConnectionTracker:
    """Each device's newest connection; turns connection events into presence (module docstring).

    A creation older than the last event of its device is stale (reported late by another node) and changes
    nothing; a close takes the device offline only if it is of its newest connection. Kept: each device's newest
    connection and last event time, nothing about older connections (their close is simply unknown).
    """

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}  # connection -> username, while open
        self._current: dict[str, _Current] = {}  # username -> its newest connection
        self._last_ms: dict[str, int] = {}  # username -> time of its last event applied

    def apply(self, event: ConnectionEvent) -> Presence | None:
        if event.created:
            assert event.user is not None
            user = event.user
            if event.at_ms < self._last_ms.get(user, -1):
                return None  # its close will be unknown, so ignored too
            previous = self._current.get(user)
            if previous is not None:  # its close (if the node lives to send it) must change nothing now
                self._owner.pop(previous.connection, None)
            self._owner[event.connection] = user
            self._current[user] = _Current(event.connection, event.at_ms)
            self._last_ms[user] = event.at_ms
            return Presence(client_id=user, online=True, username=user, peer=event.peer)
        owner = self._owner.pop(event.connection, None)
        if owner is None:
            return None  # opened before we listened, superseded by a newer one, or not a device's
        del self._current[owner]
        self._last_ms[owner] = max(self._last_ms.get(owner, -1), event.at_ms)
        return Presence(client_id=owner, online=False, username=owner)
