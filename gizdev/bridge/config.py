"""The bridge's settings: a TOML file (``--config``) and command-line options with the same names.

Example ``/etc/gizdev/bridge.toml``::

    port = "/dev/serial0"              # the MCU's UART (or /dev/gizdev-mcu, socket://host:port)
    baudrate = 9600
    product = "/etc/gizdev/product.json"
    cloud = "http://192.168.1.10:8080" # a gizdev cloud (omit: LAN only)
    state_dir = "/var/lib/gizdev"      # identity.json lives here
    encrypted = true                   # the encrypted device API (default): an MQTT password of its own;
                                       # false: GAgent's plain API (MQTT password = passcode)

    [lan]
    hosts = ["0.0.0.0"]                # listen addresses (default: loopback only)
    broadcast_address = "192.168.1.255"

    [mqtt]                             # home automation: JSON state/commands + Home Assistant discovery
    url = "mqtt://user:secret@192.168.1.5:1883"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gizdev.errors import ConfigError

__all__ = ["BridgeConfig", "LanConfig", "MqttConfig", "load_config"]

DEFAULT_STATE_DIR = Path("/var/lib/gizdev")


@dataclass(frozen=True, slots=True)
class LanConfig:
    hosts: tuple[str, ...] = ("127.0.0.1",)  # loopback unless configured: apps on the LAN need "0.0.0.0"
    udp_port: int = 12414
    tcp_port: int = 12416
    broadcast_address: str = "255.255.255.255"
    broadcast_port: int = 2415
    broadcast_rounds: int = 30
    binding_window_s: float = 0.0  # 0: apps may fetch the passcode at any time (GAgent's default at boot)
    enabled: bool = True

    def __post_init__(self) -> None:
        # Caught here, with the setting's name, rather than as a bare OSError from bind() or sendto() later.
        for name in ("udp_port", "tcp_port", "broadcast_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"lan.{name} must be 0-65535, not {getattr(self, name)}")
        if self.broadcast_rounds < 0 or self.binding_window_s < 0:
            raise ConfigError("lan.broadcast_rounds and lan.binding_window_s must not be negative")
        if self.enabled and not self.hosts:
            raise ConfigError("lan.hosts is empty (set lan.enabled = false for no LAN server)")


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The home-automation uplink (MQTT/JSON + Home Assistant discovery); off while ``url`` is empty."""

    url: str = ""  # mqtt://[user:pass@]host[:port] or mqtts://
    prefix: str = "gizdev"
    device: str = ""  # default: <product>_<last 6 MAC digits>
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    qos: int = 0
    retain: bool = True
    client_id: str = ""
    keepalive_s: int = 60
    ca_file: str = ""

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise ConfigError(f"mqtt.qos is 0 or 1, not {self.qos}")
        if not 0 <= self.keepalive_s <= 65535:
            raise ConfigError(f"mqtt.keepalive_s must be 0-65535, not {self.keepalive_s}")


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    port: str
    product: Path
    cloud: str = ""  # http://host:port of the cloud's API; empty: LAN only
    baudrate: int = 9600
    state_dir: Path = DEFAULT_STATE_DIR
    mac: str = ""  # the identity's MAC; default: a random, locally administered one, kept in the state dir
    encrypted: bool = True  # the encrypted device API (gizdev.bridge.uplink says why)
    product_secret: str = ""  # for the encrypted API; default: what the MCU reports in its device info
    heartbeat_s: float = 55.0
    metrics: str = ""  # HOST:PORT of a Prometheus /metrics endpoint (loopback); empty: none
    lan: LanConfig = field(default_factory=LanConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def __post_init__(self) -> None:
        if not self.port:
            raise ConfigError("port is required (e.g. /dev/serial0)")
        if self.cloud:
            parts = urlsplit(self.cloud)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"cloud must be an http:// URL, not {self.cloud!r}")
        if self.mac and (len(self.mac) != 12 or any(c not in "0123456789abcdefABCDEF" for c in self.mac)):
            raise ConfigError(f"mac must be 12 hex digits without separators, not {self.mac!r}")
        if self.baudrate <= 0 or self.heartbeat_s <= 0:
            raise ConfigError("baudrate and heartbeat_s must be positive")


_TABLES: dict[str, Any] = {"lan": LanConfig, "mqtt": MqttConfig}  # [table] → its dataclass; options: table_key
_TOP_KEYS = {f.name for f in fields(BridgeConfig)} - set(_TABLES)


def _typed(section: str, key: str, value: Any, expected: Any) -> Any:
    if expected in (Path, "Path"):
        if not isinstance(value, str):
            raise ConfigError(f"{section}{key} must be a string path")
        return Path(value)
    if key == "hosts":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{section}{key} must be a list of addresses")
        return tuple(value)
    kinds: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "str": str}
    kind = kinds.get(str(expected))
    if kind is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise ConfigError(f"{section}{key} must be a {expected}, not {type(value).__name__}")
    return float(value) if expected == "float" else value


def load_config(path: Path | None, overrides: dict[str, Any]) -> BridgeConfig:
    """The file's settings (if any) with ``overrides`` (command-line options that were given) on top."""
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_bytes().decode("utf-8"))  # TOML is UTF-8 whatever the locale
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    tables: dict[str, dict[str, Any]] = {}
    unknown = set(document) - _TOP_KEYS - set(_TABLES)
    for name, kind in _TABLES.items():
        table = document.pop(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        known = {f.name: f.type for f in fields(kind)}
        unknown |= {f"{name}.{key}" for key in set(table) - set(known)}
        tables[name] = {key: _typed(f"{name}.", key, value, known[key]) for key, value in table.items() if key in known}
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(sorted(unknown))} (see gizdev bridge --help)")
    types = {f.name: f.type for f in fields(BridgeConfig)}
    top = {key: _typed("", key, value, types[key]) for key, value in document.items()}
    for key, value in overrides.items():
        if value is None:
            continue
        table_name, _, rest = key.partition("_")
        if table_name in _TABLES and rest:
            tables[table_name][rest] = value
        else:
            top[key] = value
    for key in ("port", "product"):
        if key not in top:
            raise ConfigError(f"{key} is required (--{key} or in the config file)")
    base = BridgeConfig(port=top.pop("port"), product=top.pop("product"))
    return replace(base, **top, **{name: kind(**tables[name]) for name, kind in _TABLES.items()})
