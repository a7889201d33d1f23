"""The realtime hub: who is logged in over the WebSocket API, what each client subscribed, and the fan-out of device
events to them (cloud protocol §4).

The hub is a :class:`~gizdev.cloud.deviceevents.DeviceListener` of the device bus and the binding hook of the
HTTP bindings handlers. Both call it synchronously; it renders each push once per shape and puts it into the
bounded send queue of every client concerned (:mod:`gizdev.cloud.realtime.sendqueue`), so it never waits: a
client that does not keep up is dropped, nobody else notices.

What goes to whom, per device frame (the p0_type chosen at login):

* ``attrs_v4``: a decoded status becomes ``s2c_noti`` for every subscriber (with ``req_sn`` when the device sent
  0x0093 and wants ``c2s_ack``; with ``res_sn`` for the client whose 0x0093 it answers); a 0x0094 answering a
  client's 0x0093 becomes ``s2c_ack`` for that client; a frame without a status (pass-through data, a product
  without data points) becomes ``s2c_raw``.
* ``custom``: every frame becomes ``s2c_raw`` (a 0x0094 only for the client it answers).

Presence changes become ``s2c_online_status`` for the device's subscribers, binding changes
``s2c_binding_changed`` for the user's clients (an unbind also ends the subscriptions; a bind subscribes the
clients that logged in with ``auto_subscribe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gizdev.cloud.deviceevents import DeviceEvent, DeviceFrame, PresenceChange
from gizdev.cloud.realtime.sendqueue import SendQueue
from gizdev.codec.envelope import BusinessCmd
from gizdev.codec.values import Value

__all__ = ["P0_TYPES", "HubStats", "RealtimeHub", "Session", "message", "noti_attrs"]

_LOGGER = logging.getLogger(__name__)

P0_TYPES = ("attrs_v4", "custom")

# Subscribes the user's clients to a device just bound; the hub's owner gives it (device row lookup), returns the
# device's MAC, or None if the device may not be used (disabled, unbound again meanwhile).
BindLookup = Callable[[str, str, str], Awaitable[str | None]]  # (appid, uid, did) -> the MAC if usable


def message(cmd: str, data: Any = None, **top: Any) -> str:
    """One JSON text frame ``{"cmd": ..., [top-level fields], "data": ...}`` (compact: it goes to many clients)."""
    body: dict[str, Any] = {"cmd": cmd, **top}
    if data is not None:
        body["data"] = data
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def noti_attrs(values: Mapping[str, Value]) -> dict[str, Any]:
    """Data point values as ``s2c_noti`` carries them: binary as a byte array (D-ws), the rest as they are."""
    return {name: list(value) if isinstance(value, bytes) else value for name, value in values.items()}


@dataclass(eq=False)
class Session:
    """One logged-in client. ``client_id`` is the ``<clientid>`` of its frames to devices (app2dev/<did>/<id>):
    the device's 0x0094 comes back on dev2app/<did>/<id>, so it reaches exactly this client."""

    uid: str
    appid: str
    p0_type: str
    auto_subscribe: bool
    client_id: str
    queue: SendQueue
    dids: set[str] = field(default_factory=set)

    @property
    def custom(self) -> bool:
        return self.p0_type == "custom"


@dataclass
class HubStats:
    logins: int = 0
    dropped: int = 0  # clients dropped for not reading (their send queue overflowed)
    pushed: int = 0  # messages queued to clients by the hub


