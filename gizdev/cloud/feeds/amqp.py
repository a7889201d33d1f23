"""Device traffic from RabbitMQ's MQTT plugin over AMQP: one queue all workers share, presence from its events.

RabbitMQ's MQTT plugin publishes what devices send to the topic exchange ``amq.topic``, the MQTT topic turned into
a routing key (``dev2app/<did>`` → ``dev2app.<did>``). Every worker consumes the same durable quorum queue
(:data:`DEVICE_QUEUE`) bound to ``dev2app.#`` and ``cli2ser_req``: RabbitMQ gives each message to one consumer,
and a quorum queue lives on, replicated, when one node of the cluster stops. A message is acknowledged after it
was handled, so one in flight on a worker that dies goes to another.

Each worker also binds an exclusive queue of its own to ``dev2app.#`` (:attr:`AmqpFeed.observe_queue`): a copy of
every device frame for its listeners (the realtime WebSocket API), which must hear every device whichever worker
stores it.

Presence: each worker binds its own exclusive queue to the event exchange (``amq.rabbitmq.event``,
``connection.created``/``connection.closed``; every node's events) and keeps each device's newest connection
(:class:`gizdev.cloud.presence.ConnectionTracker`), so every worker knows who is online.

Controls go out on ``amq.topic`` with the device topic's routing key; the MQTT plugin of whichever node the device
is connected to delivers them. The feed connects to the first of its URLs that answers, the next one when that
node goes away.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from gizdev.backoff import Backoff
from gizdev.cloud.broker.access import EVENT_EXCHANGE, MQTT_EXCHANGE, SERVICE_QUEUE_PREFIX
from gizdev.cloud.broker.settings import check_amqp_url
from gizdev.cloud.broker.topics import routing_key_to_topic, topic_to_routing_key
from gizdev.cloud.feeds import FeedSink
from gizdev.cloud.feeds.mqtt import DEVICE_TOPICS
from gizdev.cloud.presence import ConnectionTracker, parse_rabbitmq_event
from gizdev.errors import BrokerError, ConfigError

__all__ = ["DEVICE_QUEUE", "AmqpFeed"]

_LOGGER = logging.getLogger(__name__)

DEVICE_QUEUE = f"{SERVICE_QUEUE_PREFIX}devices"
PREFETCH = 200  # unacknowledged messages per worker: enough to keep it busy, few to hand over if it dies
CONNECT_TIMEOUT_S = 5.0
RECONNECT_INITIAL_S = 0.2
RECONNECT_MAX_S = 5.0


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5672}"


class AmqpFeed:
    fans_out = True
    reply_client_id: str | None = None  # every worker's observe queue hears every 0x0094

    def __init__(self, urls: Sequence[str], *, queue: str = DEVICE_QUEUE) -> None:
        if not urls:
            raise ConfigError("no AMQP URL")
        self.urls = tuple(check_amqp_url(url) for url in urls)
        self.queue = queue
        # Unique in the cluster, and recognisable in `rabbitmqctl list_queues`.
        worker = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(3)}"
        self.events_queue = f"{SERVICE_QUEUE_PREFIX}presence.{worker}"
        self.observe_queue = f"{SERVICE_QUEUE_PREFIX}observe.{worker}"
        self.tracker = ConnectionTracker()
        self._exchange: AbstractExchange | None = None
        self._where = ""

    def __str__(self) -> str:
        return f"RabbitMQ (AMQP {', '.join(_host_port(url) for url in self.urls)})"

    async def run(self, sink: FeedSink) -> None:
        backoff = Backoff(RECONNECT_INITIAL_S, RECONNECT_MAX_S)
        for url in itertools.cycle(self.urls):
            where = _host_port(url)
            try:
                connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT_S)
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                _LOGGER.warning("device bus: AMQP %s unreachable (%s); retrying in %.1f s", where, exc, backoff.delay)
                await backoff.wait()
                continue
            try:
                async with connection:
                    channel = await connection.channel()
                    await channel.set_qos(prefetch_count=PREFETCH)
                    devices, events, observed = await self._declare(channel)
                    self._exchange = await channel.get_exchange(MQTT_EXCHANGE, ensure=False)
                    self._where = where
                    sink.feed_up()
                    _LOGGER.info("device bus consuming %s on %s", self.queue, where)
                    backoff.reset()
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._consume_events(events, sink))
                        group.create_task(self._consume_devices(devices, sink))
                        group.create_task(self._consume_copies(observed, sink))
            except* (*CONNECTION_EXCEPTIONS, TimeoutError, BrokerError) as exc:
                _LOGGER.warning(
                    "device bus: AMQP connection to %s lost (%s); retrying in %.1f s",
                    where,
                    exc.exceptions[0],
                    backoff.delay,
                )
            finally:
                self._exchange = None
                sink.feed_down()
            await backoff.wait()

    async def _declare(self, channel: AbstractChannel) -> tuple[AbstractQueue, AbstractQueue, AbstractQueue]:
        devices = await channel.declare_queue(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        for topic in DEVICE_TOPICS:
            await devices.bind(MQTT_EXCHANGE, topic_to_routing_key(topic))
        events = await channel.declare_queue(self.events_queue, exclusive=True, auto_delete=True)
        for key in ("connection.created", "connection.closed"):
            await events.bind(EVENT_EXCHANGE, key)
        observed = await channel.declare_queue(self.observe_queue, exclusive=True, auto_delete=True)
        await observed.bind(MQTT_EXCHANGE, topic_to_routing_key(DEVICE_TOPICS[0]))
        return devices, events, observed

    async def _consume_devices(self, queue: AbstractQueue, sink: FeedSink) -> None:
        async with queue.iterator() as messages:
            async for message in messages:
                await sink.dispatch(routing_key_to_topic(message.routing_key or ""), message.body)
                await message.ack()
        raise BrokerError("the device queue's consumer was cancelled")  # the channel closed

    async def _consume_copies(self, queue: AbstractQueue, sink: FeedSink) -> None:
        async with queue.iterator(no_ack=True) as messages:
            async for message in messages:
                await sink.observe(routing_key_to_topic(message.routing_key or ""), message.body)
        raise BrokerError("the copies queue's consumer was cancelled")

    async def _consume_events(self, queue: AbstractQueue, sink: FeedSink) -> None:
        async with queue.iterator(no_ack=True) as messages:
            async for message in messages:
                event = parse_rabbitmq_event(message.routing_key or "", message.headers)
                if event is None:
                    continue
                presence = self.tracker.apply(event)
                if presence is not None:
                    sink.presence(presence)
        raise BrokerError("the event queue's consumer was cancelled")

    async def publish(self, topic: str, payload: bytes) -> None:
        exchange = self._exchange
        if exchange is None:
            raise BrokerError(f"not connected to {self}")
        try:
            await exchange.publish(aio_pika.Message(payload), routing_key=topic_to_routing_key(topic))
        except CONNECTION_EXCEPTIONS as exc:
            raise BrokerError(f"AMQP {self._where}: {exc}") from exc
