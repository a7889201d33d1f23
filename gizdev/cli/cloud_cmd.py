"""``gizdev cloud``: run the local cloud (``serve``); administer it (apps, products, devices, users)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gizdev.cli.console import Console, start_or_stop, stop_on_signals
from gizdev.cli.options import positive_int
from gizdev.errors import AddressInUse, ConfigError
from gizdev.schema.loader import load_schema

# The cloud's modules (aiohttp, SQLAlchemy, argon2) take about a second to import: only the cloud commands pay for
# them, inside their run functions, so that `gizdev decode` and the board tools start at once.

if TYPE_CHECKING:  # imported for real only when the command runs (start-up time)
    from gizdev.cloud.messages.smtp import SmtpSettings
    from gizdev.cloud.messages.webhook import WebhookSettings
    from gizdev.cloud.server import CloudConfig
    from gizdev.cloud.storage import App, Storage, User

__all__ = ["DEFAULT_DATA_DIR", "explain_address_in_use", "host_port", "register"]

DEFAULT_DATA_DIR = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "gizdev" / "cloud"

SERVE_HELP = """\
Run the local cloud: the Gizwits device API (GAgent registers and provisions here), the Open API for apps, an
MQTT broker for devices, and a web console for people (http://HOST:PORT/console/). By default everything lives
in --data-dir: a SQLite database (cloud.db) and a managed Mosquitto (broker/) that gizdev configures, starts,
restarts if it dies and stops on exit. Listeners are on loopback unless you say otherwise. Stop with Ctrl-C or
SIGTERM.

Scaled out (hw/deploy-scaled.md): several workers on one PostgreSQL (--database) behind a load balancer, with a
RabbitMQ cluster (--amqp-url for each node, --public-mqtt for the devices; the nodes' HTTP auth backend asks the
workers' /broker/auth/* about every login) or an external MQTT broker such as EMQX (--broker, --worker-group for
shared subscriptions, --broker-auth for its HTTP auth hooks).
"""


OUTBOX_HELP = """\
Print the outbox of a local cloud: every SMS code, mail and (with --insecure-test-captcha) captcha answer the
cloud would have delivered, one JSON object a line, oldest first:

  {"time": "2026-01-01T12:00:00+00:00", "channel": "sms", "to": "+8613800000000", "code": "123456", "text": "..."}

Keys: time (UTC), channel (sms, email or captcha), to (a phone, a mail address, or the captcha_id), code (when the
message carries one), link (a reset link, when there is one), text. A cloud serving with --smtp-host sends mail
over SMTP instead, and with --sms-webhook SMS through the webhook: those are not in the outbox. The file holds
live codes; it is readable by its owner only.
"""


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expects HOST:PORT, e.g. 127.0.0.1:8080, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects an address or network, e.g. 10.0.0.5 or 10.0.0.0/24, not {text!r}"
        ) from None


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"the cloud's state: database and broker files (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="postgresql://user:password@host/db instead of the SQLite file in --data-dir",
    )


def register(commands: Any) -> None:
    cloud = commands.add_parser("cloud", help="run and administer the local Gizwits-compatible cloud")
    sub = cloud.add_subparsers(dest="cloud_command", metavar="ACTION", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the cloud",
        description=SERVE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # "--smtp-password X" must not pass as --smtp-password-file X
    )
    _add_storage_options(serve)
    serve.add_argument(
        "--http",
        type=host_port,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="HTTP listener (default 127.0.0.1:8080)",
    )
    serve.add_argument(
        "--mqtt",
        type=host_port,
        default=("127.0.0.1", 1883),
        metavar="HOST:PORT",
        help="the managed broker's listener (default 127.0.0.1:1883; 0.0.0.0:1883 lets devices on the LAN in)",
    )
    serve.add_argument(
        "--metrics",
        type=host_port,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (HTTP requests, devices online, reports, "
        "controls; loopback only)",
    )
    serve.add_argument(
        "--broker",
        metavar="URL",
        help="use an external broker, mqtt://user:password@host:port (device accounts and ACLs are then yours)",
    )
    serve.add_argument(
        "--amqp-url",
        action="append",
        metavar="URL",
        help="RabbitMQ (MQTT plugin) instead of an MQTT broker: consume device traffic over AMQP, "
        "amqp://USER:PASSWORD@HOST:5672/ (the cloud's service login; repeat for each node, tried in turn). The cloud "
        "answers the nodes' HTTP auth backend at /broker/auth/*; needs --public-mqtt",
    )
    serve.add_argument(
        "--worker-group",
        metavar="NAME",
        help="with --broker: one of several workers sharing the broker; device topics are subscribed as "
        "$share/NAME/... so each message reaches one worker (same NAME on every worker)",
    )
    serve.add_argument(
        "--broker-auth",
        action="store_true",
        help="with --broker: answer the broker's HTTP authentication and ACL requests at /broker/auth/* (EMQX); "
        "the cloud's own login is the one in the broker URL",
    )
    serve.add_argument(
        "--broker-auth-peer",
        action="append",
        type=_network,
        metavar="CIDR",
        help="an address the broker nodes ask /broker/auth/* from (repeatable; default loopback only: every other "
        "peer is refused)",
    )
    serve.add_argument(
        "--public-mqtt",
        type=host_port,
        metavar="HOST:PORT",
        help="the broker address handed to devices when they provision (default: the listener's address)",
    )
    serve.add_argument(
        "--scheduler-retry-interval",
        type=positive_int,
        default=30,
        metavar="SECONDS",
        help="time between the attempts of a scheduled run that failed (default 30)",
    )
    serve.add_argument(
        "--scheduler-grace",
        type=positive_int,
        default=300,
        metavar="SECONDS",
        help="a run that fell due while the cloud was down is made at start if at most this late, else logged "
        "as missed (default 300)",
    )
    serve.add_argument(
        "--scheduler-ack-timeout",
        type=positive_int,
        default=5,
        metavar="SECONDS",
        help="how long a device has to confirm a scheduled command (its 0x0094) before the command counts as not "
        "delivered (default 5; at most 20)",
    )
    serve.add_argument(
        "--strict-passwords", action="store_true", help="require 10+ characters of 3 kinds (default: 6+ characters)"
    )
    serve.add_argument(
        "--refuse-plain-registration",
        action="store_true",
        help="refuse POST /dev/devices (error 9048): devices must register through the encrypted device API, which "
        "gives each an MQTT password of its own (the plain API's password is the passcode every bound user sees)",
    )
    serve.add_argument(
        "--no-console-app-list",
        dest="console_app_list",
        action="store_false",
        help="the web console (/console/) does not list the app ids to sign in with; they are typed (the list is "
        "only ever offered on a loopback HTTP listener)",
    )
    for option, what in (("--public-mqtts-port", "port_s"), ("--public-wss-port", "wss_port")):
        serve.add_argument(
            option,
            type=int,
            default=0,
            metavar="PORT",
            help=f"the TLS port of a proxy in front of the {'broker' if what == 'port_s' else 'HTTP port'}, "
            f"announced as {what} in GET /app/bindings (default 0: none)",
        )
    serve.add_argument(
        "--oauth-endpoint",
        type=_oauth_endpoint,
        action="append",
        default=[],
        metavar="SRC=URL",
        help="offer third-party sign-up through SRC (baidu, sina, qq), checking tokens at URL the way the provider's "
        "API is called (e.g. qq=https://graph.qq.com/oauth2.0/me); repeatable",
    )
    serve.add_argument(
        "--limit",
        type=_limit,
        action="append",
        default=[],
        metavar="NAME=COUNT/SECONDS",
        help=f"an abuse limit ({', '.join(LIMIT_NAMES)}), e.g. login-account=5/900; repeatable",
    )
    _add_message_options(serve)
    serve.set_defaults(run=_run_serve)

    outbox = sub.add_parser(
        "outbox",
        help="print the messages the cloud wrote to its outbox (SMS codes, mails, test captchas) as JSON lines",
        description=OUTBOX_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    outbox.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"the cloud's data dir, as given to serve (default: {DEFAULT_DATA_DIR})",
    )
    outbox.set_defaults(run=_run_outbox)

    app = sub.add_parser("app", help="applications (the appid apps send)").add_subparsers(
        dest="app_command", metavar="ACTION", required=True
    )
    app_add = app.add_parser("add", help='create an application; prints {"appid", "appsecret", "product_keys"}')
    app_add.add_argument("name", help="a name for your records")
    app_add.add_argument(
        "--product",
        dest="product_keys",
        action="append",
        default=[],
        metavar="KEY",
        help="a product whose devices the app may reach (repeatable; without any, it reaches none until linked)",
    )
    _add_storage_options(app_add)
    app_add.set_defaults(run=_run_app_add)
    app_list = app.add_parser(
        "list", help="print every application as a JSON array (appid, name, created_at, product_keys)"
    )
    _add_storage_options(app_list)
    app_list.set_defaults(run=_run_app_list)
    for action, linked, text in (
        ("link", True, "let the app reach the devices of a product (a running server sees it within a minute)"),
        ("unlink", False, "no longer let the app reach the devices of a product"),
    ):
        command = app.add_parser(action, help=text)
        command.add_argument("appid", help="the application's id (see app list)")
        command.add_argument("product_key", help="the product's key")
        _add_storage_options(command)
        command.set_defaults(run=_run_app_link, linked=linked)

    user = sub.add_parser("user", help="the apps' users").add_subparsers(
        dest="user_command", metavar="ACTION", required=True
    )
    user_list = user.add_parser("list", help="print the users as a JSON array")
    user_list.add_argument("--app", metavar="APPID", help="only the users of this application")
    _add_storage_options(user_list)
    user_list.set_defaults(run=_run_user_list)
    for action, disabled, text in (
        ("disable", True, "refuse the user from now on: its tokens stop working at once, login is refused"),
        ("enable", False, "let a disabled user log in again"),
    ):
        command = user.add_parser(action, help=text)
        command.add_argument("uid", help="the user's uid (see user list)")
        _add_storage_options(command)
        command.set_defaults(run=_run_user_disable, disabled=disabled)

    product = sub.add_parser("product", help="products (datapoint schemas)").add_subparsers(
        dest="product_command", metavar="ACTION", required=True
    )
    product_add = product.add_parser(
        "add", help='add a product from its schema JSON; prints {"product_key", "product_secret"}'
    )
    product_add.add_argument("file", type=Path, help="the product's datapoint schema (Gizwits JSON export)")
    product_add.add_argument(
        "--product-key", help="the key built into the MCU firmware (default: the schema's, else new)"
    )
    product_add.add_argument("--product-secret", help="the secret built into the firmware (default: a new one)")
    _add_storage_options(product_add)
    product_add.set_defaults(run=_run_product_add)

    device = sub.add_parser("device", help="devices").add_subparsers(
        dest="device_command", metavar="ACTION", required=True
    )
    device_list = device.add_parser("list", help="print every registered device as a JSON array")
    _add_storage_options(device_list)
    device_list.set_defaults(run=_run_device_list)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expects a port number 1-65535, not {text!r}")
    return int(text)


def _add_message_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="how apps and mail readers reach this cloud, e.g. https://cloud.example.org: the base of captcha URLs "
        "and reset links (default: captcha URLs from the request's Host, reset links to the --http listener)",
    )
    mail = serve.add_argument_group("mail (reset links); without --smtp-host mails go to the outbox")
    mail.add_argument("--smtp-host", metavar="HOST", help="the SMTP server to send mail through")
    mail.add_argument("--smtp-port", type=_port, metavar="PORT", help="default by --smtp-tls: 25, 587 or 465")
    mail.add_argument(
        "--smtp-tls",
        choices=("none", "starttls", "tls"),
        help="starttls (default): upgrade and refuse a server that cannot; tls: implicit TLS; none: plain",
    )
    mail.add_argument("--smtp-user", metavar="USER", help="log in to the SMTP server as USER")
    mail.add_argument(
        "--smtp-password-file",
        type=Path,
        metavar="FILE",
        help="the SMTP password, read from FILE (never on the command line, where every user sees it)",
    )
    mail.add_argument("--smtp-ca-file", type=Path, metavar="FILE", help="trust this CA for the SMTP server's TLS")
    mail.add_argument("--mail-from", metavar="ADDRESS", help="the sender address of the cloud's mails")
    sms = serve.add_argument_group("SMS (codes); without --sms-webhook SMS go to the outbox")
    sms.add_argument(
        "--sms-webhook", metavar="URL", help="POST every SMS as JSON to URL (your SMS gateway or an adapter)"
    )
    sms.add_argument(
        "--sms-webhook-body",
        metavar="TEMPLATE",
        help="the JSON body, with {to} {text} {code} {link} {channel} in strings, filled in as JSON strings "
        '(default: {"to": "{to}", "text": "{text}", "code": "{code}"})',
    )
    serve.add_argument(
        "--insecure-test-captcha",
        action="store_true",
        help="DEVELOPMENT ONLY: also write every captcha's answer to the outbox (channel captcha), so that "
        "scripts can pass captchas; anyone who reads the outbox can then too",
    )


def _smtp_settings(args: argparse.Namespace) -> SmtpSettings | None:
    from gizdev.cloud.messages.smtp import SmtpSettings  # noqa: PLC0415 - start-up time

    given = [
        option
        for option, value in (
            ("--smtp-port", args.smtp_port),
            ("--smtp-tls", args.smtp_tls),
            ("--smtp-user", args.smtp_user),
            ("--smtp-password-file", args.smtp_password_file),
            ("--smtp-ca-file", args.smtp_ca_file),
            ("--mail-from", args.mail_from),
        )
        if value is not None
    ]
    if args.smtp_host is None:
        if given:
            raise ConfigError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --smtp-host")
        return None
    if args.mail_from is None:
        raise ConfigError("--smtp-host needs --mail-from ADDRESS, the sender of the cloud's mails")
    if (args.smtp_user is None) != (args.smtp_password_file is None):
        raise ConfigError("give --smtp-user and --smtp-password-file together")
    password = None
    if args.smtp_password_file is not None:
        try:
            password = args.smtp_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read --smtp-password-file {args.smtp_password_file}: {exc}") from exc
        if not password:
            raise ConfigError(f"--smtp-password-file {args.smtp_password_file} is empty")
    if args.smtp_ca_file is not None and not args.smtp_ca_file.is_file():
        raise ConfigError(f"--smtp-ca-file {args.smtp_ca_file} is not a file")
    try:
        return SmtpSettings(
            host=args.smtp_host,
            port=args.smtp_port,
            tls=args.smtp_tls or "starttls",
            username=args.smtp_user,
            password=password,
            ca_file=args.smtp_ca_file,
            mail_from=args.mail_from,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _webhook_settings(args: argparse.Namespace) -> WebhookSettings | None:
    from gizdev.cloud.messages.webhook import DEFAULT_TEMPLATE, WebhookSettings  # noqa: PLC0415 - start-up time

    if args.sms_webhook is None:
        if args.sms_webhook_body is not None:
            raise ConfigError("--sms-webhook-body needs --sms-webhook URL")
        return None
    try:
        return WebhookSettings(url=args.sms_webhook, body_template=args.sms_webhook_body or DEFAULT_TEMPLATE)
    except ValueError as exc:
        raise ConfigError(f"--sms-webhook: {exc}") from None


# -- serve ------------------------------------------------------------------------------------------------------

#: --limit names → the AbuseLimits fields they set
LIMIT_NAMES = {
    "login-account": "login_per_account",
    "login-address": "login_per_address",
    "anonymous-sign-ups": "anonymous_sign_ups_per_address",
    "device-registrations": "device_registrations_per_address",
    "mqtt-logins": "mqtt_logins_per_device",
}


def _oauth_endpoint(text: str) -> tuple[str, str]:
    from gizdev.cloud.oauth import parse_endpoint  # noqa: PLC0415 - start-up time

    try:
        return parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(text: str) -> tuple[str, int, int]:
    name, _, rule = text.partition("=")
    count, _, window = rule.partition("/")
    if name not in LIMIT_NAMES or not count.isdigit() or not window.isdigit() or int(count) < 1 or int(window) < 1:
        raise argparse.ArgumentTypeError(
            f"expects NAME=COUNT/SECONDS with NAME one of {', '.join(LIMIT_NAMES)}, e.g. login-account=5/900, "
            f"not {text!r}"
        )
    return LIMIT_NAMES[name], int(count), int(window)


def _run_serve(args: argparse.Namespace) -> int:
    from gizdev.cloud.broker.access import LOOPBACK  # noqa: PLC0415 - start-up time
    from gizdev.cloud.codes import CodeSettings  # noqa: PLC0415 - start-up time
    from gizdev.cloud.scheduler.runner import SchedulerSettings  # noqa: PLC0415 - start-up time
    from gizdev.cloud.security import STRICT_PASSWORD_POLICY, PasswordPolicy  # noqa: PLC0415 - start-up time
    from gizdev.cloud.server import CloudConfig  # noqa: PLC0415 - start-up time
    from gizdev.cloud.throttle import AbuseLimits, Limit  # noqa: PLC0415 - start-up time

    limits = dataclasses.replace(AbuseLimits(), **{field: Limit(count, window) for field, count, window in args.limit})
    config = CloudConfig(
        data_dir=args.data_dir,
        http_host=args.http[0],
        http_port=args.http[1],
        mqtt_host=args.mqtt[0],
        mqtt_port=args.mqtt[1],
        broker_url=args.broker,
        database=args.database,
        public_mqtt_host=args.public_mqtt[0] if args.public_mqtt else None,
        public_mqtt_port=args.public_mqtt[1] if args.public_mqtt else None,
        password_policy=STRICT_PASSWORD_POLICY if args.strict_passwords else PasswordPolicy(),
        metrics=args.metrics,
        public_mqtts_port=args.public_mqtts_port,
        public_wss_port=args.public_wss_port,
        refuse_plain_registration=args.refuse_plain_registration,
        amqp_urls=tuple(args.amqp_url or ()),
        worker_group=args.worker_group,
        broker_auth=args.broker_auth,
        broker_auth_peers=tuple(args.broker_auth_peer) if args.broker_auth_peer else LOOPBACK,
        limits=limits,
        oauth_endpoints=dict(args.oauth_endpoint),
        codes=CodeSettings(insecure_test_captcha=args.insecure_test_captcha),
        public_url=args.public_url,
        smtp=_smtp_settings(args),
        sms_webhook=_webhook_settings(args),
        scheduler=SchedulerSettings(
            retry_interval_s=args.scheduler_retry_interval,
            grace_s=args.scheduler_grace,
            ack_timeout_s=args.scheduler_ack_timeout,
        ),
        console_app_list=args.console_app_list,
    )
    return asyncio.run(_serve(config))


async def _serve(config: CloudConfig) -> int:
    from gizdev.cloud.server import CloudServer  # noqa: PLC0415 - start-up time

    stop = asyncio.Event()
    stop_on_signals(stop)
    # Nothing goes to stdout; a closed stderr (`2>&1 | tee log`, tee killed by the same Ctrl-C) only loses words.
    err = Console(sys.stderr)
    if config.codes.insecure_test_captcha:
        err.say("gizdev cloud: WARNING --insecure-test-captcha: captcha answers go to the outbox; development only")
    cloud = CloudServer(config)
    try:
        started = await start_or_stop(cloud.start(), stop)
    except AddressInUse as exc:
        raise ConfigError(explain_address_in_use(exc)) from exc
    if not started:  # CloudServer.start has stopped what it had started
        err.say("gizdev cloud: stopped")
        return 0
    try:
        where = f"managed mosquitto on {config.mqtt_host}:{config.mqtt_port}"
        if not config.managed_broker:
            where = f"external broker {cloud.bus.feed}" if cloud.bus is not None else "external broker"
        err.say(
            f"gizdev cloud: Open API on {cloud.http_url} (console: {cloud.http_url}/console/), {where}, "
            f"data in {config.data_dir}"
        )
        await stop.wait()
    finally:
        err.say("gizdev cloud: stopping")
        await cloud.stop()
    return 0


def explain_address_in_use(exc: AddressInUse) -> str:
    """One line for a taken listener address: its likely owner and the option that moves it (demo, serve)."""
    if exc.service == "MQTT":
        option = "--mqtt"
        # Installing Debian's mosquitto package also starts its broker there (the demo's default avoids it).
        owner = "the system's mosquitto service" if exc.port == 1883 else "a mosquitto"
    else:
        option, owner = "--http", "another web server"
    return (
        f"{exc.address} is in use — another gizdev demo or gizdev cloud serve, or {owner}, still running? "
        f"Stop it, or choose another port with {option} HOST:PORT"
    )


# -- administration ---------------------------------------------------------------------------------------------


async def _open_storage(args: argparse.Namespace) -> Storage:
    """The cloud's storage for an admin command: an existing one only (``serve`` is what creates a cloud)."""
    from gizdev.cloud.storage import DATABASE_FILE, DatabaseMissing, Storage  # noqa: PLC0415 - start-up time

    if args.database:
        database: str | Path = str(args.database)
        hint = "`gizdev cloud serve --database URL` creates its tables"
    else:
        data_dir = Path(args.data_dir)
        hint = f"a typo? `gizdev cloud serve --data-dir {data_dir}` creates one"
        if not data_dir.is_dir():
            raise ConfigError(f"no cloud data dir {data_dir} ({hint})")
        database = data_dir / DATABASE_FILE
    try:
        return await Storage.open(database, create=False)
    except DatabaseMissing as exc:
        raise ConfigError(f"{exc} ({hint})") from exc


def _run_outbox(args: argparse.Namespace) -> int:
    from gizdev.cloud.messages import OUTBOX_FILE, Outbox  # noqa: PLC0415 - start-up time

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"no cloud data dir {data_dir} (a typo? give the --data-dir that serve uses)")
    path = data_dir / OUTBOX_FILE
    if not path.is_file():
        raise ConfigError(
            f"no outbox in {data_dir}: the cloud has sent nothing yet (it writes {OUTBOX_FILE} with its first SMS "
            "code or mail; with --smtp-host or --sms-webhook those go out instead)"
        )
    try:
        for line in Outbox(path).lines():
            print(json.dumps(line, ensure_ascii=False))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return 0


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _run_app_add(args: argparse.Namespace) -> int:
    from gizdev.cloud.security import new_app_id, new_app_secret  # noqa: PLC0415 - start-up time

    async def add() -> dict[str, Any]:
        async with await _open_storage(args) as storage:
            app = await storage.add_app(new_app_id(), new_app_secret(), args.name, args.product_keys)
        return {"appid": app.appid, "appsecret": app.appsecret, "product_keys": sorted(app.product_keys)}

    _print_json(asyncio.run(add()))
    return 0


