"""MQTT for gizdev: a small QoS-0 client (MQTT 3.1 as GAgent speaks it, and 3.1.1) on asyncio streams."""

from gizdev.mqtt.client import MQTT_31, MQTT_311, MqttClient, MqttMessage, encode_remaining_length

__all__ = ["MQTT_31", "MQTT_311", "MqttClient", "MqttMessage", "encode_remaining_length"]
