"""The device bus behind its feed seam (gizdev.cloud.feeds): a recording feed of our own interface stands in for
the broker, the storage is real (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gizdev.cloud.devicebus import DeviceBus
from gizdev.cloud.deviceevents import DeviceEvent, DeviceFrame, PresenceChange
from gizdev.cloud.feeds import FeedSink
from gizdev.cloud.presence import BrokerRestarted, Presence
from gizdev.cloud.products import ProductCache
from gizdev.cloud.storage import Storage
from gizdev.codec.envelope import encode_envelope
from gizdev.errors import BrokerError
from gizdev.schema.loader import parse_schema
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA
from tests.guards import run

PK = TEMP_HUMI_SCHEMA["product_key"]


class RecordingFeed:
    """A feed that is "connected" while ``up`` and records what the bus publishes."""

    def __init__(self, *, fans_out: bool = False) -> None:
        self.fans_out = fans_out
        self.reply_client_id: str | None = None
        self.sink: FeedSink | None = None
        self.published: list[tuple[str, bytes]] = []
        self.up = False

    async def run(self, sink: FeedSink) -> None:
        self.sink = sink
        self.connect()
        await asyncio.Event().wait()  # until cancelled

    def connect(self) -> None:
        assert self.sink is not None
        self.up = True
        self.sink.feed_up()

    def drop(self) -> None:
        assert self.sink is not None
        self.up = False
        self.sink.feed_down()

    async def publish(self, topic: str, payload: bytes) -> None:
        if not self.up:
            raise BrokerError("not connected")
        self.published.append((topic, payload))


async def until(predicate: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(5.0):
        while not predicate():
            await asyncio.sleep(0.01)


def with_bus(db_url: str, scenario: Callable[[Storage, list[str]], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        storage = await Storage.open(db_url)
        try:
            parsed = parse_schema(TEMP_HUMI_SCHEMA)
            await storage.add_product(PK, "0" * 32, "p", parsed)
            dids = [(await storage.register_device(f"AABBCCDDEE0{i}", PK, f"PASS{i}")).device.did for i in range(2)]
            await scenario(storage, dids)
        finally:
            await storage.close()

    run(main())


def test_a_shared_bus_keeps_the_other_workers_presence(db_url: str) -> None:
    async def scenario(storage: Storage, dids: list[str]) -> None:
        first, second = dids
        await storage.set_online(first, True, 100)
        feed = RecordingFeed()
        bus = DeviceBus(storage, ProductCache(storage), feed, shared=True)
        await bus.start()
        try:
            await bus.wait_ready(5.0)
            assert bus.is_online(first) and not bus.is_online(second)
            assert (await storage.get_device(first)).is_online  # not marked offline: another worker holds it
            # While this worker was away from the broker, another worker stored the second device online.
            feed.drop()
            await storage.set_online(second, True, 200)
            feed.connect()
            await until(lambda: bus.is_online(second), "the second device online after the reconnect")
        finally:
            await bus.stop()

    with_bus(db_url, scenario)


def test_a_single_bus_starts_with_every_device_offline(db_url: str) -> None:
    async def scenario(storage: Storage, dids: list[str]) -> None:
        await storage.set_online(dids[0], True, 100)
        bus = DeviceBus(storage, ProductCache(storage), RecordingFeed())
        await bus.start()
        try:
            await bus.wait_ready(5.0)
            assert not bus.is_online(dids[0]) and not (await storage.get_device(dids[0])).is_online
        finally:
            await bus.stop()

    with_bus(db_url, scenario)


def test_what_a_feed_delivers_is_stored_and_controls_go_out_through_it(db_url: str) -> None:
    async def scenario(storage: Storage, dids: list[str]) -> None:
        did = dids[0]
        feed = RecordingFeed()
        bus = DeviceBus(storage, ProductCache(storage), feed)
        await bus.start()
        try:
            await bus.wait_ready(5.0)
            await bus.dispatch(f"dev2app/{did}", bytes.fromhex("0000000306000091041537"))
            latest = await storage.get_latest(did)
            assert latest is not None and latest.attrs == {"temp": 21, "humi": 55}
            await bus.dispatch(f"dev2app/{did}", b"\xff\x00garbage")  # logged and counted, never raised
            await bus.dispatch("somewhere/else", b"")
            assert bus.stats.reports == 1 and bus.stats.bad_frames == 1
            await until(lambda: bus.is_online(did), "online from traffic")
            await bus.send_control(did, b"\x01\x01\x0a\x00")
            assert feed.published == [(f"app2dev/{did}/gizdevcloud", encode_envelope(0x0090, b"\x01\x01\x0a\x00"))]
            feed.drop()
            with pytest.raises(BrokerError):
                await bus.send_control(did, b"\x01")
        finally:
            await bus.stop()

    with_bus(db_url, scenario)


class RecordingListener:
    def __init__(self) -> None:
        self.events: list[DeviceEvent] = []

    def device_event(self, event: DeviceEvent) -> None:
        self.events.append(event)

    @property
    def frames(self) -> list[DeviceFrame]:
        return [event for event in self.events if isinstance(event, DeviceFrame)]


def test_a_fanning_feed_tells_listeners_each_frame_once_from_its_copy(db_url: str) -> None:
    """With a feed whose every worker gets a copy (RabbitMQ), the listeners hear a frame from the copy, not from the
    share this worker handles: once, decoded, whichever worker stores it."""

    async def scenario(storage: Storage, dids: list[str]) -> None:
        did = dids[0]
        report = bytes.fromhex("0000000306000091041537")
        bus = DeviceBus(storage, ProductCache(storage), RecordingFeed(fans_out=True), shared=True)
        listener = RecordingListener()
        bus.add_listener(listener)
        await bus.start()
        try:
            await bus.wait_ready(5.0)
            await bus.dispatch(f"dev2app/{did}", report)  # this worker's share: stored, not told
            assert listener.frames == [] and bus.stats.reports == 1
            await bus.observe(f"dev2app/{did}/usr1", report)  # the copy: told, not stored
            await bus.observe(f"dev2app/{did}", b"\xff\x00")  # a bad copy changes nothing
            await bus.observe("cli2ser_req", b"")
            assert bus.stats.reports == 1
            [frame] = listener.frames
            assert (frame.did, frame.client_id, frame.cmd, frame.frame) == (did, "usr1", 0x0091, report)
            assert frame.values == {"temp": 21, "humi": 55}
        finally:
            await bus.stop()

    with_bus(db_url, scenario)


def test_a_frame_observed_tells_the_listeners_online_and_only_a_handled_one_is_stored(db_url: str) -> None:
    """In a group each frame is handled (stored) by one worker and observed by all: an observed frame holds the
    device online here and tells the listeners at once, before the frame, but writes nothing (the handler does);
    a frame this worker then handles stores the presence, even if its own copy was observed first."""

    async def scenario(storage: Storage, dids: list[str]) -> None:
        report = bytes.fromhex("0000000306000091041537")
        bus = DeviceBus(storage, ProductCache(storage), RecordingFeed(fans_out=True), shared=True)
        listener = RecordingListener()
        bus.add_listener(listener)
        await bus.start()
        try:
            await bus.wait_ready(5.0)
            for did in dids:
                await bus.observe(f"dev2app/{did}", report)
                await bus.observe(f"dev2app/{did}", report)
            expected: list[DeviceEvent] = []
            for did in dids:
                online = PresenceChange(did, online=True)
                frame = DeviceFrame(did, None, 0x0091, None, report, report[8:], {"temp": 21, "humi": 55})
                expected += [online, frame, frame]
            assert listener.events == expected  # online once, first; each copy of the report
            assert all(bus.is_online(did) for did in dids)
            await asyncio.sleep(0.2)  # a presence write would be done by now
            assert [(await storage.get_device(did)).is_online for did in dids] == [False, False]
            await bus.dispatch(f"dev2app/{dids[0]}", report)  # this worker handles one of them after all
            await until(lambda: bus.stats.presence_events == 1, "the handled frame's presence stored")
            assert [(await storage.get_device(did)).is_online for did in dids] == [True, False]
            assert listener.events == expected  # no second "online"; a handled frame reaches listeners as a copy
        finally:
            await bus.stop()

    with_bus(db_url, scenario)


def test_a_burst_of_connection_events_is_applied_in_order_across_a_broker_restart(db_url: str) -> None:
    """Hundreds of events queued at once are stored in batches; a restart between them still takes everything before
    it offline and nothing after it, and each change reaches the listeners once."""

    async def scenario(storage: Storage, dids: list[str]) -> None:
        more = [(await storage.register_device(f"AABBCCDD{i:04X}", PK, "PASS")).device.did for i in range(600)]
        feed = RecordingFeed()
        bus = DeviceBus(storage, ProductCache(storage), feed)
        listener = RecordingListener()
        bus.add_listener(listener)
        await bus.start()
        try:
            await bus.wait_ready(5.0)
            for did in more:
                bus.presence(Presence(client_id=did, online=True, username=did))
            bus.presence(Presence(client_id="gizdev-cloud", online=True, username="service"))  # not a device
            bus.presence(BrokerRestarted())
            for did in (*dids, more[0]):
                bus.presence(Presence(client_id=did, online=True, username=did))
            await until(lambda: bus.stats.presence_events == len(more) + 3, "every device event applied")
            await until(lambda: bus.online_count == 3, "the three after the restart online")
            stored = {device.did for device in await storage.list_devices(limit=1000) if device.is_online}
            assert stored == {*dids, more[0]}
            changes = [(e.did, e.online) for e in listener.events if isinstance(e, PresenceChange)]
            assert changes[: len(more)] == [(did, True) for did in more]
            assert sorted(changes[len(more) : 2 * len(more)]) == sorted((did, False) for did in more)
            assert changes[2 * len(more) :] == [(did, True) for did in (*dids, more[0])]
        finally:
            await bus.stop()

    with_bus(db_url, scenario)
