"""Reusable pieces for tests that need a real Mosquitto: free ports, a managed broker on its own thread, and a raw
MQTT 3.1 client that speaks exactly like GAgent (gagent-wire-observations §3).

Use the fixtures by importing them (their function names end in ``_fixture`` so that a test's parameter does not
shadow the import)::

    from tests.cloud.broker_fixtures import broker_dir_fixture, mosquitto_broker_fixture  # noqa: F401

    def test_something(mosquitto_broker: BrokerThread) -> None:
        mosquitto_broker.add_device_sync(DID, PASSCODE, PRODUCT_KEY)
        run(scenario(mosquitto_broker.settings))  # tests.guards.run

``mosquitto_broker`` runs :class:`ManagedMosquitto` on an event loop in a background thread, so a test can use
it from plain code or from its own loop (``tests.guards.run``); ``await broker.add_device(...)`` hops to the
broker's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gizdev.cloud.broker import BrokerSettings, ManagedMosquitto, find_mosquitto
from gizdev.errors import BrokerError
from tests.loop_thread import LoopThread

__all__ = [
    "BrokerThread",
    "RawMqtt31",
    "broker_dir_fixture",
    "connect_packet_v31",
    "free_port",
    "mosquitto_binary_fixture",
    "mosquitto_broker_fixture",
    "mosquitto_pids_for",
    "pid_alive",
    "wait_until",
    "wait_until_async",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def mosquitto_pids_for(config_path: Path) -> list[int]:
    """Live processes whose command line names ``config_path`` (any mosquitto a test left behind)."""
    wanted = os.fsencode(config_path)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if wanted in (entry / "cmdline").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


async def wait_until_async(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


class BrokerThread(LoopThread):
    """A :class:`ManagedMosquitto` whose event loop runs in a daemon thread."""

    def __init__(self, broker: ManagedMosquitto) -> None:
        super().__init__("mosquitto-loop", broker.start, broker.stop)
        self.broker = broker

    @property
    def settings(self) -> BrokerSettings:
        return self.broker.settings

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def pid(self) -> int | None:
        return self.broker.pid

    async def add_device(self, did: str, passcode: str, product_key: str) -> None:
        await self.run(self.broker.add_device(did, passcode, product_key))

    async def remove_device(self, did: str) -> bool:
        return await self.run(self.broker.remove_device(did))

    def add_device_sync(self, did: str, passcode: str, product_key: str) -> None:
        self.call(self.broker.add_device(did, passcode, product_key))


@pytest.fixture(name="mosquitto_binary", scope="session")
def mosquitto_binary_fixture() -> str:
    """The mosquitto binary (tools/test installs Debian's package); tests that need it skip without it."""
    try:
        return find_mosquitto()
    except BrokerError as exc:
        pytest.skip(str(exc))


@pytest.fixture(name="broker_dir")
def broker_dir_fixture() -> Iterator[Path]:
    """A fresh data dir whose ancestors every user can search, so that a root test run drops privileges to the
    ``mosquitto`` user as production does (pytest's own tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="gizdev-broker-", dir="/tmp" if Path("/tmp").is_dir() else None))
    path.chmod(0o711)  # searchable, not listable
    try:
        yield path / "broker"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(name="mosquitto_broker")
def mosquitto_broker_fixture(mosquitto_binary: str, broker_dir: Path) -> Iterator[BrokerThread]:
    """A managed Mosquitto on a free loopback port, running on a background thread's loop; no devices yet."""
    thread = BrokerThread(ManagedMosquitto(broker_dir, port=free_port(), binary=mosquitto_binary))
    thread.start()
    pid = thread.pid
    try:
        yield thread
    finally:
        thread.close()
    assert pid is not None and not pid_alive(pid), "the managed mosquitto outlived its fixture"


# -- GAgent's MQTT 3.1 on the wire --------------------------------------------------------------------------------


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _mqtt_string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def connect_packet_v31(client_id: str, username: str, password: str, *, keepalive_s: int = 120) -> bytes:
    """CONNECT as GAgent sends it: ``MQIsdp`` level 3, flags 0xC2 (user, password, clean session), no will."""
    variable = _mqtt_string("MQIsdp") + bytes([3, 0xC2]) + keepalive_s.to_bytes(2, "big")
    payload = _mqtt_string(client_id) + _mqtt_string(username) + _mqtt_string(password)
    body = variable + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


class RawMqtt31:
    """A byte-level MQTT 3.1 client over asyncio streams (GAgent's packets; QoS 0 only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawMqtt31:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, packet: bytes) -> None:
        self.writer.write(packet)
        await self.writer.drain()

    async def read_packet(self, timeout_s: float = 5.0) -> bytes:
        """One whole packet (fixed header included); IncompleteReadError if the broker closed the connection."""
        async with asyncio.timeout(timeout_s):
            header = await self.reader.readexactly(1)
            length, shift, raw_length = 0, 0, b""
            while True:
                byte = await self.reader.readexactly(1)
                raw_length += byte
                length |= (byte[0] & 0x7F) << shift
                shift += 7
                if not byte[0] & 0x80:
                    break
            return header + raw_length + await self.reader.readexactly(length)

    async def connect(self, client_id: str, username: str, password: str) -> bytes:
        """Send CONNECT; the CONNACK packet (``20020000`` = accepted)."""
        await self.send(connect_packet_v31(client_id, username, password))
        return await self.read_packet()

    async def subscribe(self, message_id: int, topic: str) -> bytes:
        """SUBSCRIBE one topic at QoS 0 (fixed header 0x82, as GAgent); the SUBACK packet."""
        body = message_id.to_bytes(2, "big") + _mqtt_string(topic) + b"\x00"
        await self.send(bytes([0x82]) + _remaining_length(len(body)) + body)
        return await self.read_packet()

    async def publish(self, topic: str, payload: bytes) -> None:
        """PUBLISH at QoS 0, retain 0."""
        body = _mqtt_string(topic) + payload
        await self.send(bytes([0x30]) + _remaining_length(len(body)) + body)

    async def read_publish(self, timeout_s: float = 5.0) -> tuple[str, bytes]:
        """The next PUBLISH as (topic, payload); other packets are an assertion failure."""
        packet = await self.read_packet(timeout_s)
        assert packet[0] & 0xF0 == 0x30, f"expected PUBLISH, got {packet.hex()}"
        index = 1
        while packet[index] & 0x80:
            index += 1
        body = packet[index + 1 :]
        topic_length = int.from_bytes(body[:2], "big")
        return body[2 : 2 + topic_length].decode(), body[2 + topic_length :]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
