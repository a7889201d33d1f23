"""Home Assistant MQTT discovery for a product, generated from its datapoint schema alone.

Pure: schema + device description + topics in, ``(topic, config)`` pairs out; publishing them (retained, and again
when HA's status topic says ``online``) is the MQTT/JSON uplink's job. One HA device per bridge; one entity per
datapoint, every entity with the bridge's availability topic, reading the JSON state topic and writing JSON attrs to
the set topic (the same JSON the uplink takes from anyone):

============================  =================  ===============================================================
datapoint                     HA platform        notes
============================  =================  ===============================================================
bool, writable                ``switch``         payload_on/off are the JSON commands
bool, read-only               ``binary_sensor``
bool, alert or fault          ``binary_sensor``  ``device_class: problem``
enum, writable                ``select``         ``options`` = the labels
enum, read-only (or alert)    ``sensor``         ``device_class: enum``, ``options``
uint, writable                ``number``         ``min``/``max``/``step`` in app units (range × ratio + addition)
uint, read-only               ``sensor``         ``unit_of_measurement`` + ``state_class: measurement`` if given
binary, writable              ``text``           ``pattern`` of exactly 2 × length hex digits, min = max = that
binary, read-only             ``sensor``         the hex string
============================  =================  ===============================================================

A writable point that HA's entity cannot express (a number whose range is a single value or whose ratio is below
HA's smallest step, 0.001; a binary longer than a text entity's 255 characters) is shown as a read-only sensor.

Discovery topics are ``<discovery_prefix>/<platform>/<node_id>/<object_id>/config`` (node = the device's stable
identifier, object = the datapoint name), so a retired device's configs can be found and emptied again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gizdev.schema.model import AttrType, Datapoint, DataType, ProductSchema

__all__ = [
    "DEFAULT_DISCOVERY_PREFIX",
    "HaDevice",
    "StateTopics",
    "discovery_configs",
    "platform_of",
    "retire_configs",
]

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
MANUFACTURER = "Gizwits protocol device (gizdev bridge)"
_TOPIC_ID = re.compile(r"[^a-zA-Z0-9_-]")  # HA: node_id and object_id are [a-zA-Z0-9_-]+


def topic_id(text: str) -> str:
    """``text`` as a discovery node or object id (HA accepts ``[a-zA-Z0-9_-]``; anything else becomes ``_``)."""
    return _TOPIC_ID.sub("_", text) or "_"


@dataclass(frozen=True, slots=True)
class HaDevice:
    """The HA device: ``identifier`` must stay the same across restarts (e.g. from the module's MAC)."""

    identifier: str
    name: str
    model: str
    sw_version: str | None = None
    hw_version: str | None = None
    manufacturer: str = MANUFACTURER

    def to_json(self) -> dict[str, Any]:
        device: dict[str, Any] = {
            "identifiers": [self.identifier],
            "name": self.name,
            "model": self.model,
            "manufacturer": self.manufacturer,
        }
        if self.sw_version:
            device["sw_version"] = self.sw_version
        if self.hw_version:
            device["hw_version"] = self.hw_version
        return device


@dataclass(frozen=True, slots=True)
class StateTopics:
    """The uplink's topics for one device: ``{prefix}/{device}/state``, ``/set``, ``/availability``."""

    prefix: str
    device: str
    units: dict[str, str] = field(default_factory=dict)  # datapoint name → unit_of_measurement (the schema has none)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def set(self) -> str:
        return f"{self.base}/set"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"


HA_TEXT_MAX = 255  # HA's text entity: at most 255 characters
HA_NUMBER_MIN_STEP = Decimal("0.001")  # HA's number entity: step >= 0.001


def _writable_in_ha(point: Datapoint) -> bool:
    """Writable, and HA's entity for it can express it (else it is shown read-only, as a sensor)."""
    if point.type is not AttrType.WRITABLE:
        return False
    if point.data_type is DataType.BINARY:
        return 2 * point.byte_len <= HA_TEXT_MAX
    spec = point.uint_spec
    if spec is not None:  # a number: HA needs max > min and a step it accepts
        return spec.max > spec.min and spec.ratio >= HA_NUMBER_MIN_STEP
    return True


def platform_of(point: Datapoint) -> str:
    """The HA platform a datapoint becomes (table in the module docstring)."""
    writable = _writable_in_ha(point)
    if point.data_type is DataType.BOOL:
        return "switch" if writable else "binary_sensor"
    if point.data_type is DataType.ENUM:
        return "select" if writable else "sensor"
    if point.data_type is DataType.BINARY:
        return "text" if writable else "sensor"
    return "number" if writable else "sensor"


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _entity(point: Datapoint, topics: StateTopics, device: HaDevice) -> dict[str, Any]:
    name = json.dumps(point.name)  # a JSON string literal is also a valid Jinja string literal
    read = f"value_json[{name}]"
    set_value = f"{{{{ {{{name}: value}} | tojson }}}}"  # HA's value (option, text, number) as the attr's value
    config: dict[str, Any] = {
        "name": point.display_name or point.name,
        "unique_id": f"{topic_id(device.identifier)}_{topic_id(point.name)}",
        "object_id": f"{topic_id(device.name)}_{topic_id(point.name)}".lower(),
        "state_topic": topics.state,
        "availability_topic": topics.availability,
        "device": device.to_json(),
    }
    platform = platform_of(point)
    if point.data_type is DataType.BOOL:
        config["value_template"] = f"{{{{ 'ON' if {read} else 'OFF' }}}}"
        if platform == "switch":
            # HA's switch has no command_template: it publishes payload_on/off as they are, so those are the JSON
            # commands themselves; the state is matched against state_on/off.
            config["command_topic"] = topics.set
            config["payload_on"] = json.dumps({point.name: True})
            config["payload_off"] = json.dumps({point.name: False})
            config["state_on"], config["state_off"] = "ON", "OFF"
        elif point.type in (AttrType.ALERT, AttrType.FAULT):
            config["device_class"] = "problem"
        return config
    config["value_template"] = f"{{{{ {read} }}}}"
    if point.data_type is DataType.ENUM:
        config["options"] = list(point.enum)
        if platform == "sensor":
            config["device_class"] = "enum"
        else:
            config["command_topic"] = topics.set
            config["command_template"] = set_value
        return config
    if point.data_type is DataType.BINARY:
        if platform == "text":
            digits = 2 * point.byte_len
            config["command_topic"] = topics.set
            config["command_template"] = set_value
            config["pattern"] = f"^[0-9A-Fa-f]{{{digits}}}$"
            config["min"] = config["max"] = digits
            config["mode"] = "text"
        return config
    spec = point.uint_spec
    assert spec is not None  # the loader gives every number a uint_spec
    unit = topics.units.get(point.name)
    if unit:
        config["unit_of_measurement"] = unit
    if platform == "number":
        config["command_topic"] = topics.set
        config["command_template"] = set_value  # HA hands over an int when the number is whole, else a float
        low, high = spec.to_app(spec.min), spec.to_app(spec.max)
        config["min"], config["max"], config["step"] = _number(low), _number(high), _number(spec.ratio)
    elif unit:
        config["state_class"] = "measurement"
    return config


def _config_topic(discovery_prefix: str, platform: str, device: HaDevice, point: Datapoint) -> str:
    return f"{discovery_prefix}/{platform}/{topic_id(device.identifier)}/{topic_id(point.name)}/config"


def discovery_configs(
    schema: ProductSchema,
    device: HaDevice,
    topics: StateTopics,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
) -> list[tuple[str, dict[str, Any]]]:
    """One ``(config topic, config)`` per datapoint, in schema order."""
    return [
        (_config_topic(discovery_prefix, platform_of(point), device, point), _entity(point, topics, device))
        for point in schema.datapoints
    ]


def retire_configs(
    schema: ProductSchema, device: HaDevice, discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
) -> list[str]:
    """The config topics to empty (retained, zero-length payload) so that HA removes the device's entities."""
    return [_config_topic(discovery_prefix, platform_of(point), device, point) for point in schema.datapoints]
