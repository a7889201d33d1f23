"""Home Assistant discovery from a schema, checked by Home Assistant itself.

The platform rules are stated here by hand (from the issue's table); the configs are then handed to Home
Assistant's own MQTT platform schemas and template engine (``tests/bridge/ha_check.py`` under ``.venv-ha``, which
``tools/test`` installs): every config must validate, every key we send must be one HA knows (HA silently ignores
unknown keys), every value template must render the state's value, and what HA would publish for a command must be
JSON that our codec turns into a write of that value.
"""

from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gizdev.bridge.homeassistant import HaDevice, StateTopics, discovery_configs, retire_configs, topic_id
from gizdev.codec.p0 import Product, load_product
from gizdev.codec.values import Value
from gizdev.schema import DataType, parse_schema
from tests.codec.schemas import app_values, schema_documents
from tests.conftest import REPO_ROOT, product_path

HA_PYTHON = REPO_ROOT / ".venv-ha" / "bin" / "python"
HA_CHECK = Path(__file__).with_name("ha_check.py")
DEVICE = HaDevice("gizdev_aabbccddeeff", "GoKit", "GoKit", sw_version="04020006", hw_version="00000001")
TOPICS = StateTopics("gizdev", "gokit")
# Keys that HA versions newer than the one .venv-ha can run know (2024.3.3 is the newest for Python 3.11): the check
# cannot validate them, so they are the only keys allowed outside what its schema knows.
NEWER_HA_KEYS = {("sensor", "options")}  # MQTT sensor options: HA 2024.9 (home-assistant/core PR #123248)
GOKIT_STATE: dict[str, Any] = {
    "LED_OnOff": True,
    "LED_Color": "Purple",
    "LED_R": 10,
    "LED_G": 20,
    "LED_B": 30,
    "Motor_Speed": -2,
    "Infrared": True,
    "Temperature": 25,
    "Humidity": 60,
    "Alert_1": False,
    "Alert_2": True,
    "Fault_LED": False,
    "Fault_Motor": True,
    "Fault_TemHum": False,
    "Fault_IR": False,
}


def gokit() -> Product:
    return load_product(product_path("gokit"))


