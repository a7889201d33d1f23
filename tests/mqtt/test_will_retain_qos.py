"""What the home-automation uplink needs of the small client, against a real Mosquitto: a will, retained
messages and QoS 1 both ways."""

from __future__ import annotations

import asyncio

import pytest

from gizdev.errors import BrokerError
from gizdev.mqtt import MqttClient, MqttMessage
from gizdev.mqtt.packets import Will, connect_packet
from tests.cloud.broker_fixtures import mosquitto_binary_fixture  # noqa: F401
from tests.link.helpers import run
from tests.mqtt.plain_broker import PlainBroker, plain_broker_fixture  # noqa: F401


async def next_message(client: MqttClient, timeout_s: float = 5.0) -> MqttMessage:
    async with asyncio.timeout(timeout_s):
        async for message in client.messages():
            return message
    raise AssertionError("no message")


def client(broker: PlainBroker, name: str, **options: object) -> MqttClient:
    return MqttClient("127.0.0.1", broker.port, client_id=name, **options)  # type: ignore[arg-type]


def test_connect_packet_with_will_lays_out_flags_and_payload() -> None:
    # MQTT 3.1.1 §3.1.2.3 flags: will 0x04, will QoS << 3, will retain 0x20; payload: id, will topic, will message.
    data = connect_packet("c", will=Will("t/a", b"off", retain=True, qos=1), keepalive_s=30)
    expected = "1017" + "00044d515454" + "04" + "2e" + "001e" + "000163" + "0003742f61" + "00036f6666"
    assert data.hex() == expected


def test_will_is_published_retained_when_the_connection_drops(plain_broker: PlainBroker) -> None:
    async def main() -> None:
        dying = client(plain_broker, "dying", will=Will("dev/availability", b"offline", retain=True))
        await dying.connect()
        writer = dying._writer
        assert writer is not None
        writer.transport.abort()  # no DISCONNECT: the broker must send the will
        await dying.close()
        late = client(plain_broker, "late")
        await late.connect()
        try:
            await late.subscribe("dev/availability")
            assert await next_message(late) == MqttMessage("dev/availability", b"offline")  # retained: still there
        finally:
            await late.close()

    run(main(), timeout=30)


def test_no_will_after_a_clean_disconnect(plain_broker: PlainBroker) -> None:
    async def main() -> None:
        watcher = client(plain_broker, "watcher")
        await watcher.connect()
        await watcher.subscribe("dev/#")
        polite = client(plain_broker, "polite", will=Will("dev/availability", b"offline"))
        await polite.connect()
        await polite.close()
        await polite_marker(watcher)
        await watcher.close()

    async def polite_marker(watcher: MqttClient) -> None:
        await watcher.publish("dev/marker", b"x")
        assert await next_message(watcher) == MqttMessage("dev/marker", b"x")  # nothing came before the marker

    run(main(), timeout=30)


def test_retained_publish_reaches_a_later_subscriber_and_plain_does_not(plain_broker: PlainBroker) -> None:
    async def main() -> None:
        publisher = client(plain_broker, "publisher")
        await publisher.connect()
        await publisher.publish("dev/plain", b"1")
        await publisher.publish("dev/state", b'{"on": true}', retain=True)
        publisher.publish_nowait("dev/state2", b"2", retain=True)
        await publisher.publish("dev/qos1", b"q", retain=True, qos=1)  # returns after the PUBACK
        later = client(plain_broker, "later")
        await later.connect()
        try:
            await later.subscribe("dev/#")
            got = {(await next_message(later)).topic for _ in range(3)}
            assert got == {"dev/state", "dev/state2", "dev/qos1"}
            with pytest.raises(TimeoutError):
                await next_message(later, timeout_s=0.3)  # the plain message was not kept
        finally:
            await later.close()
            await publisher.close()

    run(main(), timeout=30)


def test_qos1_subscription_delivers_and_acknowledges(plain_broker: PlainBroker) -> None:
    async def main() -> None:
        receiver = client(plain_broker, "receiver")
        sender = client(plain_broker, "sender")
        await receiver.connect()
        await sender.connect()
        try:
            await receiver.subscribe("cmd/#", qos=1)
            for index in range(20):
                await sender.publish("cmd/set", str(index).encode(), qos=1)
            got = [(await next_message(receiver)).payload for _ in range(20)]
            assert got == [str(index).encode() for index in range(20)]
            with pytest.raises(TimeoutError):  # acknowledged, so nothing is sent again
                await next_message(receiver, timeout_s=0.5)
            with pytest.raises(ValueError):
                await receiver.subscribe("x", qos=2)
        finally:
            await receiver.close()
            await sender.close()

    run(main(), timeout=30)


def test_qos1_publish_fails_when_the_broker_is_gone(plain_broker: PlainBroker) -> None:
    async def main() -> None:
        publisher = client(plain_broker, "publisher", timeout_s=2.0)
        await publisher.connect()
        plain_broker.kill()
        with pytest.raises(BrokerError):
            for _ in range(50):  # the first writes may still go into the socket before the close is seen
                await publisher.publish("dev/x", b"1", qos=1)
                await asyncio.sleep(0.05)
        await publisher.close()

    run(main(), timeout=30)
