"""The cloud's side of the device protocol on MQTT (cloud protocol §1.4-§1.6).

Device traffic comes from a feed (:mod:`gizdev.cloud.feeds`: one MQTT service connection, or RabbitMQ's shared AMQP
queue); the bus

* consumes ``dev2app/<did>[/<clientid>]``: 0x0091 reports and read replies (and device-initiated 0x0093, which
  it acknowledges with 0x0094) are decoded with the product's codec and stored as the device's latest data;
* answers ``cli2ser_req`` 0x020F ("how many apps are online?") with 0x0210 on ``ser2cli_res/<did>``;
* publishes control frames (0x0090) on ``app2dev/<did>/<clientid>``, and confirmed ones (:meth:`DeviceBus.deliver`:
  0x0093 with a fresh sn, done when the device's 0x0094 with that sn comes back — GAgent and our bridge send it
  once the MCU has taken the command);
* keeps ``is_online`` true to the broker's connection events (:mod:`gizdev.cloud.presence`), and to traffic
  when the broker gives no events (a device that publishes is connected);
* hands every device frame (with its status decoded once, as stored) and every presence change to its listeners
  (:mod:`gizdev.cloud.deviceevents`: the realtime WebSocket hub), which must not block it.

The broker is the reference for presence, so the bus writes every event in order through one queue; nothing a
device sends can make the bus stop: bad frames are logged (hex) and counted.

With several workers on one broker (``shared``), a worker that starts does not mark every device offline (the
others hold their presence): it takes the online devices from the storage and follows the broker's events. On an
external Mosquitto (no events) a device is known online from its traffic: each frame is handled by one worker of the
group and observed by all (``feed.fans_out``), so every worker hears it; a worker that has not heard the device since
it started (or while its observing connection was down) asks the storage before sending to it
(:meth:`DeviceBus.reachable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gizdev.cloud.deviceevents import DeviceEvent, DeviceFrame, DeviceListener, PresenceChange
from gizdev.cloud.feeds import Feed
from gizdev.cloud.presence import BrokerRestarted, Presence, parse_mosquitto_line
from gizdev.cloud.products import ProductCache
from gizdev.cloud.storage import InvalidInput, NotFound, PresenceUpdate, Storage, StorageError
from gizdev.codec.envelope import (
    BusinessCmd,
    Envelope,
    ServiceCmd,
    decode_envelope,
    decode_service,
    encode_envelope,
    encode_service,
)
from gizdev.codec.p0 import Action, P0Message
from gizdev.codec.p0 import Product as ProductCodec
from gizdev.codec.values import Value
from gizdev.errors import BrokerError, CodecError

__all__ = ["CLOUD_CLIENT_ID", "AppActivity", "BusStats", "DeviceBus"]

_LOGGER = logging.getLogger(__name__)

CLOUD_CLIENT_ID = "gizdevcloud"  # the <clientid> of app2dev topics for the cloud's own requests (≤ 23 chars)
REPORT_ACTIONS = frozenset({Action.READ_REPLY, Action.REPORT, Action.VAR_READ_REPLY, Action.VAR_REPORT})
APP_ONLINE_WINDOW_S = 120.0  # an app that used a device in the last two minutes counts as online for it
PRESENCE_BATCH = 500  # connection events stored per transaction
QUERY_MATCH_WINDOW_S = 30.0  # a 0x020F is attributed to devices that connected this recently (see _on_query)


@dataclass
class BusStats:
    reports: int = 0
    bad_frames: int = 0
    controls_sent: int = 0
    presence_events: int = 0
    online_queries: int = 0
    connects: int = 0


@dataclass
class AppActivity:
    """Which users used which device recently: the "online apps" count of 0x0210."""

    window_s: float = APP_ONLINE_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self, did: str, uid: str) -> None:
        self._seen.setdefault(did, {})[uid] = self.clock()

    def count(self, did: str) -> int:
        users = self._seen.get(did)
        if not users:
            return 0
        horizon = self.clock() - self.window_s
        for uid in [uid for uid, when in users.items() if when < horizon]:
            del users[uid]
        return len(users)


def _device_topic(topic: str) -> tuple[str, str | None]:
    """(did, client id) of ``dev2app/<did>[/<clientid>]``."""
    parts = topic.split("/")
    if len(parts) not in (2, 3):
        raise CodecError(f"unexpected topic {topic!r}")
    return parts[1], parts[2] if len(parts) == 3 else None


def _carries_status(envelope: Envelope) -> bool:
    return envelope.cmd in (BusinessCmd.TRANSMIT_REPLY, BusinessCmd.CONTROL, BusinessCmd.CONTROL_REPLY) and bool(
        envelope.payload
    )


class _Resync:
    """Reload the online devices from the storage (a shared bus that reconnected), in turn with the events."""


_RESYNC = _Resync()


class DeviceBus:
    """What the cloud does with device traffic, from a feed (module docstring)."""

    def __init__(
        self,
        storage: Storage,
        products: ProductCache,
        feed: Feed,
        *,
        shared: bool = False,
        activity: AppActivity | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.products = products
        self.feed = feed
        self.shared = shared
        self.activity = activity or AppActivity()
        self.stats = BusStats()
        self._clock = clock
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._presence: asyncio.Queue[Presence | BrokerRestarted | _Resync] = asyncio.Queue()
        self._presence_worker: asyncio.Task[None] | None = None
        self._product_of: dict[str, str] = {}  # did -> product_key (never changes for a did)
        self._online: set[str] = set()  # what this worker holds online
        # Devices held online from frames this worker only observed (another worker handled them and stores their
        # presence): a frame of one of them that this worker handles stores it after all.
        self._observed_only: set[str] = set()
        self._recent_connects: dict[str, float] = {}  # did -> monotonic time of connect, awaiting a 0x020F
        self._listeners: list[DeviceListener] = []
        self._awaiting_acks: dict[tuple[str, int], asyncio.Future[None]] = {}  # (did, sn) -> deliver() waiting
        self._sn = secrets.randbelow(1 << 31)  # where this bus's 0x0093 numbers start: unlike another worker's
        # The <clientid> of this bus's 0x0093: the device answers on dev2app/<did>/<it>, which must reach this worker.
        self.reply_client_id = feed.reply_client_id or CLOUD_CLIENT_ID

    # -- life cycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Mark every device offline (nothing is connected to a broker we just started or re-joined) and connect;
        ``shared``: take the online devices from the storage instead (the other workers keep them)."""
        if self.shared:
            self._online = await self._stored_online()
        else:
            await self.storage.mark_all_offline(int(self._clock()))
        self._presence_worker = asyncio.get_running_loop().create_task(self._apply_presence(), name="presence")
        self._runner = asyncio.get_running_loop().create_task(self.feed.run(self), name="device-bus")

    async def _stored_online(self) -> set[str]:
        online: set[str] = set()
        skip = 0
        while True:
            page = await self.storage.list_devices(include_disabled=False, limit=1000, skip=skip)
            online.update(device.did for device in page if device.is_online)
            if len(page) < 1000:
                return online
            skip += len(page)

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until the service connection is up and subscribed; BrokerError after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            raise BrokerError(f"no connection to the broker {self.feed} after {timeout_s:.0f} s") from None

    async def stop(self) -> None:
        for task in (self._runner, self._presence_worker):
            if task is not None:
                task.cancel()
        for task in (self._runner, self._presence_worker):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._runner = self._presence_worker = None

    @property
    def online_count(self) -> int:
        """Devices this bus holds online now."""
        return len(self._online)

    def is_online(self, did: str) -> bool:
        """Whether ``did`` is connected to the broker, as of the last presence event stored."""
        return did in self._online

    async def reachable(self, did: str) -> bool:
        """Whether a frame for ``did`` may go out now: :meth:`is_online`, or, on a shared broker, the storage's word.

        An external Mosquitto sends no connection events, so presence learnt from traffic (``_heard_from``) is in the
        memory of the workers that heard the device's frames — and in the storage, which every worker writes. A
        device this worker has not heard (it started after the device's last frame, or a feed that does not fan
        out) may be online through another one: the row is read fresh (a cached device would be up to a minute old).
        It is not added to ``_online``: an offline event applied meanwhile would then be undone.
        """
        if did in self._online:
            return True
        if not self.shared:
            return False  # this bus alone hears the broker: its view is the whole truth
        try:
            return (await self.storage.get_device(did)).is_online
        except (NotFound, InvalidInput):
            return False

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # -- what the feed reports (gizdev.cloud.feeds.FeedSink) -------------------------------------------------------

    def feed_up(self) -> None:
        self._ready.set()
        self.stats.connects += 1
        if self.shared and self.stats.connects > 1:
            # Events of the time we were away are lost to us, not to the other workers: take their word.
            self._presence.put_nowait(_RESYNC)

    def feed_down(self) -> None:
        self._ready.clear()

    def presence(self, event: Presence | BrokerRestarted) -> None:
        self._presence.put_nowait(event)

    # -- listeners ------------------------------------------------------------------------------------------------

    def add_listener(self, listener: DeviceListener) -> None:
        """Hand every later device frame and presence change to ``listener`` (it must not block: see
        :mod:`gizdev.cloud.deviceevents`)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: DeviceListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _notify(self, event: DeviceEvent) -> None:
        for listener in self._listeners:
            try:
                listener.device_event(event)
            except Exception:  # a listener's bug must not stop the bus
                _LOGGER.exception("device listener %r failed on %s", listener, event)

    # -- presence -------------------------------------------------------------------------------------------------

    def on_broker_log(self, line: str) -> None:
        """Feed one line of the managed Mosquitto's log (called from its stderr reader)."""
        event = parse_mosquitto_line(line)
        if event is not None:
            self._presence.put_nowait(event)

    async def _apply_presence(self) -> None:
        held: Presence | BrokerRestarted | _Resync | None = None
        while True:
            event = held if held is not None else await self._presence.get()
            held = None
            batch: list[Presence] = []
            if isinstance(event, Presence):
                # A burst of connects (devices coming back after a restart) is stored as one transaction per
                # PRESENCE_BATCH events, in order; a restart or resync ends the batch and goes next.
                batch.append(event)
                while len(batch) < PRESENCE_BATCH and not self._presence.empty():
                    following = self._presence.get_nowait()
                    if not isinstance(following, Presence):
                        held = following
                        break
                    batch.append(following)
            try:
                if isinstance(event, Presence):
                    await self._store_connections(batch)
                else:
                    await self._store_presence(event)
            except StorageError as exc:
                _LOGGER.warning("presence event(s) %s not stored: %s", batch or event, exc)
            except Exception:
                _LOGGER.exception("presence event(s) %s failed", batch or event)

    async def _store_connections(self, events: list[Presence]) -> None:
        now = int(self._clock())
        # Not a device login (the service user, a tool): its username is not its client id.
        logins = [event for event in events if event.username is None or event.username == event.client_id]
        updates = [PresenceUpdate(e.client_id, e.online, client_id=e.client_id, peer=e.peer) for e in logins]
        results = await self.storage.set_online_many(updates, now) if updates else []
        for event, changed in zip(logins, results, strict=True):
            if changed is None:
                continue  # the service user, a tool, anything that is not one of our devices
            did = event.client_id
            self.stats.presence_events += 1
            was_online = did in self._online
            if event.online:
                self._online.add(did)
                self._recent_connects[did] = time.monotonic()
            else:
                self._online.discard(did)
                self._observed_only.discard(did)
                self._recent_connects.pop(did, None)
            if changed:
                _LOGGER.info(
                    "device %s %s%s",
                    did,
                    "online" if event.online else "offline",
                    f" from {event.peer}" if event.peer else "",
                )
                if event.online != was_online:  # listeners hear changes of this worker's view, each once
                    self._notify(PresenceChange(did, event.online))

    async def _store_presence(self, event: BrokerRestarted | _Resync) -> None:
        """What is not a connection event (those go in batches: :meth:`_store_connections`)."""
        now = int(self._clock())
        if isinstance(event, _Resync):
            stored = await self._stored_online()
            changes = [PresenceChange(did, online=True) for did in stored - self._online]
            changes += [PresenceChange(did, online=False) for did in self._online - stored]
            self._online = stored
            for change in changes:
                self._notify(change)
            return
        count = await self.storage.mark_all_offline(now)  # the broker restarted
        gone, self._online = self._online, set()
        self._observed_only.clear()
        for did in gone:
            self._notify(PresenceChange(did, online=False))
        _LOGGER.info("broker restarted: %d device(s) now offline", count)

    # -- device messages ------------------------------------------------------------------------------------------

    async def dispatch(self, topic: str, payload: bytes) -> None:
        """Handle one device message; never raises (a bad frame is logged and counted)."""
        try:
            if topic.startswith("dev2app/"):
                await self._on_device_frame(topic, payload)
            elif topic == "cli2ser_req":
                await self._on_service_request(payload)
        except (CodecError, StorageError) as exc:
            self.stats.bad_frames += 1
            _LOGGER.info("ignored message on %s (%s): %s", topic, payload[:64].hex(), exc)
        except Exception:
            self.stats.bad_frames += 1
            _LOGGER.exception("message on %s (%s) failed", topic, payload[:64].hex())
        if self._listeners:
            # A burst of buffered messages, stored by SQLite's inline (never suspending) storage, would run in one
            # turn of the loop; the listeners' consumers (WebSocket writers) go between.
            await asyncio.sleep(0)

    async def _on_device_frame(self, topic: str, payload: bytes) -> None:
        did, client_id = _device_topic(topic)
        envelope = decode_envelope(payload)
        self._heard_from(did)
        self._match_ack(did, client_id, envelope)
        values: dict[str, Value] | None = None
        try:
            if _carries_status(envelope):
                values = await self._store_report(did, envelope.payload)
        finally:  # a status that does not decode still reaches listeners as a frame (apps of p0_type custom)
            if self._listeners and not self.feed.fans_out:
                self._notify(DeviceFrame(did, client_id, envelope.cmd, envelope.sn, payload, envelope.payload, values))
        if envelope.cmd == BusinessCmd.CONTROL and envelope.sn is not None:
            # A device-initiated report that wants an acknowledgement (§1.6): 0x0094 with the same sn.
            await self._publish(
                f"app2dev/{did}/{CLOUD_CLIENT_ID}", encode_envelope(BusinessCmd.CONTROL_REPLY, sn=envelope.sn)
            )

    async def observe(self, topic: str, payload: bytes) -> None:
        """A device frame for the listeners only, from a feed that fans every frame out to every worker while one
        of them handles it (``feed.fans_out``): so each worker's listeners hear every device. Never raises."""
        if not topic.startswith("dev2app/"):
            return
        try:
            did, client_id = _device_topic(topic)
            self._heard_from(
                did, handled=False
            )  # another worker handles it: the frame proves a connection all the same
            if not (self._listeners or self._awaiting_acks):
                return
            envelope = decode_envelope(payload)
            self._match_ack(did, client_id, envelope)  # the worker that sent the 0x0093 may not be the handler
            if not self._listeners:
                return
            values: dict[str, Value] | None = None
            try:
                if _carries_status(envelope):
                    decoded = await self._decode_status(did, envelope.payload)
                    values = None if decoded is None else decoded[1].attrs
            finally:
                self._notify(DeviceFrame(did, client_id, envelope.cmd, envelope.sn, payload, envelope.payload, values))
        except (CodecError, StorageError) as exc:
            _LOGGER.debug("not observed: %s (%s): %s", topic, payload[:64].hex(), exc)
        await asyncio.sleep(0)  # the listeners' consumers go between frames (see dispatch)

    def _heard_from(self, did: str, *, handled: bool = True) -> None:
        """Traffic proves a connection even when the broker gives no events (an external broker). Listeners hear it
        now, before the frame itself; the worker that ``handled`` the frame stores it (through the presence queue):
        in a group the others only observe it, and one write per device, not one per worker, keeps a burst of
        connects from making the workers wait on each other's row locks."""
        if did in self._online:
            if handled and did in self._observed_only:
                self._observed_only.discard(did)
                self._presence.put_nowait(Presence(client_id=did, online=True))
            return
        self._online.add(did)
        if handled:
            self._presence.put_nowait(Presence(client_id=did, online=True))
        else:
            self._observed_only.add(did)
        self._notify(PresenceChange(did, online=True))

    async def _decode_status(self, did: str, p0: bytes) -> tuple[ProductCodec, P0Message] | None:
        """The device's product codec and the status it decodes ``p0`` to; None if it carries no status."""
        product_key = self._product_of.get(did)
        if product_key is None:
            product_key = (await self.storage.get_device(did)).product_key
            self._product_of[did] = product_key
        codec = await self.products.get(product_key)
        if codec is None:
            return None  # a product without data points: nothing to decode
        message = codec.decode(p0)
        if message.action not in REPORT_ACTIONS:
            return None  # a pass-through upload (0x06) or an ACK without status
        return codec, message

    async def _store_report(self, did: str, p0: bytes) -> dict[str, Value] | None:
        """Decode a status and keep it as the device's latest data; its values, or None if it carries none."""
        decoded = await self._decode_status(did, p0)
        if decoded is None:
            return None
        codec, message = decoded
        await self.storage.put_latest(did, codec.attrs_to_json(message.attrs), int(self._clock()))
        self.stats.reports += 1
        return message.attrs

    async def _on_service_request(self, payload: bytes) -> None:
        frame = decode_service(payload)
        if frame.cmd != ServiceCmd.ONLINE_QUERY:
            _LOGGER.debug("ignored service frame 0x%04x (%s)", frame.cmd, payload.hex())
            return
        self.stats.online_queries += 1
        # cli2ser_req carries no DID and MQTT does not tell who published, so the query is answered to the devices
        # that connected recently and were not answered yet — GAgent asks right after subscribing (§1.1 step 6).
        horizon = time.monotonic() - QUERY_MATCH_WINDOW_S
        pending = [did for did, when in self._recent_connects.items() if when >= horizon]
        self._recent_connects.clear()
        for did in pending:
            await self.send_online_count(did)

    async def send_online_count(self, did: str) -> None:
        """Tell ``did`` how many apps are online for it (0x0210 on ``ser2cli_res/<did>``)."""
        count = min(self.activity.count(did), 0xFFFF)
        await self._publish(f"ser2cli_res/{did}", encode_service(ServiceCmd.ONLINE_COUNT, count.to_bytes(2, "big")))

    # -- control --------------------------------------------------------------------------------------------------

    async def send_control(self, did: str, p0: bytes, client_id: str = CLOUD_CLIENT_ID) -> None:
        """Publish P0 as a 0x0090 frame on ``app2dev/<did>/<client_id>``; BrokerError if the broker is away."""
        await self.send_frame(did, encode_envelope(BusinessCmd.TRANSMIT, p0), client_id)

    async def deliver(self, did: str, p0: bytes, *, timeout_s: float) -> bool:
        """Send P0 as a 0x0093 and wait for the device's 0x0094 with its sn: True once it came, False if it did not
        within ``timeout_s`` (a device that is online but whose MCU does not answer); BrokerError if the broker is
        away."""
        self._sn = self._sn % 0xFFFFFFFF + 1  # 1 … 2**32-1: 0 is the sn of device-initiated frames on the LAN
        key = (did, self._sn)
        waiter = asyncio.get_running_loop().create_future()
        self._awaiting_acks[key] = waiter
        try:
            await self.send_frame(did, encode_envelope(BusinessCmd.CONTROL, p0, sn=self._sn), self.reply_client_id)
            async with asyncio.timeout(timeout_s):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            self._awaiting_acks.pop(key, None)

    def _match_ack(self, did: str, client_id: str | None, envelope: Envelope) -> None:
        if envelope.cmd != BusinessCmd.CONTROL_REPLY or client_id != self.reply_client_id or envelope.sn is None:
            return
        waiter = self._awaiting_acks.get((did, envelope.sn))
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send_frame(self, did: str, frame: bytes, client_id: str = CLOUD_CLIENT_ID) -> None:
        """Publish a whole business frame (0x0090, 0x0093 with its sn, 0x0094) on ``app2dev/<did>/<client_id>``;
        BrokerError if the broker is away."""
        await self._publish(f"app2dev/{did}/{client_id}", frame)
        self.stats.controls_sent += 1

    async def _publish(self, topic: str, payload: bytes) -> None:
        await self.feed.publish(topic, payload)
