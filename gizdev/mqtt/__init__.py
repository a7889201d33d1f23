"""MQTT for gizdev: a small QoS-0 client (MQTT 3.1 as GAgent speaks it, and 3.1.1) on asyncio streams, and the
packet encoding it and the broker's readiness probe share."""

from gizdev.mqtt.client import MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, MqttClient, MqttMessage
from gizdev.mqtt.packets import MQTT_31, MQTT_311, connect_packet, encode_remaining_length

__all__ = [
    "MAX_QUEUED_BYTES",
    "MAX_QUEUED_MESSAGES",
    "MQTT_31",
    "MQTT_311",
    "MqttClient",
    "MqttMessage",
    "connect_packet",
    "encode_remaining_length",
]