def by_name(configs: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {topic.split("/")[3]: (topic, config) for topic, config in configs}


def test_gokit_has_one_entity_per_datapoint_on_the_right_platform() -> None:
    configs = by_name(discovery_configs(gokit().schema, DEVICE, TOPICS))
    platforms = {name: topic.split("/")[1] for name, (topic, _) in configs.items()}
    assert platforms == {
        "LED_OnOff": "switch",
        "LED_Color": "select",
        "LED_R": "number",
        "LED_G": "number",
        "LED_B": "number",
        "Motor_Speed": "number",
        "Infrared": "binary_sensor",
        "Temperature": "sensor",
        "Humidity": "sensor",
        "Alert_1": "binary_sensor",
        "Alert_2": "binary_sensor",
        "Fault_LED": "binary_sensor",
        "Fault_Motor": "binary_sensor",
        "Fault_TemHum": "binary_sensor",
        "Fault_IR": "binary_sensor",
    }
    for name, (topic, config) in configs.items():
        assert topic == f"homeassistant/{platforms[name]}/gizdev_aabbccddeeff/{name}/config"
        assert config["availability_topic"] == "gizdev/gokit/availability"
        assert config["state_topic"] == "gizdev/gokit/state"
        assert config["unique_id"] == f"gizdev_aabbccddeeff_{name}"
        assert config["device"] == {
            "identifiers": ["gizdev_aabbccddeeff"],
            "name": "GoKit",
            "model": "GoKit",
            "manufacturer": "Gizwits protocol device (gizdev bridge)",
            "sw_version": "04020006",
            "hw_version": "00000001",
        }
        writable = platforms[name] in ("switch", "select", "number")
        assert ("command_topic" in config) == writable
        if writable:
            assert config["command_topic"] == "gizdev/gokit/set"
        problem = name.startswith(("Alert", "Fault"))
        assert (config.get("device_class") == "problem") == problem


def test_numbers_get_app_unit_ranges_and_sensors_units_only_when_given() -> None:
    configs = by_name(discovery_configs(gokit().schema, DEVICE, StateTopics("gizdev", "gokit", {"Temperature": "°C"})))
    motor = configs["Motor_Speed"][1]
    assert (motor["min"], motor["max"], motor["step"]) == (-5, 5, 1)  # raw 0..10, addition -5
    assert (configs["LED_R"][1]["min"], configs["LED_R"][1]["max"]) == (0, 254)
    temperature = configs["Temperature"][1]
    assert temperature["unit_of_measurement"] == "°C" and temperature["state_class"] == "measurement"
    humidity = configs["Humidity"][1]
    assert "unit_of_measurement" not in humidity and "state_class" not in humidity
    assert configs["LED_Color"][1]["options"] == ["Customize", "Yellow", "Purple", "Pink"]


def test_retiring_empties_exactly_the_published_config_topics() -> None:
    schema = gokit().schema
    assert retire_configs(schema, DEVICE) == [topic for topic, _ in discovery_configs(schema, DEVICE, TOPICS)]
    other_prefix = retire_configs(schema, DEVICE, "ha")
    assert all(topic.startswith("ha/") for topic in other_prefix)


def test_topic_ids_keep_to_what_ha_accepts() -> None:
    assert topic_id("GoKit 2/ä+#") == "GoKit_2____"
    assert topic_id("") == "_"


# -- checked by Home Assistant --------------------------------------------------------------------------------------


def ha_check(request: dict[str, Any]) -> dict[str, Any]:
    if not HA_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"Home Assistant's venv is required under CI: {HA_PYTHON} (tools/test installs it)")
        pytest.skip(f"Home Assistant not installed at {HA_PYTHON} (tools/test installs it)")
    result = subprocess.run(
        [str(HA_PYTHON), str(HA_CHECK)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def shown(value: Value) -> str:
    """How HA shows a state value that value_template picked out of our JSON state."""
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def check_with_ha(products: list[Product], states: list[dict[str, Value]]) -> None:
    """Every product's configs validate in HA, render its state, and turn HA's commands into writes of the value."""
    configs: list[tuple[str, dict[str, Any]]] = []
    commands: dict[str, Any] = {}
    expected: dict[str, tuple[Product, str, Value]] = {}
    state_json: dict[str, Any] = {}
    for index, (product, state) in enumerate(zip(products, states, strict=True)):
        # One HA state topic for all: names are made unique per product so one state document serves them all.
        device = HaDevice(f"dev{index}", f"Device {index}", product.name)
        for topic, config in discovery_configs(product.schema, device, TOPICS):
            name = topic.split("/")[3]
            value = state[name]
            key = f"p{index}_{name}"
            template = config["value_template"].replace(json.dumps(name), json.dumps(key))
            state_json[key] = product.attrs_to_json({name: value})[name]
            configs.append((topic, {**config, "value_template": template}))
            expected[topic] = (product, name, value)
            if "command_topic" in config:  # a writable entity
                point = product.schema[name]
                if point.data_type is DataType.BOOL:
                    commands[topic] = "ON" if value else "OFF"
                elif point.data_type is DataType.BINARY:
                    commands[topic] = shown(value)
                else:
                    commands[topic] = value
    results = ha_check({"configs": configs, "state": state_json, "commands": commands})
    assert set(results) == {topic for topic, _ in configs}
    for topic, config in configs:
        result = results[topic]
        product, name, value = expected[topic]
        assert result["error"] is None, (topic, config, result["error"])
        platform = topic.split("/")[1]
        unknown = {key for key in config if key not in result["validated_keys"]}
        assert {(platform, key) for key in unknown} <= NEWER_HA_KEYS, f"keys HA would ignore in {topic}: {unknown}"
        assert result["value"] == shown(value), (topic, config["value_template"], state_json)
        if topic in commands:
            command = json.loads(result["command"])
            assert set(command) == {name}, result["command"]
            write = product.encode("write", product.attrs_from_json(command))
            written = product.decode(write).attrs[name]
            if isinstance(value, float):
                assert Decimal(str(written)) == Decimal(str(value))
            else:
                assert written == value, (topic, result["command"])


def test_gokit_configs_are_valid_home_assistant_discovery() -> None:
    product = gokit()
    check_with_ha([product], [dict(GOKIT_STATE)])


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), documents=st.lists(schema_documents(), min_size=15, max_size=15))
def test_random_products_are_valid_home_assistant_discovery(data: st.DataObject, documents: list[Any]) -> None:
    products = [Product(parse_schema(document)) for document in documents]
    states = [data.draw(app_values(product)) for product in products]
    check_with_ha(products, states)
