"""Who may use which MQTT topic: the device and service rules, one source for every broker (cloud protocol §1.5).

The managed Mosquitto gets them as ACL lines (:func:`gizdev.cloud.broker.files.render_acl`); RabbitMQ and EMQX ask
the cloud over HTTP (:mod:`gizdev.cloud.http.broker_auth`), which answers with :func:`may_use`. A rule's topic is
an MQTT topic filter in which ``{did}`` and ``{product_key}`` stand for the device's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEVICE_RULES",
    "SERVICE_RULES",
    "Access",
    "TopicRule",
    "covers",
    "may_use",
    "routing_key_to_topic",
    "topic_to_routing_key",
]

Access = Literal["read", "write"]


@dataclass(frozen=True, slots=True)
class TopicRule:
    access: Access  # "read" = subscribe (and receive), "write" = publish
    topic: str  # an MQTT topic filter; {did} and {product_key} are the device's own

    def filter_for(self, did: str | None = None, product_key: str | None = None) -> str | None:
        """The filter for one device; None if it needs a value not given (or one that is not a single level)."""
        topic = self.topic
        for placeholder, value in (("{did}", did), ("{product_key}", product_key)):
            if placeholder in topic:
                if not value or any(ch in value for ch in "/+#\x00"):
                    return None
                topic = topic.replace(placeholder, value)
        return topic


# A device publishes only its own frames and service requests and reads only what is addressed to it (§1.5).
DEVICE_RULES: tuple[TopicRule, ...] = (
    TopicRule("write", "dev2app/{did}"),
    TopicRule("write", "dev2app/{did}/#"),
    TopicRule("read", "app2dev/{did}/#"),
    TopicRule("read", "app2module/{did}/#"),  # subscribed by LUAT firmware (cloud protocol §1.5)
    TopicRule("read", "ser2cli_res/{did}"),
    TopicRule("write", "cli2ser_req"),  # "how many apps are online?"; shared by every device
    TopicRule("read", "ser2cli_noti/{product_key}"),  # its product's notifications
)

# The cloud consumes device frames and service requests and publishes commands, service replies and product
# notifications. $SYS is for monitoring (and EMQX's client events).
SERVICE_RULES: tuple[TopicRule, ...] = (
    TopicRule("read", "dev2app/#"),
    TopicRule("read", "cli2ser_req"),
    TopicRule("read", "$SYS/#"),
    TopicRule("write", "app2dev/#"),
    TopicRule("write", "app2module/#"),
    TopicRule("write", "ser2cli_res/#"),
    TopicRule("write", "ser2cli_noti/#"),
)


def covers(rule: str, wanted: str) -> bool:
    """Whether the topic filter ``rule`` matches every topic the topic or filter ``wanted`` can match.

    ``+`` in a rule takes any one level (``+`` included), ``#`` the rest; a wildcard in ``wanted`` is covered only
    by a wildcard at least as wide: ``app2dev/+/#`` is not covered by ``app2dev/D1/#``.
    """
    rule_levels = rule.split("/")
    wanted_levels = wanted.split("/")
    for index, level in enumerate(rule_levels):
        if level == "#":
            return True  # the levels before matched; "#" takes the rest ("a/#" also matches "a")
        if index >= len(wanted_levels):
            return False
        asked = wanted_levels[index]
        if asked == "#":
            return False
        if level == "+":
            continue
        if asked != level:
            return False
    return len(rule_levels) == len(wanted_levels)


def may_use(
    rules: tuple[TopicRule, ...], access: Access, topic: str, *, did: str | None = None, product_key: str | None = None
) -> bool:
    """Whether ``rules`` let a client read (subscribe to) or write (publish on) ``topic`` (a topic or a filter);
    a rule that needs a value not given (``product_key=None``) allows nothing."""
    if not topic or "\x00" in topic:
        return False
    for rule in rules:
        if rule.access == access:
            pattern = rule.filter_for(did, product_key)
            if pattern is not None and covers(pattern, topic):
                return True
    return False


def topic_to_routing_key(topic: str) -> str:
    """The AMQP routing key RabbitMQ's MQTT plugin uses for an MQTT topic (``/`` → ``.``, ``+`` → ``*``)."""
    return topic.replace("/", ".").replace("+", "*")


def routing_key_to_topic(routing_key: str) -> str:
    """The MQTT topic (or filter) of a RabbitMQ routing key (``.`` → ``/``, ``*`` → ``+``)."""
    return routing_key.replace(".", "/").replace("*", "+")