def _app_entry(app: App) -> dict[str, Any]:
    # Never the secret: with it anyone can sign requests as the app (X-Gizwits-Application-Auth).
    return {
        "appid": app.appid,
        "name": app.name,
        "created_at": app.created_at,
        "product_keys": sorted(app.product_keys),
    }


def _run_app_list(args: argparse.Namespace) -> int:
    async def listing() -> list[dict[str, Any]]:
        async with await _open_storage(args) as storage:
            return [_app_entry(app) for app in await storage.list_apps()]

    _print_json(asyncio.run(listing()))
    return 0


def _run_app_link(args: argparse.Namespace) -> int:
    async def change() -> dict[str, Any]:
        async with await _open_storage(args) as storage:
            return _app_entry(await storage.link_app_product(args.appid, args.product_key, linked=args.linked))

    _print_json(asyncio.run(change()))
    return 0


def _user_entry(user: User) -> dict[str, Any]:
    return {
        "uid": user.uid,
        "appid": user.appid,
        "kind": "anonymous" if user.is_anonymous else "username",  # phone_id sign-up, or username + password
        "username": user.username,
        "phone_id": user.phone_id,
        "created_at": user.created_at,
        "is_disabled": user.is_disabled,
    }


def _run_user_list(args: argparse.Namespace) -> int:
    async def listing() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        async with await _open_storage(args) as storage:
            if args.app is not None:
                await storage.get_app(args.app)  # NotFound: a mistyped appid is an error, not an empty list
            while True:
                page = await storage.list_users(appid=args.app, limit=1000, skip=len(found))
                found += [_user_entry(user) for user in page]
                if len(page) < 1000:
                    return found

    _print_json(asyncio.run(listing()))
    return 0


