"""The broker-facing side: topic rules (one source for Mosquitto's ACL and the HTTP auth), RabbitMQ's connection
events turned into presence, and the /broker/auth/* endpoints on a real cloud HTTP app and storage."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gizdev.cloud.broker import BrokerSettings
from gizdev.cloud.broker.access import BrokerAccess
from gizdev.cloud.broker.files import hash_password, render_acl
from gizdev.cloud.broker.topics import DEVICE_RULES, covers, may_use, routing_key_to_topic, topic_to_routing_key
from gizdev.cloud.devicebus import DeviceBus
from gizdev.cloud.feeds.mqtt import MqttFeed
from gizdev.cloud.http import CloudContext, HttpSettings, make_app
from gizdev.cloud.presence import ConnectionEvent, ConnectionTracker, Presence, parse_rabbitmq_event
from gizdev.cloud.products import ProductCache
from gizdev.cloud.storage import Storage
from gizdev.cloud.throttle import AbuseLimits
from tests.guards import run

PK = "5eed0000000000000000000000000001"
OTHER_PK = "5eed0000000000000000000000000002"
SERVICE_PASSWORD = "service-secret"


# -- topic rules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "wanted", "expected"),
    [
        ("dev2app/D1", "dev2app/D1", True),
        ("dev2app/D1", "dev2app/D2", False),
        ("dev2app/D1", "dev2app/D1/x", False),
        ("dev2app/D1/#", "dev2app/D1/x", True),
        ("dev2app/D1/#", "dev2app/D1", True),  # "a/#" also matches "a"
        ("app2dev/D1/#", "app2dev/D1/#", True),
        ("app2dev/D1/#", "app2dev/+/#", False),  # a wider filter than the rule
        ("app2dev/D1/#", "app2dev/#", False),
        ("app2dev/+/x", "app2dev/+/x", True),
        ("app2dev/+/x", "app2dev/D9/x", True),
        ("app2dev/+/x", "app2dev/#", False),
        ("ser2cli_res/D1", "ser2cli_res/+", False),
        ("#", "anything/at/all", True),
    ],
)
def test_a_rule_covers_only_what_it_matches(rule: str, wanted: str, expected: bool) -> None:
    assert covers(rule, wanted) is expected


def test_device_rules() -> None:
    def may(access: Any, topic: str) -> bool:
        return may_use(DEVICE_RULES, access, topic, did="D1", product_key=PK)

    for topic in ("dev2app/D1", "dev2app/D1/usr1", "cli2ser_req"):
        assert may("write", topic), topic
    for topic in ("dev2app/D2", "dev2app/#", "app2dev/D1/x", "ser2cli_res/D1", "cli2ser_req/x", "", "dev2app/D1\0"):
        assert not may("write", topic), topic
    for topic in ("app2dev/D1/#", "app2dev/D1/usr1", "app2module/D1/#", "ser2cli_res/D1", f"ser2cli_noti/{PK}"):
        assert may("read", topic), topic
    for topic in ("app2dev/D2/#", "app2dev/+/#", "#", "ser2cli_res/D2", f"ser2cli_noti/{OTHER_PK}", "dev2app/D1"):
        assert not may("read", topic), topic
    # A rule that needs a value not given, or a value that is not one level, allows nothing.
    assert not may_use(DEVICE_RULES, "read", "ser2cli_noti/", did="D1")
    assert not may_use(DEVICE_RULES, "write", "dev2app/+", did="+")
    assert not may_use(DEVICE_RULES, "write", "dev2app/a/b", did="a/b")


def test_mosquitto_acl_comes_from_the_same_rules() -> None:
    acl = render_acl({"D1": PK})
    assert "pattern write dev2app/%u\n" in acl and "pattern read app2dev/%u/#\n" in acl
    assert f"user D1\ntopic write cli2ser_req\ntopic read ser2cli_noti/{PK}\n" in acl
    assert acl.count("pattern ") == sum("{did}" in rule.topic for rule in DEVICE_RULES)


def test_routing_keys_and_topics() -> None:
    assert topic_to_routing_key("app2dev/D1/#") == "app2dev.D1.#"
    assert topic_to_routing_key("app2dev/+/x") == "app2dev.*.x"
    assert routing_key_to_topic("app2dev.*.x") == "app2dev/+/x"
    assert routing_key_to_topic("dev2app.D1") == "dev2app/D1"


# -- RabbitMQ's connection events ------------------------------------------------------------------------------------

# What RabbitMQ 3.10.8's event exchange sent for an MQTT 3.1 device (recorded from the broker, trimmed).
CREATED_HEADERS: dict[str, object] = {
    "client_properties": [],
    "variable_map": '#{<<"client_id">> => <<"devABC">>}',
    "node": "rabbit-1@localhost",
    "type": "direct",
    "vhost": "/",
    "user": "devABC",
    "peer_port": 58938,
    "name": "127.0.0.1:58938 -> 127.0.0.1:21881",
    "protocol": "{'MQTT',\"3.1.0\"}",
    "pid": "<rabbit-1@localhost.1796193996.760.0>",
    "timestamp_in_ms": 1796194015930,
}
CLOSED_HEADERS: dict[str, object] = {
    "name": "127.0.0.1:58938 -> 127.0.0.1:21881",
    "node": "rabbit-1@localhost",
    "pid": "<rabbit-1@localhost.1796193996.760.0>",
    "timestamp_in_ms": 1796194020373,
}


def test_rabbitmq_events_are_parsed() -> None:
    created = parse_rabbitmq_event("connection.created", CREATED_HEADERS)
    assert created == ConnectionEvent(
        connection="<rabbit-1@localhost.1796193996.760.0>",
        created=True,
        at_ms=1796194015930,
        user="devABC",
        peer="127.0.0.1:58938",
    )
    closed = parse_rabbitmq_event("connection.closed", CLOSED_HEADERS)
    assert closed == ConnectionEvent(connection=created.connection, created=False, at_ms=1796194020373)
    amqp = {**CREATED_HEADERS, "protocol": "{0,9,1}", "user": "gizdev-cloud"}
    assert parse_rabbitmq_event("connection.created", amqp) is None  # a worker, not a device
    assert parse_rabbitmq_event("channel.created", CREATED_HEADERS) is None
    assert parse_rabbitmq_event("connection.closed", {"pid": "<x>"}) is None  # no time
    assert parse_rabbitmq_event("connection.closed", {"pid": "<x>", "timestamp_in_ms": True}) is None
    assert parse_rabbitmq_event("connection.created", {**CREATED_HEADERS, "user": b""}) is None


def _event(connection: str, created: bool, at_ms: int) -> ConnectionEvent:
    return ConnectionEvent(connection=connection, created=created, at_ms=at_ms, user="D1" if created else None)


def test_a_device_moving_to_another_node_stays_online() -> None:
    tracker = ConnectionTracker()
    assert tracker.apply(_event("<n1.1>", True, 100)) == Presence("D1", True, username="D1")
    assert tracker.apply(_event("<n2.7>", True, 200)) == Presence("D1", True, username="D1")
    assert tracker.apply(_event("<n1.1>", False, 150)) is None  # the old node's close, reported late
    assert tracker.apply(_event("<n2.7>", False, 300)) == Presence("D1", False, username="D1")


def test_a_late_creation_of_an_older_connection_changes_nothing() -> None:
    tracker = ConnectionTracker()
    tracker.apply(_event("<n2.7>", True, 200))
    assert tracker.apply(_event("<n2.7>", False, 300)) == Presence("D1", False, username="D1")
    assert tracker.apply(_event("<n1.1>", True, 250)) is None  # older than the last event of D1
    assert tracker.apply(_event("<n1.1>", False, 260)) is None
    assert tracker.apply(_event("<n3.2>", False, 400)) is None  # never seen (opened before we listened)
    assert tracker.apply(_event("<n3.3>", True, 500)) == Presence("D1", True, username="D1")


# -- the endpoints ---------------------------------------------------------------------------------------------------

Client = TestClient[web.Request, web.Application]


async def _client(storage: Storage, access: BrokerAccess | None) -> Client:
    products = ProductCache(storage)
    bus = DeviceBus(storage, products, MqttFeed(BrokerSettings("127.0.0.1")))  # not started: no broker needed
    ctx = CloudContext(storage=storage, bus=bus, products=products, settings=HttpSettings(broker_access=access))
    client = TestClient(TestServer(make_app(ctx), host="127.0.0.1"))
    await client.start_server()
    return client


def with_cloud(
    db_url: str, scenario: Callable[[Client, Storage, str], Coroutine[Any, Any, None]], **access: Any
) -> None:
    """Run ``scenario(client, storage, did)`` against the HTTP app, with one registered device (passcode PASS1)."""

    async def main() -> None:
        storage = await Storage.open(db_url)
        client: Client | None = None
        try:
            await storage.add_product(PK, "0" * 32, "p")
            did = (await storage.register_device("AABBCCDDEEFF", PK, "PASS1")).device.did
            settings = {"service_username": "gizdev-cloud", "service_password": SERVICE_PASSWORD, **access}
            client = await _client(storage, BrokerAccess(**settings) if settings.pop("enabled", True) else None)
            await scenario(client, storage, did)
        finally:
            if client is not None:
                await client.close()
            await storage.close()

    run(main())


async def ask(client: Client, path: str, fields: dict[str, str], **headers: str) -> tuple[int, str]:
    response = await client.post(
        f"/broker/auth/{path}",
        data=urlencode(fields),
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )
    return response.status, await response.text()


def test_device_and_service_logins(db_url: str) -> None:
    async def scenario(client: Client, storage: Storage, did: str) -> None:
        def login(username: str, password: str, client_id: str | None = None) -> dict[str, str]:
            fields = {"username": username, "password": password, "vhost": "/"}
            return fields if client_id is None else {**fields, "client_id": client_id}

        assert await ask(client, "user", login(did, "PASS1", did)) == (200, "allow")
        assert await ask(client, "user", login(did, "PASS2", did)) == (200, "deny")
        assert await ask(client, "user", login(did, "PASS1", "someone-else")) == (200, "deny")  # no takeover
        assert await ask(client, "user", login(did, "PASS1")) == (200, "deny")  # devices come over MQTT
        assert await ask(client, "user", login(did, "", did)) == (200, "deny")
        assert await ask(client, "user", login("x" * 22, "PASS1", "x" * 22)) == (200, "deny")  # no such device
        assert await ask(client, "user", login("no/such#", "PASS1", "no/such#")) == (200, "deny")
        assert await ask(client, "user", login("gizdev-cloud", SERVICE_PASSWORD)) == (200, "allow")
        assert await ask(client, "user", login("gizdev-cloud", "guess")) == (200, "deny")
        assert await ask(client, "user", login("gizdev-cloud", "")) == (200, "deny")
        # EMQX asks for JSON.
        status, text = await ask(client, "user", login(did, "PASS1", did), Accept="application/json")
        assert (status, text) == (200, '{"result": "allow"}')
        raw = await client.post(  # %ff is not UTF-8: read as U+FFFD, which is no one
            "/broker/auth/user",
            data=f"username=%ff&password=PASS1&client_id={did}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert (raw.status, await raw.text()) == (200, "deny")
        await storage.disable_device(did)
        assert await ask(client, "user", login(did, "PASS1", did)) == (200, "deny")

    with_cloud(db_url, scenario)


def test_an_encrypted_device_logs_in_with_its_own_mqtt_password(db_url: str) -> None:
    async def scenario(client: Client, storage: Storage, did: str) -> None:
        registration = await storage.register_device(
            "001122334455", PK, "PASS2", encrypted=True, mqtt_password_hash=hash_password("its-mqtt-password")
        )
        sealed = registration.device.did
        login = {"username": sealed, "client_id": sealed}
        assert await ask(client, "user", {**login, "password": "its-mqtt-password"}) == (200, "allow")
        assert await ask(client, "user", {**login, "password": "PASS2"}) == (200, "deny")  # not the passcode

    with_cloud(db_url, scenario)


def test_password_guessing_is_throttled(db_url: str) -> None:
    async def scenario(client: Client, storage: Storage, did: str) -> None:
        right = {"username": did, "password": "PASS1", "client_id": did}
        for guess in range(AbuseLimits().mqtt_logins_per_device.count):
            assert await ask(client, "user", {**right, "password": f"GUESS{guess}"}) == (200, "deny")
        assert await ask(client, "user", right) == (200, "deny")  # the window is not over
        # The service login is not counted against (its password is long and random).
        service = {"username": "gizdev-cloud", "password": SERVICE_PASSWORD}
        assert await ask(client, "user", service) == (200, "allow")

    with_cloud(db_url, scenario)


def test_vhost_and_resources(db_url: str) -> None:
    async def scenario(client: Client, storage: Storage, did: str) -> None:
        def resource(user: str, kind: str, name: str, permission: str, vhost: str = "/") -> dict[str, str]:
            return {"username": user, "vhost": vhost, "resource": kind, "name": name, "permission": permission}

        assert await ask(client, "vhost", {"username": did, "vhost": "/", "ip": "127.0.0.1"}) == (200, "allow")
        assert await ask(client, "vhost", {"username": did, "vhost": "other"}) == (200, "deny")
        allowed = [
            resource(did, "queue", f"mqtt-subscription-{did}qos0", "configure"),
            resource(did, "queue", f"mqtt-subscription-{did}qos1", "read"),
            resource(did, "exchange", "amq.topic", "write"),
            resource(did, "exchange", "amq.topic", "read"),
            resource("gizdev-cloud", "queue", "gizdev.devices", "configure"),
            resource("gizdev-cloud", "exchange", "amq.rabbitmq.event", "read"),
        ]
        denied = [
            resource(did, "queue", "mqtt-subscription-OTHERqos0", "read"),
            resource(did, "queue", "gizdev.devices", "read"),
            resource(did, "exchange", "amq.rabbitmq.event", "read"),
            resource(did, "exchange", "amq.direct", "write"),
            resource(did, "exchange", "amq.topic", "configure"),
            resource(did, "queue", f"mqtt-subscription-{did}qos0", "read", vhost="other"),
            resource(did, "topic", "amq.topic", "write"),
            resource("gizdev-cloud", "queue", "other.queue", "read"),
            resource("gizdev-cloud", "exchange", "amq.rabbitmq.event", "write"),
            resource(did, "queue", f"mqtt-subscription-{did}qos0", "delete"),
        ]
        for fields in allowed:
            assert await ask(client, "resource", fields) == (200, "allow"), fields
        for fields in denied:
            assert await ask(client, "resource", fields) == (200, "deny"), fields

    with_cloud(db_url, scenario)


def test_topics(db_url: str) -> None:
    async def scenario(client: Client, storage: Storage, did: str) -> None:
        def topic(user: str, permission: str, key: str, exchange: str = "amq.topic") -> dict[str, str]:
            fields = {"username": user, "vhost": "/", "resource": "topic", "name": exchange, "permission": permission}
            return {**fields, "routing_key": key}

        allowed = [
            topic(did, "write", f"dev2app.{did}"),
            topic(did, "write", "cli2ser_req"),
            topic(did, "read", f"app2dev.{did}.#"),
            topic(did, "read", f"ser2cli_res.{did}"),
            topic(did, "read", f"ser2cli_noti.{PK}"),  # its product's, from the storage
            topic(did, "subscribe", f"app2dev/{did}/#"),  # EMQX: its action, the MQTT topic
            topic(did, "publish", f"dev2app/{did}"),
            topic("gizdev-cloud", "read", "dev2app.#"),
            topic("gizdev-cloud", "write", f"app2dev.{did}.usr1"),
            topic("gizdev-cloud", "read", "connection.created", exchange="amq.rabbitmq.event"),
        ]
        denied = [
            topic(did, "write", "dev2app.OTHERDEVICE0000000000"),
            topic(did, "read", "app2dev.*.#"),
            topic(did, "read", "#"),
            topic(did, "read", f"ser2cli_noti.{OTHER_PK}"),
            topic(did, "write", f"app2dev.{did}.x"),
            topic(did, "write", f"dev2app.{did}", exchange="amq.direct"),
            topic(did, "configure", f"dev2app.{did}"),
            topic("gizdev-cloud", "write", "dev2app.x"),
            topic("gizdev-cloud", "write", "connection.created", exchange="amq.rabbitmq.event"),
            topic("gizdev-cloud", "read", "queue.created", exchange="amq.rabbitmq.event"),
            topic("x" * 22, "read", f"ser2cli_noti.{PK}"),  # not a device
        ]
        for fields in allowed:
            assert await ask(client, "topic", fields) == (200, "allow"), fields
        for fields in denied:
            assert await ask(client, "topic", fields) == (200, "deny"), fields

    with_cloud(db_url, scenario)


@pytest.mark.parametrize(
    "access",
    [{"peers": (ipaddress.ip_network("10.0.0.0/8"),)}, {"enabled": False}],
    ids=["another-network", "not-configured"],
)
def test_only_the_configured_brokers_may_ask(db_url: str, access: dict[str, Any]) -> None:
    async def scenario(client: Client, storage: Storage, did: str) -> None:
        login = {"username": "gizdev-cloud", "password": SERVICE_PASSWORD}
        assert await ask(client, "user", login) == (403, "deny")  # asked from 127.0.0.1
        assert await ask(client, "user", {"username": did, "password": "PASS1", "client_id": did}) == (403, "deny")

    with_cloud(db_url, scenario, **access)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"password=x", "username"),  # a required field missing
        (b"username=a&username=b&password=x", "twice"),
        ("username=é&password=x".encode(), ""),  # not ASCII form encoding
        (b"username=" + b"a" * 300 + b"&password=x", "username"),
        (b"username=a%00b&password=x", "NUL"),
        (b"username=a&password=" + b"p" * 70000, "bytes"),  # over the body limit
        (b"&&&===", ""),
        (b"\x00\x01\x02", ""),
    ],
)
def test_hostile_forms_are_9015(db_url: str, body: bytes, why: str) -> None:
    async def scenario(client: Client, storage: Storage, did: str) -> None:
        response = await client.post(
            "/broker/auth/user", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status == 400
        answer = await response.json()
        assert answer["error_code"] == 9015 and why in answer["detail_message"], answer

    with_cloud(db_url, scenario)


def test_get_is_refused_with_the_gizwits_body(db_url: str) -> None:
    """RabbitMQ's default method is GET (credentials in URLs and logs): configured for POST only."""

    async def scenario(client: Client, storage: Storage, did: str) -> None:
        response = await client.get("/broker/auth/user", params={"username": did, "password": "PASS1"})
        assert response.status == 405 and (await response.json())["error_code"] == 9015

    with_cloud(db_url, scenario)
