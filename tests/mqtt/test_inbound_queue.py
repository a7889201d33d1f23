"""The client's bounded inbound queue, against a real Mosquitto: a broker flooding a slow consumer costs at most
the bound, the oldest messages go first, and the connection goes on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gizdev.errors import BrokerError
from gizdev.mqtt import MqttClient, MqttMessage
from tests.cloud.broker_fixtures import (  # noqa: F401
    BrokerThread,
    broker_dir_fixture,
    mosquitto_binary_fixture,
    mosquitto_broker_fixture,
)
from tests.link.helpers import run
from tests.mqtt.test_client import DID_A, PK

FLOOD = 300


async def _arrived(client: MqttClient, total: int, timeout_s: float = 10.0) -> None:
    """Wait until the read loop has taken in ``total`` messages (queued or dropped): nobody consumes meanwhile."""
    async with asyncio.timeout(timeout_s):
        while client.queued_messages + client.dropped_messages < total:
            await asyncio.sleep(0.01)


async def _take(client: MqttClient, count: int) -> list[MqttMessage]:
    out: list[MqttMessage] = []
    async with asyncio.timeout(5):
        async for message in client.messages():
            out.append(message)
            if len(out) == count:
                break
    return out


def _pair(
    broker: BrokerThread, *, max_queued: int = 1000, max_queued_bytes: int = 1 << 22
) -> tuple[MqttClient, MqttClient]:
    broker.add_device_sync(DID_A, "PASSA", PK)
    settings = broker.settings
    device = MqttClient("127.0.0.1", settings.port, client_id=DID_A, username=DID_A, password="PASSA")
    consumer = MqttClient(
        "127.0.0.1",
        settings.port,
        client_id="svc",
        username=settings.username,
        password=settings.password,
        max_queued=max_queued,
        max_queued_bytes=max_queued_bytes,
    )
    return device, consumer


def test_a_flood_keeps_the_newest_messages_up_to_the_bound(
    mosquitto_broker: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    device, consumer = _pair(mosquitto_broker, max_queued=10)

    async def main() -> None:
        await device.connect()
        await consumer.connect()
        try:
            await consumer.subscribe("dev2app/#")
            for number in range(FLOOD):  # the consumer reads nothing meanwhile
                await device.publish(f"dev2app/{DID_A}", b"%d" % number)
            await _arrived(consumer, FLOOD)
            assert (consumer.queued_messages, consumer.dropped_messages) == (10, FLOOD - 10)
            taken = await _take(consumer, 10)
            assert [m.payload for m in taken] == [b"%d" % n for n in range(FLOOD - 10, FLOOD)]  # newest, in order
            # Caught up: the connection is still good, and messages flow again without loss.
            await device.publish(f"dev2app/{DID_A}", b"after")
            assert [m.payload for m in await _take(consumer, 1)] == [b"after"]
            assert consumer.dropped_messages == FLOOD - 10 and consumer.connected
        finally:
            await device.close()
            await consumer.close()

    with caplog.at_level(logging.WARNING, logger="gizdev.mqtt.client"):
        run(main(), timeout=60)
    warnings = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(warnings) == 1  # once per overflow, not once per dropped message


def test_the_payload_bytes_are_bounded_too(mosquitto_broker: BrokerThread) -> None:
    device, consumer = _pair(mosquitto_broker, max_queued_bytes=10_000)

    async def main() -> None:
        await device.connect()
        await consumer.connect()
        try:
            await consumer.subscribe("dev2app/#")
            for number in range(50):
                await device.publish(f"dev2app/{DID_A}", bytes([number]) * 3000)  # 150 kB sent, 10 kB may wait
            await _arrived(consumer, 50)
            assert consumer.queued_messages == 3 and consumer.dropped_messages == 47
            assert [m.payload[0] for m in await _take(consumer, 3)] == [47, 48, 49]
        finally:
            await device.close()
            await consumer.close()

    run(main(), timeout=60)


def test_queued_messages_are_delivered_before_the_end(mosquitto_broker: BrokerThread) -> None:
    device, consumer = _pair(mosquitto_broker, max_queued=5)

    async def main() -> None:
        await device.connect()
        await consumer.connect()
        await consumer.subscribe("dev2app/#")
        for number in range(8):
            await device.publish(f"dev2app/{DID_A}", b"%d" % number)
        await _arrived(consumer, 8)
        await device.close()
        await consumer.close()
        assert [m.payload for m in await _take(consumer, 5)] == [b"3", b"4", b"5", b"6", b"7"]
        with pytest.raises(BrokerError, match="closed"):
            await _take(consumer, 1)

    run(main(), timeout=60)


def test_the_bound_must_hold_a_message() -> None:
    with pytest.raises(ValueError, match="at least one message"):
        MqttClient("127.0.0.1", 1, client_id="c", max_queued=0)
