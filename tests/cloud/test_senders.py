"""The real carriers: mail through an SMTP server on loopback (aiosmtpd: plain, and STARTTLS with a login and a
certificate made here), SMS through an HTTP webhook on loopback (aiohttp), each driven through the cloud's own
endpoints; a carrier that fails leaves no usable code behind."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message as MailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gizdev.cloud.messages import Message, SendFailed
from gizdev.cloud.messages.smtp import SmtpSender, SmtpSettings
from gizdev.cloud.messages.webhook import WebhookSender, WebhookSettings
from tests.cloud.broker_fixtures import free_port
from tests.cloud.codes_helpers import (
    CloudFactory,
    app_token,
    clouds,
    new_app,
    outbox_lines,
    seed_call,
    user_with,
)
from tests.cloud.server_fixtures import CloudThread, Reply
from tests.cloud.test_open_api_seed import assert_error
from tests.guards import run
from tests.loop_thread import LoopThread

MAIL_FROM = "cloud@gizdev.test"


@pytest.fixture(name="sqlite_cloud")
def sqlite_cloud_fixture(mosquitto_binary: str) -> Iterator[CloudFactory]:
    """``sqlite_cloud(**config)``: a cloud on SQLite (the carriers do not touch the database differently)."""
    with clouds(lambda base: f"sqlite+aiosqlite:///{base / 'cloud.db'}", mosquitto_binary) as start:
        yield start


# -- an SMTP server -------------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """aiosmtpd's handler: keeps every mail; waits ``delay_s`` before accepting one (a slow relay)."""

    delay_s: float = 0.0
    mails: list[tuple[Envelope, MailMessage]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay_s)
        assert isinstance(envelope.content, bytes)
        self.mails.append((envelope, email.message_from_bytes(envelope.content)))
        self.arrived.set()
        return "250 OK"

    def wait(self, count: int = 1, timeout_s: float = 10.0) -> list[tuple[Envelope, MailMessage]]:
        deadline = time.monotonic() + timeout_s
        while len(self.mails) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.mails) >= count, f"{len(self.mails)} mails arrived, wanted {count}"
        return self.mails


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (the test's CA file), and that key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gizdev test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(name="smtp_server")
def smtp_server_fixture() -> Iterator[Any]:
    """``smtp_server(mailbox, **aiosmtpd options)`` → the port of a running aiosmtpd on 127.0.0.1."""
    controllers: list[Controller] = []

    def start(mailbox: Mailbox, **options: Any) -> int:
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return port

    try:
        yield start
    finally:
        for controller in controllers:
            controller.stop()


def _at(port: int, tls: str) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "tls": tls, "mail_from": MAIL_FROM, "timeout_s": 3.0}


def reset_by_mail(cloud: CloudThread, appid: str, address: str) -> Reply:
    return seed_call(cloud, "POST", "/app/reset_password", appid=appid, body=json.dumps({"email": address}))


