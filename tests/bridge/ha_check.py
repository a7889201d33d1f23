"""Run by Home Assistant's own Python (the test venv ``.venv-ha``), not by gizdev's: validates MQTT discovery
configs with HA's platform schemas and renders their templates with HA's template engine.

stdin: ``{"configs": [[topic, config], ...], "state": {...}, "commands": {topic: value, ...}}``
stdout: ``{topic: {"platform", "error" | null, "value" (value_template on the state), "command" (what the entity
publishes for the given value: a switch its payload_on/off, others their command_template) | null,
"validated_keys" (the config's keys that HA's schema knows; an unknown key is silently ignored by HA)}}``.
Only what HA itself says is reported; the test decides what is right.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import tempfile
from typing import Any


async def check(request: dict[str, Any]) -> dict[str, Any]:
    from homeassistant.core import HomeAssistant  # type: ignore[import-not-found]  # only in .venv-ha
    from homeassistant.helpers.template import Template  # type: ignore[import-not-found]

    hass = HomeAssistant(tempfile.mkdtemp())
    state = json.dumps(request["state"])
    results: dict[str, Any] = {}
    try:
        for topic, config in request["configs"]:
            platform = topic.split("/")[1]
            module = importlib.import_module(f"homeassistant.components.mqtt.{platform}")
            result: dict[str, Any] = {"platform": platform, "error": None, "value": None, "command": None}
            try:
                validated = module.DISCOVERY_SCHEMA(dict(config))
            except Exception as exc:  # voluptuous.Invalid and friends: the finding itself
                result["error"] = f"{type(exc).__name__}: {exc}"
                results[topic] = result
                continue
            if "value_template" in config:
                result["value"] = Template(config["value_template"], hass).async_render_with_possible_json_value(state)
            if topic in request["commands"]:
                value = request["commands"][topic]
                if platform == "switch":  # MqttSwitch publishes payload_on / payload_off unchanged
                    result["command"] = validated["payload_on" if value == "ON" else "payload_off"]
                elif "command_template" in validated:
                    template = Template(config["command_template"], hass)
                    result["command"] = template.async_render({"value": value}, parse_result=False)
                else:
                    result["command"] = str(value)
            result["validated_keys"] = sorted(key for key in validated if key in config)
            results[topic] = result
    finally:
        await hass.async_stop(force=True)
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(check(json.load(sys.stdin)))))  # noqa: TID251 - HA's process, not a test
