"""A small MQTT client for QoS 0 traffic on asyncio streams: what GAgent speaks (MQTT 3.1) and MQTT 3.1.1.

Why not aiomqtt here: its ``publish`` costs about 220-310 µs of CPU on the development machine (2 vCPU EPYC) against
about 10-13 µs for writing the same PUBLISH packet to the socket (tools/bench_mqtt.py, both against a loopback
Mosquitto); the bridge publishes one per MCU report, with a budget of 200 µs. The device protocol
needs little: CONNECT with user name and password, SUBSCRIBE at QoS 0 one topic at a time (as GAgent), PUBLISH at
QoS 0 both ways, PINGREQ for keepalive, DISCONNECT. For the home-automation uplink it also does a will, retained
PUBLISH, and QoS 1 (PUBLISH waiting for its PUBACK, QoS 1 subscriptions acknowledged); QoS 2, persistent
sessions and MQTT 5 are out of scope.

Packets are built by :mod:`gizdev.mqtt.packets`.

Inbound messages wait in a bounded queue until the consumer takes them from :meth:`MqttClient.messages`: at most
``max_queued`` messages and ``max_queued_bytes`` of payload (defaults :data:`MAX_QUEUED_MESSAGES`,
:data:`MAX_QUEUED_BYTES`). A broker that sends faster than the consumer reads does not grow memory: when a new
message would exceed a bound, the *oldest* queued messages are dropped (QoS 0 is at-most-once anyway, and for
device traffic the newest state and command matter most), counted in :attr:`MqttClient.dropped_messages` and
logged once per overflow (a WARNING when dropping starts; it starts again after the consumer has caught up). The
read loop itself never waits for the consumer, so keepalive answers and SUBACKs are still seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gizdev.errors import BrokerError
from gizdev.mqtt.packets import (
    CONNACK,
    DISCONNECT,
    MQTT_31,
    MQTT_311,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBLISH,
    RETAIN,
    SUBACK,
    SUBSCRIBE,
    Will,
    connect_packet,
    encode_remaining_length,
    encode_string,
    packet,
)

__all__ = [
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_MESSAGES",
    "MQTT_31",
    "MQTT_311",
    "MqttClient",
    "MqttMessage",
    "encode_remaining_length",
]

_LOGGER = logging.getLogger(__name__)

MAX_PACKET = 1 << 20  # a broker sending more than this to a device is broken or hostile
#: Inbound messages held for a slow consumer (see the module doc for what happens beyond).
MAX_QUEUED_MESSAGES = 1000
MAX_QUEUED_BYTES = 4 * MAX_PACKET
_CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


@dataclass(frozen=True, slots=True)
class MqttMessage:
    topic: str
    payload: bytes


class _Inbox:
    """Messages for the consumer, bounded in count and payload bytes by dropping the oldest; then the end."""

    def __init__(self, name: str, max_messages: int, max_bytes: int) -> None:
        self.name = name
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.dropped = 0
        self._items: deque[MqttMessage] = deque()
        self._bytes = 0
        self._end: BaseException | None = None
        self._ready = asyncio.Event()
        self._overflowing = False

    def put(self, message: MqttMessage) -> None:
        self._items.append(message)
        self._bytes += len(message.payload)
        while len(self._items) > self.max_messages or self._bytes > self.max_bytes:
            old = self._items.popleft()
            self._bytes -= len(old.payload)
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                _LOGGER.warning(
                    "MQTT %s: messages arrive faster than they are read; dropping the oldest (queue limit %d "
                    "messages, %d bytes)",
                    self.name,
                    self.max_messages,
                    self.max_bytes,
                )
        self._ready.set()

    def end(self, reason: BaseException) -> None:
        if self._end is None:
            self._end = reason
            self._ready.set()

    async def get(self) -> MqttMessage:
        while not self._items:
            if self._end is not None:
                end = self._end
                raise end if isinstance(end, BrokerError) else BrokerError(str(end))
            self._ready.clear()
            await self._ready.wait()
        message = self._items.popleft()
        self._bytes -= len(message.payload)
        if not self._items:
            self._overflowing = False  # caught up: a later overflow is news again
        return message

    def __len__(self) -> int:
        return len(self._items)


class MqttClient:
    """One connection: ``await connect()``, ``subscribe``, ``publish``, ``async for message in messages()``.

    The connection ends (and :meth:`messages` raises :class:`BrokerError`, after the messages still queued) when
    the broker closes it, sends something malformed, or misses two keepalive answers. ``close()`` sends
    DISCONNECT and closes. At most ``max_queued`` messages (``max_queued_bytes`` of payload) wait for the
    consumer; beyond, the oldest are dropped (module doc).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: int = 60,
        protocol: int = MQTT_311,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
        max_queued: int = MAX_QUEUED_MESSAGES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        will: Will | None = None,
    ) -> None:
        if protocol not in (MQTT_31, MQTT_311):
            raise ValueError(f"unsupported MQTT protocol level {protocol}")
        if not 0 <= keepalive_s <= 0xFFFF:
            raise ValueError("keepalive must be within 0..65535 s")
        if max_queued < 1 or max_queued_bytes < 0:
            raise ValueError("the inbound queue must hold at least one message")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.username = username
        self.password = password
        self.keepalive_s = keepalive_s
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.tls = tls
        self.will = will
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._inbox = _Inbox(client_id, max_queued, max_queued_bytes)
        self._acks: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._pong = asyncio.Event()
        self.closed: asyncio.Future[BaseException | None] | None = None

    # -- connection ---------------------------------------------------------------------------------------------

    async def connect(self) -> None:
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(self.timeout_s):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
                self._writer.write(self._connect_packet())
                kind, _, body = await self._read_packet()
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            await self._drop()
            raise BrokerError(f"cannot connect to the broker at {where}: {exc or type(exc).__name__}") from exc
        except BrokerError:
            await self._drop()
            raise
        if kind != CONNACK or len(body) != 2:
            await self._drop()
            raise BrokerError(f"the broker at {where} answered CONNECT with packet type {kind} ({body.hex()})")
        if body[1] != 0:
            await self._drop()
            reason = _CONNACK_REASONS.get(body[1], f"code {body[1]}")
            raise BrokerError(f"the broker at {where} refused {self.client_id!r}: {reason}")
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        self._tasks = [loop.create_task(self._read_loop(), name=f"mqtt-read-{self.client_id}")]
        if self.keepalive_s:
            self._tasks.append(loop.create_task(self._keepalive(), name=f"mqtt-ping-{self.client_id}"))

    def _connect_packet(self) -> bytes:
        return connect_packet(
            self.client_id,
            username=self.username,
            password=self.password,
            keepalive_s=self.keepalive_s,
            protocol=self.protocol,
            will=self.will,
        )

    async def close(self) -> None:
        """DISCONNECT and close; idempotent."""
        writer = self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(packet(DISCONNECT, b""))
        await self._drop()

    async def _drop(self, reason: BaseException | None = None) -> None:
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not current), return_exceptions=True)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, RuntimeError):
                await writer.wait_closed()
        self._end(reason)

    def _end(self, reason: BaseException | None) -> None:
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(reason)
            self._inbox.end(reason or BrokerError("the connection was closed"))
        for future in self._acks.values():
            if not future.done():
                future.set_exception(reason or BrokerError("the connection was closed"))
        self._acks.clear()

    @property
    def connected(self) -> bool:
        return self.closed is not None and not self.closed.done()

    @property
    def dropped_messages(self) -> int:
        """Inbound messages dropped because the consumer fell behind (see the module doc)."""
        return self._inbox.dropped

    @property
    def queued_messages(self) -> int:
        """Inbound messages waiting for the consumer."""
        return len(self._inbox)

    # -- sending ------------------------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        writer = self._writer
        if writer is None or writer.is_closing() or not self.connected:
            raise BrokerError(f"not connected to the broker at {self.host}:{self.port}")
        writer.write(data)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 0) -> None:
        """PUBLISH; at QoS 1 returns once the broker's PUBACK came (BrokerError after ``timeout_s``), at QoS 0
        waits only if the socket's buffer is full (the broker reads slowly)."""
        if qos == 1:
            packet_id, future = self._expect_ack()
            try:
                self._write(self._publish_packet(topic, payload, retain, packet_id))
                await self._ack(packet_id, future, f"no PUBACK for {topic!r}")
            finally:
                self._acks.pop(packet_id, None)
            return
        if not self.publish_nowait(topic, payload, retain=retain):
            writer = self._writer
            if writer is not None:
                await writer.drain()

    def publish_nowait(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """PUBLISH at QoS 0 from synchronous code; False if the socket's buffer is over 64 KiB (slow broker)."""
        self._write(packet(PUBLISH, encode_string(topic) + payload, RETAIN if retain else 0))
        writer = self._writer
        return writer is None or writer.transport.get_write_buffer_size() <= 64 * 1024

    @staticmethod
    def _publish_packet(topic: str, payload: bytes, retain: bool, packet_id: int) -> bytes:
        body = encode_string(topic) + packet_id.to_bytes(2, "big") + payload
        return packet(PUBLISH, body, 0x02 | (RETAIN if retain else 0))  # QoS 1

    def _expect_ack(self) -> tuple[int, asyncio.Future[bytes]]:
        self._next_id = self._next_id % 0xFFFF + 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._acks[self._next_id] = future
        return self._next_id, future

    async def _ack(self, packet_id: int, future: asyncio.Future[bytes], what: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await future
        except TimeoutError:
            raise BrokerError(f"{what} within {self.timeout_s:.0f} s") from None

    async def subscribe(self, topic: str, qos: int = 0) -> None:
        """SUBSCRIBE one topic (QoS 0 or 1) and wait for its SUBACK; BrokerError if refused."""
        if qos not in (0, 1):
            raise ValueError(f"subscription QoS is 0 or 1, not {qos}")
        packet_id, future = self._expect_ack()
        try:
            body = packet_id.to_bytes(2, "big") + encode_string(topic) + bytes([qos])
            self._write(packet(SUBSCRIBE, body, flags=0x02))
            granted = await self._ack(packet_id, future, f"no SUBACK for {topic!r}")
        finally:
            self._acks.pop(packet_id, None)
        if granted[:1] == b"\x80":
            raise BrokerError(f"the broker refused the subscription to {topic!r}")

    # -- receiving ----------------------------------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[MqttMessage]:
        """Messages as they arrive; raises BrokerError when the connection ends (every later call too)."""
        while True:
            yield await self._inbox.get()

    async def _read_packet(self) -> tuple[int, int, bytes]:
        reader = self._reader
        assert reader is not None
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        for _ in range(4):
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            raise BrokerError("malformed remaining length from the broker")
        if length > MAX_PACKET:
            raise BrokerError(f"the broker sent a packet of {length} bytes (limit {MAX_PACKET})")
        return first >> 4, first & 0x0F, await reader.readexactly(length)

    async def _read_loop(self) -> None:
        reason: BaseException | None = None
        try:
            while True:
                kind, flags, body = await self._read_packet()
                if kind == PUBLISH:
                    self._on_publish(flags, body)
                elif (kind == SUBACK and len(body) >= 3) or (kind == PUBACK and len(body) == 2):
                    future = self._acks.get(int.from_bytes(body[:2], "big"))
                    if future is not None and not future.done():
                        future.set_result(body[2:])
                elif kind == PINGRESP:
                    self._pong.set()
                else:
                    _LOGGER.debug("MQTT %s: ignored packet type %d (%s)", self.client_id, kind, body[:32].hex())
        except asyncio.IncompleteReadError:
            reason = BrokerError(f"the broker at {self.host}:{self.port} closed the connection")
        except (OSError, BrokerError) as exc:
            reason = exc if isinstance(exc, BrokerError) else BrokerError(f"connection to the broker failed: {exc}")
        except asyncio.CancelledError:
            raise
        await self._drop(reason)

    def _on_publish(self, flags: int, body: bytes) -> None:
        if len(body) < 2:
            raise BrokerError(f"malformed PUBLISH from the broker: {body.hex()}")
        size = int.from_bytes(body[:2], "big")
        qos = (flags >> 1) & 0x03
        start = 2 + size + (2 if qos else 0)
        if start > len(body):
            raise BrokerError(f"malformed PUBLISH from the broker: {body[:64].hex()}")
        try:
            topic = body[2 : 2 + size].decode("utf-8")
        except UnicodeDecodeError:
            raise BrokerError(f"PUBLISH with a topic that is not UTF-8: {body[2 : 2 + size].hex()}") from None
        if qos == 1:  # a QoS 1 subscription (or a broker that delivers at 1 anyway): acknowledge it
            self._write(packet(PUBACK, body[2 + size : start]))
        self._inbox.put(MqttMessage(topic, body[start:]))

    async def _keepalive(self) -> None:
        interval = self.keepalive_s / 2
        while True:
            await asyncio.sleep(interval)
            self._pong.clear()
            self._write(packet(PINGREQ, b""))
            try:
                async with asyncio.timeout(interval * 2):
                    await self._pong.wait()
            except TimeoutError:
                _LOGGER.warning("MQTT %s: no PINGRESP from %s:%d; closing", self.client_id, self.host, self.port)
                await self._drop(BrokerError("the broker stopped answering pings"))
                return