def _run_user_disable(args: argparse.Namespace) -> int:
    async def change() -> dict[str, Any]:
        async with await _open_storage(args) as storage:
            return _user_entry(await storage.set_user_disabled(args.uid, args.disabled))

    _print_json(asyncio.run(change()))
    return 0


def _run_product_add(args: argparse.Namespace) -> int:
    from gizdev.cloud.security import new_product_key, new_product_secret  # noqa: PLC0415 - start-up time

    schema = load_schema(args.file)
    key = args.product_key or schema.product_key or new_product_key()
    if schema.product_key and args.product_key and schema.product_key != args.product_key:
        raise ConfigError(f"{args.file} is the schema of product {schema.product_key}, not {args.product_key}")

    async def add() -> dict[str, str]:
        async with await _open_storage(args) as storage:
            product = await storage.add_product(key, args.product_secret or new_product_secret(), schema.name, schema)
        return {"product_key": product.product_key, "product_secret": product.product_secret}

    _print_json(asyncio.run(add()))
    return 0


def _run_device_list(args: argparse.Namespace) -> int:

    async def listing() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        async with await _open_storage(args) as storage:
            while True:
                page = await storage.list_devices(limit=1000, skip=len(found))
                found += [
                    {
                        "did": d.did,
                        "mac": d.mac,
                        "product_key": d.product_key,
                        "passcode": d.passcode,
                        "is_online": d.is_online,
                        "last_seen": d.last_seen,
                        "is_disabled": d.is_disabled,
                    }
                    for d in page
                ]
                if len(page) < 1000:
                    return found

    _print_json(asyncio.run(listing()))
    return 0
