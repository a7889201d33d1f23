"""The small MQTT client against a real Mosquitto (device logins, ACLs) and against hostile fake brokers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gizdev.errors import BrokerError
from gizdev.mqtt import MQTT_31, MQTT_311, MqttClient, MqttMessage, encode_remaining_length
from tests.cloud.broker_fixtures import (  # noqa: F401
    BrokerThread,
    broker_dir_fixture,
    mosquitto_binary_fixture,
    mosquitto_broker_fixture,
)
from tests.link.helpers import run

PK = "0123456789abcdef0123456789abcdef"
DID_A = "DeviceA0123456789abcde"
DID_B = "DeviceB0123456789abcde"


@pytest.mark.parametrize(
    ("length", "encoded"),
    # MQTT 3.1.1 §2.2.3, table 2.4: the edges of each size.
    [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"), (2097151, "ffff7f"),
     (2097152, "80808001"), (268435455, "ffffff7f")],
)  # fmt: skip
def test_remaining_length(length: int, encoded: str) -> None:
    assert encode_remaining_length(length).hex() == encoded


def test_remaining_length_out_of_range() -> None:
    with pytest.raises(ValueError, match="too large"):
        encode_remaining_length(268435456)


async def next_message(client: MqttClient, timeout_s: float = 5.0) -> MqttMessage:
    async with asyncio.timeout(timeout_s):
        async for message in client.messages():
            return message
    raise AssertionError("no message")


@pytest.mark.parametrize("protocol", [MQTT_31, MQTT_311])
def test_devices_and_service_exchange_messages(mosquitto_broker: BrokerThread, protocol: int) -> None:
    mosquitto_broker.add_device_sync(DID_A, "PASSA", PK)
    settings = mosquitto_broker.settings

    async def main() -> None:
        device = MqttClient("127.0.0.1", settings.port, client_id=DID_A, username=DID_A, password="PASSA",
                            protocol=protocol)  # fmt: skip
        cloud = MqttClient("127.0.0.1", settings.port, client_id="svc", username=settings.username,
                           password=settings.password)  # fmt: skip
        await device.connect()
        await cloud.connect()
        try:
            await device.subscribe(f"app2dev/{DID_A}/#")
            await cloud.subscribe("dev2app/#")
            await device.publish(f"dev2app/{DID_A}", b"\x00\x00\x00\x03\x03\x00\x00\x91")
            assert await next_message(cloud) == MqttMessage(f"dev2app/{DID_A}", b"\x00\x00\x00\x03\x03\x00\x00\x91")
            big = bytes(range(256)) * 40  # a 10 KiB payload: remaining length in two bytes
            await cloud.publish(f"app2dev/{DID_A}/app1", big)
            assert await next_message(device) == MqttMessage(f"app2dev/{DID_A}/app1", big)
        finally:
            await device.close()
            await cloud.close()
        assert not device.connected

    run(main(), timeout=30)


def test_refused_login_and_foreign_topic(mosquitto_broker: BrokerThread) -> None:
    mosquitto_broker.add_device_sync(DID_A, "PASSA", PK)
    mosquitto_broker.add_device_sync(DID_B, "PASSB", PK)
    port = mosquitto_broker.port

    async def main() -> None:
        wrong = MqttClient("127.0.0.1", port, client_id=DID_A, username=DID_A, password="WRONG", protocol=MQTT_31)
        with pytest.raises(BrokerError, match=r"refused .DeviceA0123456789abcde.: (bad user name|not authorized)"):
            await wrong.connect()
        a = MqttClient("127.0.0.1", port, client_id=DID_A, username=DID_A, password="PASSA")
        b = MqttClient("127.0.0.1", port, client_id=DID_B, username=DID_B, password="PASSB")
        await a.connect()
        await b.connect()
        try:
            await a.subscribe(f"app2dev/{DID_B}/#")  # granted by mosquitto, but the ACL delivers nothing
            await b.subscribe(f"app2dev/{DID_B}/#")
            await a.publish(f"app2dev/{DID_B}/x", b"intruder")  # a device may not write app2dev at all
            with pytest.raises(TimeoutError):
                await next_message(b, timeout_s=0.5)
        finally:
            await a.close()
            await b.close()

    run(main(), timeout=30)


def test_broker_dropping_the_device_ends_messages(mosquitto_broker: BrokerThread) -> None:
    mosquitto_broker.add_device_sync(DID_A, "PASSA", PK)

    async def main() -> None:
        client = MqttClient("127.0.0.1", mosquitto_broker.port, client_id=DID_A, username=DID_A, password="PASSA")
        await client.connect()
        await mosquitto_broker.remove_device(DID_A)  # mosquitto disconnects a client whose account went away
        with pytest.raises(BrokerError, match="closed the connection"):
            await next_message(client, timeout_s=10)
        assert client.closed is not None and client.closed.done()
        with pytest.raises(BrokerError, match="not connected"):
            await client.publish("dev2app/x", b"late")
        await client.close()

    run(main(), timeout=30)


# -- hostile brokers ------------------------------------------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_broker(script: Script) -> AsyncIterator[int]:
    handlers: set[asyncio.Task[object]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await script(reader, writer)
        except asyncio.CancelledError:
            pass  # the fixture ends the script; a cancelled handler would be logged as an error on Python 3.11
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read_connect(reader: asyncio.StreamReader) -> None:
    header = await reader.readexactly(2)
    await reader.readexactly(header[1])


CONNACK_OK = bytes.fromhex("20020000")


@pytest.mark.parametrize(
    ("after_connack", "error"),
    [
        (bytes.fromhex("30ffffffff7f"), "malformed remaining length"),
        (bytes.fromhex("30ffffff7f"), "packet of 268435455 bytes"),
        (bytes.fromhex("3001ff"), "malformed PUBLISH"),
        (bytes.fromhex("300400ff6162"), "malformed PUBLISH"),
        (bytes.fromhex("30040002ff61"), "not UTF-8"),
        (bytes.fromhex("3005"), "closed the connection"),  # truncated, then the socket closes
    ],
)
def test_hostile_broker_input_ends_the_connection_cleanly(after_connack: bytes, error: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_connect(reader)
        writer.write(CONNACK_OK + after_connack)
        await writer.drain()
        await asyncio.sleep(0.2)

    async def main() -> None:
        async with fake_broker(script) as port:
            client = MqttClient("127.0.0.1", port, client_id="dev", keepalive_s=0)
            await client.connect()
            with pytest.raises(BrokerError, match=error):
                await next_message(client)
            await client.close()

    run(main(), timeout=10)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (bytes.fromhex("20020005"), "not authorized"),
        (bytes.fromhex("20020001"), "unacceptable protocol version"),
        (bytes.fromhex("9003000100"), "answered CONNECT with packet type 9"),
        (b"", "cannot connect"),
    ],
)
def test_bad_connect_answers(reply: bytes, error: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_connect(reader)
        writer.write(reply)
        await writer.drain()

    async def main() -> None:
        async with fake_broker(script) as port:
            client = MqttClient("127.0.0.1", port, client_id="dev", timeout_s=2)
            with pytest.raises(BrokerError, match=error):
                await client.connect()
            assert not client.connected

    run(main(), timeout=10)


def test_silent_broker_times_out_on_connect_and_on_pings() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def no_pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_connect(reader)
        writer.write(CONNACK_OK)
        await asyncio.sleep(10)  # reads nothing, answers no PINGREQ

    async def main() -> None:
        async with fake_broker(mute) as port:
            client = MqttClient("127.0.0.1", port, client_id="dev", timeout_s=0.5)
            with pytest.raises(BrokerError, match="cannot connect"):
                await client.connect()
        async with fake_broker(no_pong) as port:
            client = MqttClient("127.0.0.1", port, client_id="dev", keepalive_s=1)
            await client.connect()
            start = asyncio.get_running_loop().time()
            with pytest.raises(BrokerError, match="stopped answering pings"):
                await next_message(client, timeout_s=5)
            # A ping every keepalive/2, dropped after two intervals without an answer.
            assert asyncio.get_running_loop().time() - start < 3
            await client.close()

    run(main(), timeout=20)


def test_a_broker_that_is_away_is_named_without_the_password() -> None:
    """(What the removed aiomqtt service_client promised, now of the client the cloud uses.)"""
    with socket.socket() as unused:  # bound, never listening: the connection is refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

        async def main() -> None:
            client = MqttClient("127.0.0.1", port, client_id="cloud", username="cloud", password="s3cret")
            with pytest.raises(BrokerError, match=rf"cannot connect to the broker at 127\.0\.0\.1:{port}") as info:
                await client.connect()
            assert "s3cret" not in str(info.value) and not client.connected

        run(main(), timeout=10)
