"""``gizdev demo``: a local cloud, a virtual GoKit and a bridge between them, with curl lines to try."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gizdev.cli import options
from gizdev.cli.cloud_cmd import explain_address_in_use, host_port
from gizdev.cli.console import EXIT_PIPE_CLOSED, Console, start_or_stop, stop_on_signals
from gizdev.errors import AddressInUse, ConfigError
from gizdev.products import builtin_product_path

if TYPE_CHECKING:  # imported for real only when the command runs (start-up time)
    from gizdev.demo import DemoSettings

__all__ = ["register"]

DESCRIPTION = """\
Run the whole chain on this machine with nothing to set up: the local cloud (Open API + managed Mosquitto +
SQLite), a virtual GoKit board on a pseudo-terminal, and the bridge (a software GAgent) between them. The demo
creates an app, a user and a binding, prints curl commands for /app/control and /app/devdata/{did}/latest, and
then shows the board's reports as they arrive until Ctrl-C. State lives in a temporary directory unless
--data-dir is given (then the device keeps its identity across runs).
"""


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="all in one: local cloud + virtual GoKit + bridge, with curl lines to try",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--http", type=host_port, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                      help="the Open API listener (default 127.0.0.1:8080)")  # fmt: skip
    # Not 1883: installing Debian's mosquitto package also starts its own broker there.
    demo.add_argument("--mqtt", type=host_port, default=("127.0.0.1", 18830), metavar="HOST:PORT",
                      help="the managed broker's listener (default 127.0.0.1:18830)")  # fmt: skip
    demo.add_argument("--data-dir", type=Path, help="keep the state here (default: a temporary directory)")
    options.add_product_option(demo, as_path=True, help="the board's schema (default: the built-in GoKit)")
    demo.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from gizdev.demo import DemoSettings  # noqa: PLC0415 - start-up time (the cloud's modules)

    settings = DemoSettings(
        product=args.product or builtin_product_path(),
        data_dir=args.data_dir,
        http_host=args.http[0],
        http_port=args.http[1],
        mqtt_port=args.mqtt[1],
    )
    return asyncio.run(_demo(settings))


def _report_line(attrs: dict[str, Any]) -> str:
    values = " ".join(f"{name}={json.dumps(value)}" for name, value in attrs.items())
    return f"{time.strftime('%H:%M:%S')} report: {values}"


async def _demo(settings: DemoSettings) -> int:
    from gizdev.bridge.lan_uplink import LanUplink  # noqa: PLC0415 - start-up time
    from gizdev.demo import Demo  # noqa: PLC0415 - start-up time (the cloud's modules)

    stop = asyncio.Event()
    stop_on_signals(stop)
    out = Console(on_closed=stop.set)  # `gizdev demo | tee log`, and tee is gone: stop, as after Ctrl-C
    err = Console(sys.stderr)
    demo = Demo(settings, on_report=lambda attrs: out.say(_report_line(attrs)))
    err.say("gizdev demo: starting the local cloud, a virtual GoKit and the bridge ...")
    try:
        started = await start_or_stop(demo.start(), stop)
    except AddressInUse as exc:
        raise ConfigError(explain_address_in_use(exc)) from exc
    if not started:  # stopped while starting: Demo.start has stopped what it had started
        err.say("gizdev demo: stopped")
        return 0
    try:
        assert demo.bridge is not None and demo.cloud is not None
        lan_uplink = demo.bridge.find_uplink(LanUplink)
        lan = lan_uplink.server.tcp_addresses[0] if lan_uplink else None
        out.say(f"Local cloud:  {demo.http_url}  (MQTT 127.0.0.1:{settings.mqtt_port})")
        out.say(
            f"Device:       did {demo.did}, passcode {demo.bridge.identity.passcode}, on {demo.bridge.connection.url}"
        )
        if lan is not None:
            out.say(f"LAN server:   {lan[0]}:{lan[1]}")
        out.say(f"App id:       {demo.appid}")
        out.say(f"User token:   {demo.token}")
        out.say()
        out.say("Switch the LED on, pink, and run the motor:")
        control, latest = demo.curl_lines()
        out.say(f"  {control}")
        out.say("Read the board's latest data:")
        out.say(f"  {latest}")
        out.say()
        out.say("Live reports from the board (Ctrl-C to stop):")
        await stop.wait()
    finally:
        err.say("gizdev demo: stopping")
        await demo.close()
    return EXIT_PIPE_CLOSED if out.closed else 0
