"""Who may log in to a broker the cloud does not manage, and what each login may touch (RabbitMQ's HTTP auth backend).

RabbitMQ (``rabbitmq_auth_backend_http``) and EMQX (HTTP authentication and authorization) ask the cloud about every
login and every resource; :mod:`gizdev.cloud.http.broker_auth` serves those questions from this module's answers.

* A device logs in with username = client id = DID and its MQTT password (:func:`device_login`, the one place that
  checks it: the encrypted registration's own password, else the passcode); it may touch its
  own subscription queues and the MQTT exchange, and of the topics only what :data:`topics.DEVICE_RULES` give it.
* The cloud's workers log in as the service user with the password of their AMQP URL (every worker is configured
  the same), and may use the queues named ``gizdev.…``, the MQTT exchange, the event exchange's connection events
  and :data:`topics.SERVICE_RULES`.

RabbitMQ's MQTT plugin turns topics into routing keys (``/`` → ``.``): topic questions come as routing keys.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Literal

from gizdev.cloud.broker.files import verify_password
from gizdev.cloud.broker.topics import DEVICE_RULES, SERVICE_RULES, may_use, routing_key_to_topic
from gizdev.cloud.storage import Device, InvalidInput, NotFound, Storage

__all__ = [
    "EVENT_EXCHANGE",
    "LOOPBACK",
    "MQTT_EXCHANGE",
    "SERVICE_QUEUE_PREFIX",
    "BrokerAccess",
    "Login",
    "Network",
    "device_login",
]

MQTT_EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes (its default, mqtt.exchange)
EVENT_EXCHANGE = "amq.rabbitmq.event"  # rabbitmq_event_exchange
SERVICE_QUEUE_PREFIX = "gizdev."  # the queues the cloud's workers declare

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

Permission = Literal["configure", "write", "read"]


class Login(enum.Enum):
    ALLOWED = "allowed"
    WRONG_PASSWORD = "wrong password"  # an enabled device, another password: counted against guessing
    REFUSED = "refused"  # no such device, disabled, or not allowed this way


async def device_login(storage: Storage, did: str, password: str) -> tuple[Login, Device | None]:
    """Whether ``password`` is the MQTT password of the enabled device ``did``: the one the cloud gave it at its
    encrypted registration (kept as the broker's digest), else its passcode (cloud protocol §1.4)."""
    try:
        device = await storage.get_device(did)
    except (NotFound, InvalidInput):
        return Login.REFUSED, None
    if device.is_disabled:
        return Login.REFUSED, None
    if device.mqtt_password_hash is not None:
        right = bool(password) and verify_password(password, device.mqtt_password_hash)
    else:
        right = bool(password) and hmac.compare_digest(device.passcode.encode(), password.encode())
    return (Login.ALLOWED, device) if right else (Login.WRONG_PASSWORD, None)


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """The broker-facing side's settings: the service login, the virtual host, who may ask."""

    service_username: str
    service_password: str = dataclasses.field(repr=False)
    vhost: str = "/"
    peers: tuple[Network, ...] = LOOPBACK  # the brokers' addresses; others are refused

    def peer_allowed(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in network for network in self.peers)

    def is_service(self, username: str) -> bool:
        return hmac.compare_digest(username.encode(), self.service_username.encode())

    async def login(self, storage: Storage, username: str, password: str, client_id: str | None) -> Login:
        """user_path: the service user with its password, or a device whose MQTT client id is its DID."""
        if self.is_service(username):
            right = bool(password) and hmac.compare_digest(password.encode(), self.service_password.encode())
            return Login.ALLOWED if right else Login.REFUSED
        if client_id != username:  # devices come over MQTT, and may not take another device's client id
            return Login.REFUSED
        return (await device_login(storage, username, password))[0]

    def vhost_allowed(self, vhost: str) -> bool:
        return vhost == self.vhost

    def resource_allowed(self, *, username: str, vhost: str, resource: str, name: str, permission: str) -> bool:
        """resource_path: queues and exchanges (the topics are :meth:`topic_allowed`'s)."""
        if vhost != self.vhost or permission not in ("configure", "write", "read"):
            return False
        if resource == "exchange":
            if name == MQTT_EXCHANGE:
                return permission in ("write", "read")
            return self.is_service(username) and name == EVENT_EXCHANGE and permission == "read"
        if resource != "queue":
            return False
        if self.is_service(username):
            return name.startswith(SERVICE_QUEUE_PREFIX)
        # The MQTT plugin's subscription queues of this client id (= the DID), QoS 0 and 1.
        return name in (f"mqtt-subscription-{username}qos0", f"mqtt-subscription-{username}qos1")

    async def topic_allowed(
        self, storage: Storage, *, username: str, vhost: str, exchange: str, permission: str, routing_key: str
    ) -> bool:
        """topic_path: publishing ("write") or binding ("read") ``routing_key`` on ``exchange``."""
        if vhost != self.vhost or permission not in ("write", "read"):
            return False
        access: Literal["write", "read"] = "write" if permission == "write" else "read"
        if self.is_service(username):
            if exchange == EVENT_EXCHANGE:
                return access == "read" and routing_key.startswith("connection.")
            return exchange == MQTT_EXCHANGE and may_use(SERVICE_RULES, access, routing_key_to_topic(routing_key))
        if exchange != MQTT_EXCHANGE:
            return False
        topic = routing_key_to_topic(routing_key)
        if may_use(DEVICE_RULES, access, topic, did=username):
            return True
        if not any(rule.access == access and "{product_key}" in rule.topic for rule in DEVICE_RULES):
            return False
        try:  # only the product's notification topic needs the device's row
            device = await storage.get_device(username)
        except (NotFound, InvalidInput):
            return False
        return may_use(DEVICE_RULES, access, topic, did=username, product_key=device.product_key)