class RealtimeHub:
    def __init__(self, bind_lookup: BindLookup | None = None) -> None:
        self._bind_lookup = bind_lookup
        self._by_did: dict[str, set[Session]] = {}
        self._by_uid: dict[str, set[Session]] = {}
        self._by_client_id: dict[str, Session] = {}
        self._mac: dict[str, str] = {}  # did -> lower-case MAC, learnt at subscription (a device's MAC never changes)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = HubStats()

    # -- sessions -------------------------------------------------------------------------------------------------

    @property
    def session_count(self) -> int:
        return len(self._by_client_id)

    def sessions_of(self, uid: str) -> frozenset[Session]:
        return frozenset(self._by_uid.get(uid, ()))

    def add(self, session: Session) -> None:
        self._by_uid.setdefault(session.uid, set()).add(session)
        self._by_client_id[session.client_id] = session
        self.stats.logins += 1

    def remove(self, session: Session) -> None:
        for did in list(session.dids):
            self.unsubscribe(session, did)
        _discard(self._by_uid, session.uid, session)
        self._by_client_id.pop(session.client_id, None)

    def subscribe(self, session: Session, did: str, mac: str) -> None:
        self._mac[did] = mac.lower()
        session.dids.add(did)
        self._by_did.setdefault(did, set()).add(session)

    def unsubscribe(self, session: Session, did: str) -> None:
        session.dids.discard(did)
        _discard(self._by_did, did, session)

    def online_status(self, did: str, online: bool) -> str:
        # No passcode, although D-ws lists one: for plain (GAgent) devices it is the MQTT password, which a push to
        # every subscriber must not carry. Apps that need it have it from GET /app/bindings.
        return message("s2c_online_status", {"did": did, "mac": self._mac.get(did, ""), "online": online})

    def _push(self, sessions: Iterable[Session], text: str) -> None:
        for session in sessions:
            if session.queue.put(text):
                self.stats.pushed += 1

    def dropped(self, session: Session) -> None:
        """Called when a client's send queue overflowed (the handler closes its connection)."""
        self.stats.dropped += 1
        _LOGGER.warning(
            "websocket client %s of user %s dropped: it did not read its messages", session.client_id, session.uid
        )
        self.remove(session)

    # -- the device bus's events ------------------------------------------------------------------------------------

    def device_event(self, event: DeviceEvent) -> None:
        if isinstance(event, PresenceChange):
            subscribers = self._by_did.get(event.did)
            if subscribers:
                self._push(list(subscribers), self.online_status(event.did, event.online))
            return
        self._device_frame(event)

    def _device_frame(self, event: DeviceFrame) -> None:
        requester = self._by_client_id.get(event.client_id) if event.client_id is not None else None
        subscribers = list(self._by_did.get(event.did, ()))
        if requester is not None and event.did not in requester.dids:
            subscribers.append(requester)  # an answer to its own 0x0093 reaches it even without a subscription
        if not subscribers:
            return
        is_answer = event.cmd == BusinessCmd.CONTROL_REPLY
        raw = functools.cache(lambda: message("s2c_raw", {"did": event.did, "raw": list(event.frame)}))
        attrs = None if event.values is None else {"did": event.did, "attrs": noti_attrs(event.values)}
        noti = None
        if attrs is not None:
            wants_ack = event.cmd == BusinessCmd.CONTROL and event.sn is not None
            noti = message("s2c_noti", attrs, req_sn=event.sn) if wants_ack else message("s2c_noti", attrs)
        for session in subscribers:
            mine = session is requester
            if session.custom:
                if mine or not is_answer:  # a 0x0094 belongs to the client whose 0x0093 it answers
                    self._push((session,), raw())
            elif is_answer and mine:
                self._push((session,), message("s2c_ack", None, res_sn=event.sn, did=event.did))
                if attrs is not None:
                    self._push((session,), message("s2c_noti", attrs, res_sn=event.sn))
                elif event.p0:
                    self._push((session,), raw())
            elif noti is not None:
                self._push((session,), noti)
            elif event.p0 and not is_answer:
                self._push((session,), raw())  # pass-through data, or a product without data points

    # -- the bindings handlers' hook --------------------------------------------------------------------------------

    def binding_changed(self, uid: str, did: str, bound: bool) -> None:
        sessions = self._by_uid.get(uid)
        if not sessions:
            return
        self._push(list(sessions), message("s2c_binding_changed", {"did": did, "bind": bound}))
        for session in list(sessions):
            if not bound:
                self.unsubscribe(session, did)
            elif session.auto_subscribe and did not in session.dids and self._bind_lookup is not None:
                task = asyncio.get_running_loop().create_task(self._subscribe_bound(session, did))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _subscribe_bound(self, session: Session, did: str) -> None:
        assert self._bind_lookup is not None
        try:
            mac = await self._bind_lookup(session.appid, session.uid, did)
        except Exception:
            _LOGGER.exception("subscribing user %s to newly bound %s failed", session.uid, did)
            return
        if mac is not None and session.queue.alive and session in self._by_uid.get(session.uid, ()):
            self.subscribe(session, did, mac)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _discard(index: dict[str, set[Session]], key: str, session: Session) -> None:
    sessions = index.get(key)
    if sessions is not None:
        sessions.discard(session)
        if not sessions:
            del index[key]