def test_reset_mail_over_plain_smtp_and_off_the_request_path(sqlite_cloud: CloudFactory, smtp_server: Any) -> None:
    mailbox = Mailbox(delay_s=1.5)  # a slow relay: the answer must not wait for it
    port = smtp_server(mailbox)
    cloud = sqlite_cloud(smtp=SmtpSettings(host="127.0.0.1", port=port, tls="none", mail_from=MAIL_FROM))
    app = new_app(cloud)
    ivan = user_with(cloud, app.appid, username="ivan", password="old-secret", email="ivan@example.org")
    started = time.monotonic()
    reply = reset_by_mail(cloud, app.appid, "ivan@example.org")
    known_s = time.monotonic() - started
    started = time.monotonic()
    unknown = reset_by_mail(cloud, app.appid, "nobody@example.org")
    unknown_s = time.monotonic() - started
    assert (reply.status, reply.body) == (unknown.status, unknown.body) == (200, {})
    assert known_s < 1.0 and unknown_s < 1.0, (known_s, unknown_s)  # neither waited for the 1.5 s relay
    ((envelope, mail),) = mailbox.wait()
    assert envelope.mail_from == MAIL_FROM and envelope.rcpt_tos == ["ivan@example.org"]
    assert mail["To"] == "ivan@example.org" and mail["From"] == MAIL_FROM and mail["Subject"]
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    prefix = f"http://127.0.0.1:{cloud.http_port}/reset_password/{ivan.uid}/"
    (link,) = [word for word in body.decode().split() if word.startswith(prefix)]
    path = link.removeprefix(f"http://127.0.0.1:{cloud.http_port}")
    done = cloud.request("POST", path, b"new_pwd=ivans-new-one", {"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 200, done
    login = cloud.api("POST", "/app/login", {"username": "ivan", "password": "ivans-new-one"}, appid=app.appid)
    assert login.status == 200
    time.sleep(0.3)
    assert len(mailbox.mails) == 1  # the unknown address got nothing
    assert not [line for line in outbox_lines(cloud) if line["channel"] == "email"]  # SMTP, not the outbox


def test_reset_mail_over_starttls_with_a_login(sqlite_cloud: CloudFactory, smtp_server: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=(data.login, data.password) == (b"cloud", b"s3cret pass"))

    mailbox = Mailbox()
    port = smtp_server(mailbox, tls_context=tls, require_starttls=True, authenticator=authenticator, auth_required=True)
    settings = SmtpSettings(
        host="127.0.0.1",
        port=port,
        tls="starttls",
        username="cloud",
        password="s3cret pass",
        ca_file=cert,
        mail_from=MAIL_FROM,
    )
    cloud = sqlite_cloud(smtp=settings)
    app = new_app(cloud)
    user_with(cloud, app.appid, username="judy", password="old-secret", email="judy@example.org")
    assert reset_by_mail(cloud, app.appid, "judy@example.org").status == 200
    ((_envelope, mail),) = mailbox.wait()
    assert logins == [(b"cloud", b"s3cret pass")]
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes) and b"/reset_password/" in payload

    # The same server with a wrong password (aiosmtplib then tries its next mechanism, which this server does
    # not answer: the timeout ends it), without the CA, in plain mode, and no server: SendFailed, nothing delivered.
    message = Message(channel="email", to="judy@example.org", text="t", subject="s")
    login: dict[str, Any] = {"username": "cloud", "password": "s3cret pass"}
    for wrong in (
        SmtpSettings(**{**login, "password": "wrong"}, ca_file=cert, **_at(port, "starttls")),
        SmtpSettings(**login, **_at(port, "starttls")),
        SmtpSettings(**_at(port, "none")),
        SmtpSettings(**_at(free_port(), "none")),
    ):
        with pytest.raises(SendFailed):
            run(SmtpSender(wrong).send(message))
    assert len(mailbox.mails) == 1


def test_smtp_settings_refuse_what_cannot_work() -> None:
    for bad in (
        {"host": "", "mail_from": MAIL_FROM},
        {"host": "h", "mail_from": "not an address"},
        {"host": "h", "mail_from": MAIL_FROM, "username": "u"},
        {"host": "h", "mail_from": MAIL_FROM, "username": "u", "password": "p", "tls": "none"},
        {"host": "h", "mail_from": MAIL_FROM, "port": 70000},
        {"host": "h", "mail_from": MAIL_FROM, "tls": "ssl"},
    ):
        with pytest.raises(ValueError):
            SmtpSettings(**bad)
    assert SmtpSettings(host="h", mail_from=MAIL_FROM).effective_port == 587
    assert SmtpSettings(host="h", mail_from=MAIL_FROM, tls="tls").effective_port == 465


# -- an SMS webhook -------------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    """An SMS gateway's webhook: keeps every body; answers ``status`` after ``delay_s``."""

    status: int = 200
    delay_s: float = 0.0
    bodies: list[Any] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    waiting: set[asyncio.Task[Any]] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        self.headers.append(dict(request.headers))
        task = asyncio.current_task()
        assert task is not None
        self.waiting.add(task)  # a slow answer the client gave up on is cut short at the end
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.waiting.discard(task)
        return web.json_response({"ok": self.status < 300}, status=self.status)


class GatewayThread(LoopThread):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        super().__init__("sms-gateway", self._serve, self._stop)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/sms", self.gateway.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        for task in list(self.gateway.waiting):
            task.cancel()
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"


@pytest.fixture(name="gateway")
def gateway_fixture() -> Iterator[GatewayThread]:
    thread = GatewayThread(Gateway())
    thread.start()
    try:
        yield thread
    finally:
        thread.close()


TEMPLATE = '{"msisdn": "{to}", "message": "{text}", "meta": {"otp": "{code}", "kind": "{channel}"}, "fixed": [1, true]}'


def test_sms_through_the_webhook_as_templated(sqlite_cloud: CloudFactory, gateway: GatewayThread) -> None:
    cloud = sqlite_cloud(sms_webhook=WebhookSettings(url=gateway.url, body_template=TEMPLATE, timeout_s=1.0))
    app = new_app(cloud)
    token = app_token(cloud, app)

    def call(method: str, body: dict[str, str]) -> Reply:
        return seed_call(cloud, method, "/app/sms_code", appid=app.appid, app_token=token, body=json.dumps(body))

    assert call("POST", {"phone": "+86 138 0000 0001"}).status == 201
    (body,) = gateway.gateway.bodies
    code = body["meta"]["otp"]
    assert body == {
        "msisdn": "+8613800000001",
        "message": body["message"],
        "meta": {"otp": code, "kind": "sms"},
        "fixed": [1, True],
    }
    assert code.isdigit() and len(code) == 6 and code in body["message"]
    assert gateway.gateway.headers[0]["Content-Type"].startswith("application/json")
    assert call("POST", {"phone": "+8613800000001", "code": code}).status == 200
    assert not [line for line in outbox_lines(cloud) if line["channel"] == "sms"]  # the webhook, not the outbox

    # A gateway that fails (500) or does not answer in time: 9037, and the code it was handed does not work.
    for phone, status, delay_s in (("+8613800000002", 500, 0.0), ("+8613800000003", 200, 1.5)):
        gateway.gateway.status, gateway.gateway.delay_s = status, delay_s
        assert_error(call("POST", {"phone": phone}), 9037, 400)
        handed = gateway.gateway.bodies[-1]["meta"]["otp"]
        assert_error(call("POST", {"phone": phone, "code": handed}), 9010, 400)
    gateway.gateway.status, gateway.gateway.delay_s = 200, 0.0
    # A gateway that is not there at all.
    cloud_gone = sqlite_cloud(sms_webhook=WebhookSettings(url=f"http://127.0.0.1:{free_port()}/sms", timeout_s=1.0))
    other = new_app(cloud_gone)
    reply = seed_call(
        cloud_gone,
        "POST",
        "/app/sms_code",
        appid=other.appid,
        app_token=app_token(cloud_gone, other),
        body='{"phone": "13800000004"}',
    )
    assert_error(reply, 9037, 400)


def test_webhook_values_stay_json_strings() -> None:
    settings = WebhookSettings(url="http://127.0.0.1:9/sms", body_template=TEMPLATE)
    hostile = 'a "quote", a \\ backslash, {to} braces, \u2028 and }]}'
    body = settings.body(Message(channel="sms", to='+1"}', text=hostile, code="{code}"))
    assert json.loads(json.dumps(body)) == body
    assert body["message"] == hostile and body["msisdn"] == '+1"}' and body["meta"]["otp"] == "{code}"
    for url, template in (
        ("ftp://127.0.0.1/sms", TEMPLATE),
        ("127.0.0.1/sms", TEMPLATE),
        ("http://127.0.0.1/sms", '{"to": "{to}"'),
        ("http://127.0.0.1/sms", '{"to": "{phone}"}'),
        ("http://127.0.0.1/sms", "x" * 5000),
    ):
        with pytest.raises(ValueError):
            WebhookSettings(url=url, body_template=template)
    with pytest.raises(SendFailed):
        run(WebhookSender(settings).send(Message(channel="email", to="a@b.cd", text="t")))
