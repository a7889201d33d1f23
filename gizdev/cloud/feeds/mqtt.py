"""Device traffic over one MQTT service connection (the managed Mosquitto, or an external Mosquitto or EMQX)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl

from gizdev.backoff import Backoff
from gizdev.cloud.broker.settings import BrokerSettings
from gizdev.cloud.feeds import FeedSink
from gizdev.cloud.presence import EMQX_EVENT_TOPIC, parse_emqx_event
from gizdev.errors import BrokerError
from gizdev.mqtt import MqttClient

__all__ = ["CLIENT_ID", "DEVICE_TOPICS", "MqttFeed"]

_LOGGER = logging.getLogger(__name__)

CLIENT_ID = "gizdev-cloud"  # the service connection's default (CloudConfig.broker_client_id)
DEVICE_TOPICS = ("dev2app/#", "cli2ser_req")  # what devices send the cloud (cloud protocol §1.5)
OBSERVED_TOPIC = "dev2app/#"  # the frames listeners hear
RECONNECT_INITIAL_S = 0.2
RECONNECT_MAX_S = 5.0


class MqttFeed:
    """Subscribe the device topics (shared in ``group`` if given) and EMQX's client events (never shared: every
    worker keeps presence); publish on the same connection.

    In a group, a second connection of the worker's own subscribes the device frames unshared: a copy of every
    frame for this worker's listeners (``fans_out``; the realtime WebSocket API must hear every device, whichever
    worker handles its frames), as RabbitMQ's copy queue gives one (:mod:`gizdev.cloud.feeds.amqp`).
    """

    def __init__(self, broker: BrokerSettings, *, group: str | None = None, client_id: str = CLIENT_ID) -> None:
        self.broker = broker
        self.group = group
        self.fans_out = group is not None
        # The managed broker pins client ids to usernames, so one service connection has one id; several workers
        # on an external broker each need their own (a second one would take the first one's session over): a
        # worker of a group without an id of its own gets a random one.
        if group is not None and client_id == CLIENT_ID:
            client_id = f"{CLIENT_ID}-{secrets.token_hex(4)}"
        self.client_id = client_id
        self.observer_client_id = f"{client_id}-observe"
        # In a group, a 0x0094 on dev2app/<did>/<clientid> goes to any worker: the one that sent the 0x0093 also
        # subscribes its own <clientid> (≤ 23 characters: GAgent's buffer), unshared. The observer connection hears
        # it too; this subscription keeps confirmations coming while that connection is down or not yet up.
        self.reply_client_id: str | None = f"gizdev{secrets.token_hex(8)}" if group is not None else None
        self._client: MqttClient | None = None

    def __str__(self) -> str:
        return str(self.broker)

    @property
    def topics(self) -> tuple[str, ...]:
        if self.group is None:
            return (*DEVICE_TOPICS, EMQX_EVENT_TOPIC)
        shared = tuple(f"$share/{self.group}/{topic}" for topic in DEVICE_TOPICS)
        return (*shared, f"dev2app/+/{self.reply_client_id}", EMQX_EVENT_TOPIC)

    async def run(self, sink: FeedSink) -> None:
        if not self.fans_out:
            await self._run_handler(sink)
            return
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._run_handler(sink))
            tasks.create_task(self._run_observer(sink))

    def _client_for(self, client_id: str) -> MqttClient:
        broker = self.broker
        return MqttClient(
            broker.host,
            broker.port,
            client_id=client_id,
            username=broker.username,
            password=broker.password,
            keepalive_s=60,
            tls=ssl.create_default_context() if broker.tls else None,
        )

    async def _run_handler(self, sink: FeedSink) -> None:
        """The connection this worker handles its share on and publishes through."""
        backoff = Backoff(RECONNECT_INITIAL_S, RECONNECT_MAX_S)
        broker = self.broker
        while True:
            client = self._client_for(self.client_id)
            try:
                await client.connect()
                for topic in self.topics:
                    await client.subscribe(topic)
                self._client = client
                sink.feed_up()
                _LOGGER.info("device bus connected to %s", broker)
                backoff.reset()
                async for message in client.messages():
                    if message.topic.startswith("$SYS/brokers/"):
                        event = parse_emqx_event(message.topic, message.payload)
                        if event is not None:
                            sink.presence(event)
                    else:
                        await sink.dispatch(message.topic, message.payload)
            except BrokerError as exc:
                _LOGGER.warning("device bus: broker connection lost (%s); retrying in %.1f s", exc, backoff.delay)
            finally:
                self._client = None
                sink.feed_down()
                await client.close()
            await backoff.wait()

    async def _run_observer(self, sink: FeedSink) -> None:
        """The connection that hears every device frame, for this worker's listeners (a group only)."""
        backoff = Backoff(RECONNECT_INITIAL_S, RECONNECT_MAX_S)
        while True:
            client = self._client_for(self.observer_client_id)
            try:
                await client.connect()
                await client.subscribe(OBSERVED_TOPIC)
                _LOGGER.info("device bus observing every device frame on %s", self.broker)
                backoff.reset()
                async for message in client.messages():
                    await sink.observe(message.topic, message.payload)
            except BrokerError as exc:
                _LOGGER.warning("device bus: observer connection lost (%s); retrying in %.1f s", exc, backoff.delay)
            finally:
                await client.close()
            await backoff.wait()

    async def publish(self, topic: str, payload: bytes) -> None:
        client = self._client
        if client is None:
            raise BrokerError(f"not connected to the broker {self.broker}")
        await client.publish(topic, payload)
