"""``gizdev bridge``: a software GAgent — the MCU on a serial port, the cloud and LAN apps on the other side."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gizdev.bridge.config import DEFAULT_STATE_DIR, BridgeConfig, load_config
from gizdev.cli import options

if TYPE_CHECKING:  # imported for real only when the command runs (start-up time)
    from gizdev.bridge.gateway import Bridge
    from gizdev.metrics import MetricsServer

__all__ = ["register"]

DESCRIPTION = f"""\
Run a gateway between an MCU that speaks the Gizwits serial protocol and a Gizwits-compatible cloud (e.g.
`gizdev cloud serve`) and LAN apps, doing what the vendor's WiFi-module firmware (GAgent) does: handshake with the
MCU, register the device with the cloud, keep its identity in --state-dir, connect over MQTT, relay reports and
controls, answer the MCU's time requests, and serve the LAN protocol (UDP 12414 discovery, TCP 12416 control).
With --mqtt it also (or only: no --cloud is needed) publishes the datapoints as JSON to any MQTT broker, with Home
Assistant discovery: state on PREFIX/DEVICE/state (retained), availability on PREFIX/DEVICE/availability (the
connection's will), commands as JSON attrs on PREFIX/DEVICE/set, PREFIX/DEVICE/get to read the MCU, refusals on
PREFIX/DEVICE/error; --retire removes the device from Home Assistant and exits.

Settings come from --config FILE (TOML) and/or the options below; an option given on the command line wins.
TOML keys (option): port (--port), baudrate (--baudrate), product (--product), cloud (--cloud), state_dir
(--state-dir), mac (--mac), encrypted (--[no-]encrypted), product_secret (--product-secret), heartbeat_s (MCU
heartbeat interval, default 55; file only), metrics (--metrics HOST:PORT: Prometheus text at /metrics, loopback
only), and a [lan] table: hosts (--lan, repeatable), udp_port
(--lan-udp-port), tcp_port (--lan-tcp-port), broadcast_address (--broadcast), enabled (--no-lan), and, in the
file only, broadcast_port (2415), broadcast_rounds (30 start-up broadcasts) and binding_window_s (how long apps may
fetch the passcode after start or the MCU's binding request; 0 = always); and a [mqtt] table: url (--mqtt),
prefix (--mqtt-prefix, default gizdev), device (--mqtt-device, default <product>_<last 6 MAC digits>), discovery
(--no-ha-discovery), discovery_prefix (--ha-prefix, default homeassistant), qos (--mqtt-qos, 0 or 1), retain
(state retained, default true; file only), client_id (--mqtt-client-id), keepalive_s (60; file only), ca_file
(--mqtt-ca-file, for mqtts://). Example:

    port = "/dev/serial0"
    product = "/etc/gizdev/product.json"
    cloud = "http://192.168.1.10:8080"
    state_dir = "{DEFAULT_STATE_DIR}"
    [lan]
    hosts = ["0.0.0.0"]
    broadcast_address = "192.168.1.255"
"""


def register(commands: Any) -> None:
    bridge = commands.add_parser(
        "bridge",
        help="a software GAgent: MCU on a UART <-> cloud (MQTT) and LAN apps",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bridge.add_argument("--config", type=Path, help="TOML file with the settings below")
    options.add_port_option(
        bridge, required=False, help="the MCU's serial port: /dev/ttyUSB0, /dev/serial0, socket://host:port, pty path"
    )
    options.add_baud_option(
        bridge,
        aliases=("--baudrate",),
        dest="baudrate",
        default=None,
        help="serial speed (default 9600, the protocol's)",
    )
    options.add_product_option(bridge, as_path=True, help="the product's datapoint schema (Gizwits JSON export)")
    bridge.add_argument("--cloud", help="the cloud's HTTP API, e.g. http://127.0.0.1:8080 (default: LAN only)")
    bridge.add_argument("--state-dir", type=Path, help=f"where identity.json is kept (default {DEFAULT_STATE_DIR})")
    bridge.add_argument("--mac", help="the MAC to register with (12 hex digits; default: a random one, kept)")
    bridge.add_argument(
        "--encrypted",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="register through the encrypted device API, which gives the device an MQTT password of its own "
        "(the default; --no-encrypted: GAgent's plain API, MQTT password = the passcode bound users can read)",
    )
    bridge.add_argument("--product-secret", help="for --encrypted (default: the secret the MCU reports)")
    bridge.add_argument(
        "--lan",
        dest="lan_hosts",
        action="append",
        metavar="ADDR",
        help="listen for LAN apps on ADDR (repeatable; default 127.0.0.1; 0.0.0.0 for the whole LAN)",
    )
    bridge.add_argument("--no-lan", dest="lan_enabled", action="store_false", default=None, help="no LAN server")
    bridge.add_argument("--lan-udp-port", type=int, help="discovery port (default 12414)")
    bridge.add_argument("--lan-tcp-port", type=int, help="app control port (default 12416)")
    bridge.add_argument("--broadcast", dest="lan_broadcast_address", metavar="ADDR", help="start-up broadcast address")
    bridge.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (serial frames, resends, ACK times, uplinks)",
    )
    bridge.add_argument(
        "--mqtt",
        dest="mqtt_url",
        metavar="URL",
        help="home automation: mqtt://[user:pass@]host[:port] or mqtts://… (JSON state + Home Assistant discovery)",
    )
    bridge.add_argument("--mqtt-prefix", help="topic prefix of the JSON topics (default gizdev)")
    bridge.add_argument("--mqtt-device", help="the device's name in the topics (default <product>_<MAC end>)")
    bridge.add_argument("--mqtt-qos", type=int, choices=(0, 1), help="QoS of everything published (default 0)")
    bridge.add_argument("--mqtt-client-id", help="MQTT client id (default gizdev-<device>)")
    bridge.add_argument("--mqtt-ca-file", help="CA bundle to trust for mqtts:// (default: the system's)")
    bridge.add_argument(
        "--no-ha-discovery", dest="mqtt_discovery", action="store_false", default=None, help="no HA discovery"
    )
    bridge.add_argument("--ha-prefix", dest="mqtt_discovery_prefix", help="HA discovery prefix (default homeassistant)")
    bridge.add_argument(
        "--retire",
        action="store_true",
        help="remove the device from Home Assistant (empty retained discovery, state, availability) and exit",
    )
    bridge.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = {
        "port": args.port,
        "baudrate": args.baudrate,
        "product": args.product,
        "cloud": args.cloud,
        "state_dir": args.state_dir,
        "mac": args.mac,
        "encrypted": args.encrypted,
        "product_secret": args.product_secret,
        "lan_hosts": tuple(args.lan_hosts) if args.lan_hosts else None,
        "lan_enabled": args.lan_enabled,
        "lan_udp_port": args.lan_udp_port,
        "lan_tcp_port": args.lan_tcp_port,
        "lan_broadcast_address": args.lan_broadcast_address,
        "metrics": args.metrics,
        "mqtt_url": args.mqtt_url,
        "mqtt_prefix": args.mqtt_prefix,
        "mqtt_device": args.mqtt_device,
        "mqtt_qos": args.mqtt_qos,
        "mqtt_client_id": args.mqtt_client_id,
        "mqtt_ca_file": args.mqtt_ca_file,
        "mqtt_discovery": args.mqtt_discovery,
        "mqtt_discovery_prefix": args.mqtt_discovery_prefix,
    }
    config = load_config(args.config, overrides)
    if args.retire:
        return _retire(config)
    # aiohttp and the form cipher take a while to import: only this command pays for them.
    from gizdev.bridge.factory import build_bridge  # noqa: PLC0415 - start-up time

    return asyncio.run(_serve(build_bridge(config), config))


def _retire(config: BridgeConfig) -> int:
    from gizdev.bridge.factory import mqtt_settings  # noqa: PLC0415 - start-up time
    from gizdev.bridge.identity import IdentityStore  # noqa: PLC0415
    from gizdev.bridge.mqtt_uplink import retire  # noqa: PLC0415
    from gizdev.codec.p0 import load_product  # noqa: PLC0415
    from gizdev.errors import ConfigError  # noqa: PLC0415

    settings = mqtt_settings(config)
    if settings is None:
        raise ConfigError("--retire needs the MQTT broker (--mqtt URL or [mqtt] url)")
    emptied = asyncio.run(retire(settings, IdentityStore.open(config.state_dir), load_product(config.product)))
    print(f"gizdev bridge: retired: emptied {len(emptied)} retained topics on {settings.safe_url}", file=sys.stderr)
    return 0


async def _serve(bridge: Bridge, config: BridgeConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    metrics = _start_metrics(bridge, config.metrics) if config.metrics else None
    try:
        async with bridge:
            print(f"gizdev bridge: MCU on {config.port}; state in {config.state_dir}", file=sys.stderr)
            if metrics is not None:
                host, port = metrics.address
                print(f"gizdev bridge: metrics at http://{host}:{port}/metrics", file=sys.stderr)
            await stop.wait()
            print("gizdev bridge: stopping", file=sys.stderr)
    finally:
        if metrics is not None:
            metrics.close()
    return 0


def _start_metrics(bridge: Bridge, address: str) -> MetricsServer:
    from gizdev.bridge.metrics import bridge_registry  # noqa: PLC0415 - start-up time
    from gizdev.cli.cloud_cmd import host_port  # noqa: PLC0415
    from gizdev.errors import ConfigError  # noqa: PLC0415
    from gizdev.metrics import serve_metrics  # noqa: PLC0415

    try:
        host, port = host_port(address)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"metrics: {exc}") from None
    return serve_metrics(bridge_registry(bridge), host, port)
