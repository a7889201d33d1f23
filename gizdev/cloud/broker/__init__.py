"""The cloud's MQTT broker: a managed Mosquitto child process, or an external broker given by URL.

Embedded default: :class:`ManagedMosquitto` runs ``mosquitto`` on loopback with a generated config, one login per
device (client id = username = DID, password = passcode, or the password the cloud gave a device of the encrypted
API; MQTT 3.1 and 3.1.1) and topic ACLs so that a device
uses only its own topics (``files``), restarts it if it dies and stops it with the server (``mosquitto``).
The cloud itself logs in as a service user whose random password lives in the data dir
(``BrokerSettings``, used by the device bus with :class:`gizdev.mqtt.MqttClient`).

External broker: ``BrokerSettings.from_url("mqtt://user:pass@host:port")``; no process is managed and the device
accounts and ACLs are then the broker operator's job (:func:`files.render_acl` shows the rules we use).
"""

from __future__ import annotations

from gizdev.cloud.broker.files import SERVICE_USERNAME, hash_password, render_acl, verify_password
from gizdev.cloud.broker.mosquitto import DeviceAccount, ManagedMosquitto, find_mosquitto
from gizdev.cloud.broker.settings import BrokerSettings

__all__ = [
    "SERVICE_USERNAME",
    "BrokerSettings",
    "DeviceAccount",
    "ManagedMosquitto",
    "find_mosquitto",
    "hash_password",
    "render_acl",
    "verify_password",
]
