"""Where the device bus gets device traffic from and sends controls to: a *feed* (the seam of :mod:`devicebus`).

* :class:`~gizdev.cloud.feeds.mqtt.MqttFeed`: one MQTT service connection (the managed Mosquitto, an external
  Mosquitto or EMQX); with several workers, shared subscriptions (``$share/<group>/…``) give each message to one.
* :class:`~gizdev.cloud.feeds.amqp.AmqpFeed`: RabbitMQ's MQTT plugin, consumed over AMQP from one queue that every
  worker shares, a copy of every device frame for each worker's listeners, and presence from RabbitMQ's event
  exchange.

A feed runs until cancelled, reconnecting on its own, and reports to its :class:`FeedSink` (the bus).
"""

from __future__ import annotations

from typing import Protocol

from gizdev.cloud.presence import BrokerRestarted, Presence

__all__ = ["Feed", "FeedSink"]


class FeedSink(Protocol):
    """What a feed reports to (the device bus)."""

    def feed_up(self) -> None:
        """Connected and subscribed: controls can go out."""

    def feed_down(self) -> None:
        """The connection is gone (the feed is reconnecting)."""

    async def dispatch(self, topic: str, payload: bytes) -> None:
        """One device message (``dev2app/…``, ``cli2ser_req``), MQTT topic as the device published it."""

    async def observe(self, topic: str, payload: bytes) -> None:
        """A copy of a device frame that some worker handles (``Feed.fans_out``), for this worker's listeners."""

    def presence(self, event: Presence | BrokerRestarted) -> None:
        """A broker connection event."""


class Feed(Protocol):
    # Whether every worker also gets a copy of every device frame (FeedSink.observe) besides the share it handles:
    # then the listeners (the realtime WebSocket API) of each worker hear every device, not only its share.
    fans_out: bool
    # The <clientid> under which this worker's own 0x0093 (DeviceBus.deliver) must be sent so that the device's
    # 0x0094 on dev2app/<did>/<clientid> reaches this worker; None: any (every worker hears every frame, or there
    # is one worker).
    reply_client_id: str | None

    async def run(self, sink: FeedSink) -> None:
        """Connect, subscribe and deliver to ``sink`` until cancelled; reconnect when the broker goes away."""

    async def publish(self, topic: str, payload: bytes) -> None:
        """Send ``payload`` on the MQTT ``topic``; BrokerError if not connected now."""
