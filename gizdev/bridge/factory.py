"""Assembly of a :class:`~gizdev.bridge.gateway.Bridge` from a :class:`~gizdev.bridge.config.BridgeConfig`.

The one place that picks concrete parts: the MCU's session and connection, the identity store in the state dir,
the LAN uplink (unless ``lan.enabled = false``), the cloud uplink (when ``cloud`` is set) and the MQTT/JSON +
Home Assistant uplink (when ``mqtt.url`` is set), in that order, then
any ``extra_uplinks`` the caller brings. The CLI and the demo build their bridge here; tests that need other
parts construct :class:`Bridge` themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gizdev.bridge.config import BridgeConfig
from gizdev.bridge.gateway import Bridge
from gizdev.bridge.identity import IdentityStore
from gizdev.bridge.interface import Uplink
from gizdev.bridge.lan import LanSettings
from gizdev.bridge.lan_device import BindingWindow
from gizdev.bridge.lan_uplink import LanUplink
from gizdev.bridge.mqtt_uplink import MqttJsonSettings, MqttJsonUplink
from gizdev.bridge.uplink import CloudUplink, UplinkSettings
from gizdev.codec.p0 import Product, load_product
from gizdev.link import ModuleSession
from gizdev.link.connection import ModuleConnection, Opener

__all__ = ["build_bridge", "lan_settings", "mqtt_settings", "uplink_settings"]


def lan_settings(config: BridgeConfig) -> LanSettings:
    """The LAN server's settings from the ``[lan]`` table."""
    lan = config.lan
    return LanSettings(
        hosts=lan.hosts,
        udp_port=lan.udp_port,
        tcp_port=lan.tcp_port,
        broadcast_address=lan.broadcast_address,
        broadcast_port=lan.broadcast_port,
        broadcast_rounds=lan.broadcast_rounds,
    )


def uplink_settings(config: BridgeConfig) -> UplinkSettings:
    """The cloud uplink's settings from ``cloud`` and ``encrypted``."""
    return UplinkSettings(cloud=config.cloud.rstrip("/"), encrypted=config.encrypted)


def mqtt_settings(config: BridgeConfig) -> MqttJsonSettings | None:
    """The home-automation uplink's settings from the ``[mqtt]`` table; None while it has no url."""
    mqtt = config.mqtt
    if not mqtt.url:
        return None
    return MqttJsonSettings(
        url=mqtt.url,
        prefix=mqtt.prefix,
        device=mqtt.device,
        discovery=mqtt.discovery,
        discovery_prefix=mqtt.discovery_prefix,
        qos=mqtt.qos,
        retain=mqtt.retain,
        client_id=mqtt.client_id,
        keepalive_s=mqtt.keepalive_s,
        ca_file=mqtt.ca_file,
    )


def build_bridge(
    config: BridgeConfig,
    *,
    product: Product | None = None,
    opener: Opener | None = None,
    cloud_settings: UplinkSettings | None = None,
    lan: LanSettings | None = None,
    port_options: dict[str, Any] | None = None,
    extra_uplinks: Sequence[Uplink] = (),
) -> Bridge:
    """The bridge ``config`` describes; ``cloud_settings``/``lan`` replace the settings made from it (tests).

    Reads the identity from the state dir (ConfigError if it is corrupt); writes nothing before ``start``.
    """
    product = product or load_product(config.product)
    session = ModuleSession(product, heartbeat_interval=config.heartbeat_s, name="mcu")
    options = {"baudrate": config.baudrate, **(port_options or {})}
    connection = ModuleConnection(session, config.port, opener=opener, **options)
    identities = IdentityStore.open(config.state_dir, mac=config.mac)
    binding = BindingWindow(config.lan.binding_window_s)
    uplinks: list[Uplink] = []
    if config.lan.enabled:
        uplinks.append(LanUplink(lan or lan_settings(config), identities, binding))
    if config.cloud:
        settings = cloud_settings or uplink_settings(config)
        uplinks.append(CloudUplink(settings, identities, product_secret=config.product_secret))
    home_automation = mqtt_settings(config)
    if home_automation is not None:
        uplinks.append(MqttJsonUplink(home_automation, identities, product))
    uplinks.extend(extra_uplinks)
    return Bridge(connection, uplinks, identities, binding=binding)
