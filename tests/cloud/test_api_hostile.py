"""Every Open API endpoint of the slice against malformed, missing, oversized and hostile input.

Each refusal must carry the code of cloud protocol §3.12 with that row's HTTP status, never 9008/500, and must
leave nothing behind: no user, no binding, no command on the device's MQTT topic.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gizdev.cloud.errors import ERROR_TABLE
from gizdev.cloud.http.context import SESSION_CACHE_S
from gizdev.cloud.security import new_product_secret, token_digest, verify_password
from gizdev.cloud.storage import Storage
from tests.cloud.server_fixtures import FAST_KDF, TEMP_HUMI_SCHEMA, CloudThread, Reply
from tests.cloud.test_open_api_seed import (
    ALL_TYPES_PK,
    ALL_TYPES_SCHEMA,
    GOKIT_PK,
    GOKIT_SCHEMA,
    api,
    assert_error,
    assert_silent,
    bind,
    frame_0090,
    new_user,
    next_command,
    online_device,
    register,
)
from tests.guards import run
from tests.guards import run as guarded_run

PK = TEMP_HUMI_SCHEMA["product_key"]
BARE_PK = "ba7eba7eba7eba7eba7eba7eba7eba7e"  # a product registered without a datapoint schema
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class World:
    appid: str
    token: str
    uid: str
    did: str  # TEMP_HUMI device, bound to the user, passcode PASS1
    typed: str  # ALL_TYPES device, bound, passcode TYPED1
    unbound: str  # TEMP_HUMI device nobody bound, passcode PASS2


def make_world(cloud: CloudThread) -> World:
    appid = cloud.add_app()
    cloud.add_product()
    cloud.add_product(ALL_TYPES_SCHEMA)
    did = register(cloud, "AABBCCDDEE01", "PASS1")
    typed = register(cloud, "AABBCCDDEE02", "TYPED1", ALL_TYPES_PK)
    unbound = register(cloud, "AABBCCDDEE03", "PASS2")
    created = cloud.api("POST", "/app/users", {"username": "bob", "password": "123456"}, appid=appid)
    assert created.status == 201, created
    token = created.body["token"]
    bind(cloud, appid, token, did, "PASS1")
    bind(cloud, appid, token, typed, "TYPED1")
    return World(appid, token, created.body["uid"], did, typed, unbound)


def raw_request(
    cloud: CloudThread, method: str, path: str, body: bytes | None, appid: str | None, *, token: str | None = None
) -> Reply:
    headers = dict(JSON_HEADERS)
    if appid is not None:
        headers["X-Gizwits-Application-Id"] = appid
    if token is not None:
        headers["X-Gizwits-User-token"] = token
    return cloud.request(method, path, body, headers)


def assert_refused(reply: Reply, code: int) -> None:
    """The table's HTTP status for ``code`` (§3.12), from the table in the spec, written out here."""
    assert_error(reply, code, SPEC_STATUS[code])


# HTTP status per code, cloud protocol §3.12 (D-oa-zh-old column).
SPEC_STATUS = {
    9002: 400,
    9003: 400,
    9004: 400,
    9014: 404,
    9015: 400,
    9016: 400,
    9017: 401,
    9019: 400,
    9020: 400,
    9023: 400,
    9025: 400,
    9026: 400,
    9029: 400,
    9042: 400,
    9048: 400,
}


def bindings_of(cloud: CloudThread, world: World, token: str | None = None) -> list[str]:
    reply = cloud.api("GET", "/app/bindings?show_disabled=1", appid=world.appid, token=token or world.token)
    assert reply.status == 200, reply
    return sorted(item["did"] for item in reply.body["devices"])


def endpoints(world: World) -> list[tuple[str, str, Any]]:
    """(method, path, a valid body) of every Open API endpoint of the slice."""
    return [
        ("POST", "/app/users", {"phone_id": "hostile"}),
        ("POST", "/app/login", {"username": "bob", "password": "123456"}),
        ("GET", "/app/users", None),
        ("GET", "/app/bindings", None),
        ("POST", "/app/bindings", {"devices": [{"did": world.did, "passcode": "PASS1"}]}),
        ("DELETE", "/app/bindings", {"devices": [{"did": world.unbound}]}),
        ("PUT", f"/app/bindings/{world.did}", {"remark": "hostile"}),
        ("POST", f"/app/control/{world.did}", {"attrs": {"temp": 1}}),
        ("GET", f"/app/devdata/{world.did}/latest", None),
        ("GET", f"/app/datapoint?product_key={PK}", None),
    ]


JSON_ENDPOINTS = ("/app/users", "/app/login", "/app/bindings", "/app/control/")


# -- who is calling: 9003 and 9004 ----------------------------------------------------------------------------


def test_every_endpoint_checks_the_app_id(cloud: CloudThread) -> None:
    world = make_world(cloud)
    other_app = cloud.add_app()
    bad_ids = [
        None,  # missing
        "",
        "0123456789abcdef0123456789abcdef",  # well-formed, unknown
        "x" * 5000,  # oversized
        "' OR '1'='1",
        "é-not-ascii",
        world.token,  # a token is not an app id
    ]
    for method, path, body in endpoints(world):
        payload = None if body is None else json.dumps(body).encode()
        for appid in bad_ids:
            assert_refused(raw_request(cloud, method, path, payload, appid, token=world.token), 9003)
    # A token issued for this app is not valid with another app's id.
    for method, path, body in endpoints(world):
        payload = None if body is None else json.dumps(body).encode()
        reply = raw_request(cloud, method, path, payload, other_app, token=world.token)
        if path == "/app/login":
            assert_refused(reply, 9020)  # bob is a user of world.appid only
        elif path.startswith(("/app/bindings", "/app/control", "/app/devdata")) or (method, path) == (
            "GET",
            "/app/users",
        ):
            assert_refused(reply, 9004)
    # The refused calls bound and unbound nothing.
    assert bindings_of(cloud, world) == sorted([world.did, world.typed])


def test_every_user_endpoint_checks_the_token(cloud: CloudThread) -> None:
    world = make_world(cloud)
    # An expired token: issued (stored) with an expiry in the past.
    expired = "e" * 32
    cloud.call(cloud.storage.store_token(token_digest(expired), world.uid, world.appid, int(time.time()) - 5))
    other_app = cloud.add_app()
    foreign = new_user(cloud, other_app)  # valid, but for another application
    bad_tokens = [None, "", "0" * 32, world.token[:-1], world.token + "0", "t" * 5000, expired, foreign, "ü" * 10]
    user_endpoints = [(m, p, b) for m, p, b in endpoints(world) if not p.startswith(("/app/login", "/app/datapoint"))]
    user_endpoints = [(m, p, b) for m, p, b in user_endpoints if (m, p) != ("POST", "/app/users")]
    for method, path, body in user_endpoints:
        payload = None if body is None else json.dumps(body).encode()
        for token in bad_tokens:
            if token is None and "devdata" in path:
                continue  # latest data is served with the app id alone (§3.8)
            assert_refused(raw_request(cloud, method, path, payload, world.appid, token=token), 9004)
    # The refused DELETE did not unbind anything, the refused POSTs bound nothing.
    assert bindings_of(cloud, world) == sorted([world.did, world.typed])


# -- bodies: 9015 -------------------------------------------------------------------------------------------------

MALFORMED_BODIES = [
    b"",
    b"   ",
    b"{",
    b"hello",
    b"[]",
    b'"a string"',
    b"42",
    b"null",
    b"true",
    b'{"phone_id": NaN}',
    b'{"phone_id": Infinity}',
    b'{"phone_id": -Infinity}',
    b"\xff\xfe{\x00}\x00",  # UTF-16
    b'{"phone_id": "\xc3\x28"}',  # not UTF-8
    b"\x00",
    b'{"phone_id": "a\\u0000b"}',  # NUL inside a string
    b'{"username": "a\\u0000", "password": "1234567"}',
    b'{"phone_id": "\\ud800"}',  # a lone surrogate
    b"[" * 100_000,  # deeper than any parser's recursion
    b'{"a":' * 40 + b"1" + b"}" * 40,  # valid JSON, nested beyond the cap
    b'{"phone_id": 1' + b"0" * 5000 + b"}",  # an integer beyond Python's int parsing limit
    b'{"phone_id": 123}',
    b'{"phone_id": ["apiary"]}',
    b'{"phone_id": {"x": 1}}',
    b'{"phone_id": null, "username": null}',
]


def test_malformed_bodies_are_form_invalid_everywhere(cloud: CloudThread) -> None:
    world = make_world(cloud)
    paths = ["/app/users", "/app/login", "/app/bindings", f"/app/control/{world.did}"]
    for path in paths:
        for body in MALFORMED_BODIES:
            assert_refused(raw_request(cloud, "POST", path, body, world.appid, token=world.token), 9015)
    for body in MALFORMED_BODIES:
        assert_refused(raw_request(cloud, "DELETE", "/app/bindings", body, world.appid, token=world.token), 9015)
    assert bindings_of(cloud, world) == sorted([world.did, world.typed])


def test_bodies_over_the_cap_are_form_invalid(cloud: CloudThread) -> None:
    world = make_world(cloud)
    huge = b'{"phone_id": "' + b"a" * (1024 * 1024) + b'"}'  # 1 MiB, far above the 64 KiB cap
    for path in ("/app/users", "/app/login", "/app/bindings", f"/app/control/{world.did}"):
        assert_refused(raw_request(cloud, "POST", path, huge, world.appid, token=world.token), 9015)
    # The server survives: the next request is answered normally.
    assert cloud.api("POST", "/app/users", {"phone_id": "after"}, appid=world.appid).status == 201


# -- users and login ------------------------------------------------------------------------------------------


def test_refused_sign_ups_leave_no_user(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    refused: list[tuple[dict[str, Any], int]] = [
        ({"username": "carol"}, 9015),  # no password
        ({"password": "123456"}, 9015),  # no username
        ({"username": "carol", "password": "12345"}, 9015),  # below the 6-character policy
        ({"username": "carol", "password": "1" * 10_000}, 9015),
        ({"username": "carol", "password": 123456}, 9015),
        ({"username": "carol", "password": None}, 9015),
        ({"username": "", "password": "123456"}, 9015),
        ({"username": "c" * 5000, "password": "123456"}, 9015),
        ({"username": ["carol"], "password": "123456"}, 9015),
        ({"username": "carol", "password": "123456", "phone_id": "p"}, 9015),
        ({"phone_id": ""}, 9015),
        ({"phone_id": "p" * 5000}, 9015),
        ({"email": "carol-at-example.com", "password": "123456"}, 9015),  # not an address
        ({"email": "carol@example.com", "password": "12345"}, 9015),  # below the policy
        ({"phone": "13288302230", "password": "123456"}, 9015),  # no code
        ({"authData": {"src": "qq", "uid": "1", "token": "t"}}, 9015),  # no provider configured here
        ({"authData": {"src": "wechat", "uid": "1", "token": "t"}}, 9015),  # not a provider this server knows
        ({}, 9015),
    ]
    for body, code in refused:
        assert_refused(cloud.api("POST", "/app/users", body, appid=appid), code)
    # None of them left a user behind: "carol" is still free and no password works for her before sign-up.
    assert_refused(cloud.api("POST", "/app/login", {"username": "carol", "password": "123456"}, appid=appid), 9020)
    assert cloud.api("POST", "/app/users", {"username": "carol", "password": "123456"}, appid=appid).status == 201
    # Taken: 9019, and the first account keeps its password.
    assert_refused(cloud.api("POST", "/app/users", {"username": "carol", "password": "654321"}, appid=appid), 9019)
    assert_refused(cloud.api("POST", "/app/login", {"username": "carol", "password": "654321"}, appid=appid), 9020)
    assert cloud.api("POST", "/app/login", {"username": "carol", "password": "123456"}, appid=appid).status == 200


def test_concurrent_sign_ups_of_one_username_give_one_account(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    replies: list[Reply] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def sign_up(index: int) -> None:
        start.wait(10)
        reply = cloud.api("POST", "/app/users", {"username": "dave", "password": f"secret{index}"}, appid=appid)
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=sign_up, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(reply.status for reply in replies) == [201] + [400] * 5, replies
    for reply in replies:
        if reply.status == 400:
            assert_refused(reply, 9019)
    # Which password won, read from the stored hash (six logins would run into the failed-login limit).
    dave = cloud.call(cloud.storage.find_user(appid, "username", "dave"))
    winners = [index for index in range(6) if verify_password(dave.password_hash, f"secret{index}", FAST_KDF)]
    assert len(winners) == 1
    login = cloud.api("POST", "/app/login", {"username": "dave", "password": f"secret{winners[0]}"}, appid=appid)
    assert login.status == 200 and login.body["uid"] == dave.uid


def test_concurrent_anonymous_sign_ups_of_one_phone_id_give_one_user(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    start = threading.Barrier(6)
    uids: list[str] = []
    lock = threading.Lock()

    def sign_up() -> None:
        start.wait(10)
        reply = cloud.api("POST", "/app/users", {"phone_id": "same-phone"}, appid=appid)
        assert reply.status == 201, reply
        with lock:
            uids.append(reply.body["uid"])

    threads = [threading.Thread(target=sign_up) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(uids) == 6 and len(set(uids)) == 1, uids


def test_unicode_usernames(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    for name in ("鲍勃", "Бob", "👩💻", "o'brien; DROP TABLE users; --", "bob "):
        created = cloud.api("POST", "/app/users", {"username": name, "password": "密码密码密码"}, appid=appid)
        assert created.status == 201, (name, created)
        login = cloud.api("POST", "/app/login", {"username": name, "password": "密码密码密码"}, appid=appid)
        assert login.status == 200 and login.body["uid"] == created.body["uid"], name
        me = cloud.api("GET", "/app/users", appid=appid, token=login.body["token"])
        assert me.body["username"] == name.strip()  # kept trimmed (names.py): "bob " is "bob"
    # Trimmed, the name is the same account; a case variant is another name, never a way into this account.
    padded = cloud.api("POST", "/app/login", {"username": "  bob", "password": "密码密码密码"}, appid=appid)
    assert padded.status == 200, padded
    assert_refused(cloud.api("POST", "/app/login", {"username": "BOB", "password": "密码密码密码"}, appid=appid), 9020)
    assert_refused(cloud.api("POST", "/app/login", {"username": "бob", "password": "密码密码密码"}, appid=appid), 9020)
    # A zero-width joiner (the emoji sequence 👩‍💻) makes names that look alike: refused, nothing created.
    joined = cloud.api("POST", "/app/users", {"username": "👩\u200d💻", "password": "密码密码密码"}, appid=appid)
    assert_refused(joined, 9015)


def test_login_refusals(cloud: CloudThread) -> None:
    world = make_world(cloud)
    anonymous = cloud.api("POST", "/app/users", {"phone_id": "phone-1"}, appid=world.appid)
    assert anonymous.status == 201
    wrong = [
        {"username": "bob", "password": "1234567"},
        {"username": "bob", "password": "12345"},
        {"username": "BOB", "password": "123456"},
        {"username": "nobody", "password": "123456"},
        {"username": "phone-1", "password": "123456"},  # an anonymous user has no password
    ]
    for body in wrong:
        assert_refused(cloud.api("POST", "/app/login", body, appid=world.appid), 9020)
    # bob belongs to world.appid only.
    assert_refused(
        cloud.api("POST", "/app/login", {"username": "bob", "password": "123456"}, appid=cloud.add_app()), 9020
    )
    malformed = [
        {"username": "bob"},
        {"password": "123456"},
        {"username": "bob", "password": ""},
        {"username": "bob", "password": 123456},
        {"username": 1, "password": "123456"},
        {"username": "bob", "password": "x" * 100_000},
    ]
    for login_body in malformed:
        assert_refused(cloud.api("POST", "/app/login", login_body, appid=world.appid), 9015)


# -- bindings -------------------------------------------------------------------------------------------------


def test_binding_list_query_parameters(cloud: CloudThread) -> None:
    world = make_world(cloud)
    for query in (
        "limit=-1",
        "limit=0",
        "limit=abc",
        "limit=1.5",
        "limit=",
        "limit=1e3",
        "limit=%EF%BC%91",  # a full-width digit one
        "limit=99999999999999999999999999",
        "limit=1&limit=2",  # duplicated
        "skip=-5",
        "skip=x",
        "skip=99999999999999999999999999",
        "skip=0&skip=0",
        "show_disabled=2",
        "show_disabled=yes",
        "show_disabled=1&show_disabled=0",
        "limit=%00",
    ):
        assert_refused(cloud.api("GET", f"/app/bindings?{query}", appid=world.appid, token=world.token), 9015)
    # Unknown parameters are ignored; sane ones work.
    reply = cloud.api("GET", "/app/bindings?limit=1&skip=1&foo=bar", appid=world.appid, token=world.token)
    assert reply.status == 200 and len(reply.body["devices"]) == 1


def test_binding_requests_are_all_or_nothing(cloud: CloudThread) -> None:
    world = make_world(cloud)
    carol = new_user(cloud, world.appid, "carol")
    good = {"did": world.unbound, "passcode": "PASS2"}
    refused = [
        {},
        {"devices": None},
        {"devices": "x"},
        {"devices": []},
        {"devices": {"did": world.unbound}},
        {"devices": [good, "not an object"]},
        {"devices": [good, {"did": world.did}]},  # second entry lacks its passcode
        {"devices": [good, {"did": world.did, "passcode": 5}]},
        {"devices": [good, {"did": 5, "passcode": "PASS1"}]},
        {"devices": [good, {"did": world.did, "passcode": "PASS1", "remark": "r" * 10_000}]},
        {"devices": [good, {"did": world.did, "passcode": "PASS1", "remark": "a\u0000b"}]},
        {"devices": [good, {"did": "d" * 5000, "passcode": "PASS1"}]},
        {"devices": [good] * 5000},  # more entries than one call may carry
    ]
    for body in refused:
        assert_refused(cloud.api("POST", "/app/bindings", body, appid=world.appid, token=carol), 9015)
    assert bindings_of(cloud, world, carol) == []
    # Wrong passcodes, unknown or hostile DIDs fail one by one (the seed's success/failed shape).
    mixed = {
        "devices": [
            good,
            {"did": world.did, "passcode": "WRONG"},
            {"did": world.did, "passcode": "pass1"},  # case matters
            {"did": "A" * 22, "passcode": "PASS1"},
            {"did": "' OR 1=1 --", "passcode": "x"},
            {"did": "../../etc/passwd", "passcode": "PASS1"},
        ]
    }
    reply = cloud.api("POST", "/app/bindings", mixed, appid=world.appid, token=carol)
    assert reply.status == 200, reply
    assert reply.body == {"success": [world.unbound], "failed": [e["did"] for e in mixed["devices"][1:]]}
    assert bindings_of(cloud, world, carol) == [world.unbound]


def test_unbinding_refusals(cloud: CloudThread) -> None:
    world = make_world(cloud)
    body: dict[str, Any]
    for body in (
        {},
        {"devices": []},
        {"devices": [{"did": world.did}, {"passcode": "PASS1"}]},
        {"devices": [{"did": world.did}, {"did": None}]},
        {"devices": [{"did": world.did}, 7]},
    ):
        assert_refused(cloud.api("DELETE", "/app/bindings", body, appid=world.appid, token=world.token), 9015)
    assert bindings_of(cloud, world) == sorted([world.did, world.typed])
    # Another user cannot unbind bob's devices: theirs fail, bob keeps them.
    carol = new_user(cloud, world.appid, "carol")
    reply = cloud.api("DELETE", "/app/bindings", {"devices": [{"did": world.did}]}, appid=world.appid, token=carol)
    assert reply.status == 200 and reply.body == {"success": [], "failed": [world.did]}
    assert bindings_of(cloud, world) == sorted([world.did, world.typed])


# -- control --------------------------------------------------------------------------------------------------


def test_control_refusals_by_code(cloud: CloudThread) -> None:
    world = make_world(cloud)
    cloud.call(cloud.storage.add_product(BARE_PK, new_product_secret(), "no datapoints", None))
    cloud.call(cloud.storage.link_app_product(world.appid, BARE_PK))
    cloud.forget_cached_apps()
    bare = register(cloud, "AABBCCDDEE04", "BARE1", BARE_PK)
    bind(cloud, world.appid, world.token, bare, "BARE1")

    def control(did: str, body: Any, token: str | None = None) -> Reply:
        return cloud.api("POST", f"/app/control/{did}", body, appid=world.appid, token=token or world.token)

    for did in ("A" * 22, "short", "x" * 500, "%00", "..%2F..%2Fapp%2Fusers", "%F0%9F%92%A5" * 3):
        assert_refused(control(did, {"attrs": {"temp": 1}}), 9014)
    assert_refused(control(world.unbound, {"attrs": {"temp": 1}}), 9017)
    assert_refused(control(world.did, {"attrs": {"temp": 1}}, new_user(cloud, world.appid, "eve")), 9017)
    assert_refused(control(bare, {"attrs": {"temp": 1}}), 9029)
    assert_refused(control(world.did, {"attrs": {"temp": 1}}), 9042)  # bound, valid, but not connected
    assert_refused(control(bare, {"raw": [1, 2, 3]}), 9042)  # raw needs no schema, but the device is offline
    body: dict[str, Any]
    for body in (
        {},
        {"attr": {"temp": 1}},
        {"attrs": []},
        {"attrs": {}},
        {"attrs": "temp=1"},
        {"raw": []},
        {"raw": [256]},
        {"raw": [-1]},
        {"raw": [1.0]},
        {"raw": [True]},
        {"raw": ["1"]},
        {"raw": [0] * 5000},
        {"raw": "00010203"},  # a string needs binary_coding
        {"raw": [1], "binary_coding": "hex"},
        {"raw": "abc", "binary_coding": "hex"},
        {"raw": "zz", "binary_coding": "hex"},
        {"raw": "", "binary_coding": "hex"},
        {"raw": "!!!!", "binary_coding": "base64"},
        {"raw": "AAE", "binary_coding": "base64"},
        {"raw": "00", "binary_coding": "rot13"},
        {"raw": "00" * 10_000, "binary_coding": "hex"},
    ):
        assert_refused(control(world.did, body), 9015)
    # A device disabled (it de-registered, §1.2 DELETE) answers 9023.
    assert cloud.form("DELETE", "/dev/devices", f"did={world.did}&passcode=PASS1").status == 200
    assert_refused(control(world.did, {"attrs": {"temp": 1}}), 9023)


BAD_ATTRS: list[dict[str, Any]] = [
    {"reading": 5},  # read-only
    {"nosuch": 1},  # unknown name
    {"": 1},
    {"sw": "yes"},  # wrong types
    {"sw": None},
    {"sw": 2},
    {"sw": [True]},
    {"mode": "ultra"},
    {"mode": ""},
    {"mode": "HIGH"},
    {"mode": 3},  # no fourth member
    {"level": "10"},
    {"level": True},
    {"level": None},
    {"level": 491},  # out of range: -10..490
    {"level": -10.5},
    {"level": 100.25},  # off the 0.5 grid
    {"level": 1e308},
    {"count": -1},
    {"count": 4_000_000_001},
    {"count": 10**30},
    {"count": 1.5},
    {"blob": "dead"},  # binary: the full 4 bytes are required
    {"blob": "deadbeef00"},
    {"blob": "zzzzzzzz"},
    {"blob": "deadbee"},
    {"blob": ""},
    {"blob": [222, 173, 190, 239]},
    {"blob": 3735928559},
    {"sw": True, "level": 100.25},  # one bad value among good ones
    {"sw": True, "mode": "low", "level": 0, "count": 1, "blob": "0000000"},
]


def test_bad_attrs_publish_nothing(cloud: CloudThread) -> None:
    world = make_world(cloud)

    async def scenario() -> None:
        device = await online_device(cloud, world.typed, "TYPED1")
        for attrs in BAD_ATTRS:
            reply = await api(
                cloud, "POST", f"/app/control/{world.typed}", {"attrs": attrs}, appid=world.appid, token=world.token
            )
            assert_refused(reply, 9025)
        # Good attrs with bad raw, bad attrs with good raw: refused as a whole.
        both = [({"attrs": {"sw": True}, "raw": [256]}, 9015), ({"attrs": {"reading": 1}, "raw": [1, 2]}, 9025)]
        for body, code in both:
            reply = await api(cloud, "POST", f"/app/control/{world.typed}", body, appid=world.appid, token=world.token)
            assert_refused(reply, code)
        await assert_silent(device)
        # The subscriber does receive a good command: the silence above was the server's doing.
        reply = await api(
            cloud, "POST", f"/app/control/{world.typed}", {"attrs": {"sw": True}}, appid=world.appid, token=world.token
        )
        assert reply.status == 200
        assert await next_command(device, world.typed) == frame_0090(bytes.fromhex("0101" + "01" + "00" * 10))
        await device.close()

    run(scenario())


def test_gokit_out_of_range_vectors_are_refused(cloud: CloudThread) -> None:
    """The SDK accepts out-of-range raw bytes (serial §4.2); the Open API must refuse them before encoding."""
    appid = cloud.add_app()
    cloud.add_product(GOKIT_SCHEMA)
    did = register(cloud, "0A0B0C0D0E0F", "GOKITPASS", GOKIT_PK)
    token = new_user(cloud, appid)
    bind(cloud, appid, token, did, "GOKITPASS")
    cases = [
        {"LED_R": 255},
        {"LED_B": 255},
        {"Motor_Speed": 6},
        {"Motor_Speed": -6},
        {"Motor_Speed": 250},
        {"LED_G": -1},
        {"LED_Color": "Red"},
        {"LED_OnOff": "on"},
        {"Infrared": True},
        {"Temperature": 20},
        {"Alert_1": True},
        {"Fault_LED": False},
    ]

    async def scenario() -> None:
        device = await online_device(cloud, did, "GOKITPASS")
        for attrs in cases:
            reply = await api(cloud, "POST", f"/app/control/{did}", {"attrs": attrs}, appid=appid, token=token)
            assert_refused(reply, 9025)
        await assert_silent(device)
        await device.close()

    run(scenario())


# -- device data ----------------------------------------------------------------------------------------------


def test_devdata_and_datapoint_refusals(cloud: CloudThread) -> None:
    world = make_world(cloud)
    cloud.call(cloud.storage.add_product(BARE_PK, new_product_secret(), "no datapoints", None))
    for did in ("A" * 22, "x", "%00", "y" * 1000):
        assert_refused(cloud.api("GET", f"/app/devdata/{did}/latest", appid=world.appid), 9014)
    assert_refused(cloud.api("GET", f"/app/devdata/{world.did}/latest", appid=world.appid, token="nope"), 9004)
    eve = new_user(cloud, world.appid, "eve")
    assert_refused(cloud.api("GET", f"/app/devdata/{world.did}/latest", appid=world.appid, token=eve), 9017)

    def datapoint(query: str) -> Reply:
        return cloud.api("GET", f"/app/datapoint{query}", appid=world.appid)

    assert_refused(datapoint(""), 9015)
    assert_refused(datapoint("?product_key="), 9015)
    for key in ("f" * 32, "' OR 1=1 --", "k" * 256, "\x00", GOKIT_PK):
        assert_refused(datapoint(f"?product_key={quote(key)}"), 9002)
    for key in ("k" * 257, "k" * 10_000):  # past the documented 256 characters: a form error, said so
        refused = datapoint(f"?product_key={key}")
        assert_refused(refused, 9015)
        assert "at most 256 characters" in refused.body["detail_message"]
    # A request line over the server's 16 KiB limit is refused by the HTTP parser itself, before the app: 400.
    assert datapoint(f"?product_key={'k' * 20_000}").status == 400
    assert_refused(datapoint(f"?product_key={BARE_PK}"), 9029)
    duplicated = datapoint(f"?product_key={PK}&product_key={BARE_PK}")
    assert duplicated.status != 500 and duplicated.status in (200, 400), duplicated


# -- property tests: no input makes a 500 -------------------------------------------------------------------

KNOWN_KEYS = [
    "phone_id",
    "username",
    "password",
    "phone",
    "code",
    "old_pwd",
    "new_pwd",
    "name",
    "gender",
    "birthday",
    "authData",
    "devices",
    "did",
    "passcode",
    "remark",
    "attrs",
    "raw",
    "binary_coding",
    "temp",
    "humi",
    "sw",
    "mode",
    "level",
    "count",
    "blob",
    "email",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=15,
)


# Hypothesis runs many examples on one cloud (the fixture is set up once per test): one world per cloud.
WORLDS: weakref.WeakKeyDictionary[CloudThread, World] = weakref.WeakKeyDictionary()


def world_of(cloud: CloudThread) -> World:
    if cloud not in WORLDS:
        WORLDS[cloud] = make_world(cloud)
    return WORLDS[cloud]


def assert_not_a_server_error(reply: Reply) -> None:
    assert reply.status < 500, reply
    if reply.status >= 400:
        assert isinstance(reply.body, dict), reply
        code = reply.body["error_code"]
        assert code != 9008 and ERROR_TABLE[code].http_status == reply.status, reply


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=4) | json_values)
def test_random_json_bodies_never_give_a_server_error(cloud: CloudThread, body: Any) -> None:
    world = world_of(cloud)
    payload = json.dumps(body).encode()
    for method, path in (
        ("POST", "/app/users"),
        ("PUT", "/app/users"),
        ("POST", "/app/login"),
        ("POST", "/app/bindings"),
        ("DELETE", "/app/bindings"),
        ("POST", f"/app/control/{world.typed}"),
    ):
        assert_not_a_server_error(raw_request(cloud, method, path, payload, world.appid, token=world.token))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), query=st.text(max_size=20))
def test_random_bytes_and_queries_never_give_a_server_error(cloud: CloudThread, body: bytes, query: str) -> None:
    world = world_of(cloud)
    for method, path in (
        ("POST", "/app/users"),
        ("POST", "/app/bindings"),
        ("POST", f"/app/control/{world.typed}"),
        ("GET", f"/app/bindings?limit={quote(query)}"),
        ("GET", f"/app/datapoint?product_key={quote(query)}"),
        ("GET", f"/app/devdata/x{quote(query, safe='')}/latest"),
    ):
        assert_not_a_server_error(raw_request(cloud, method, path, body, world.appid, token=world.token))


def test_unknown_paths_and_methods_answer_the_json_error_body(cloud: CloudThread) -> None:
    """Not aiohttp's plain "404: Not Found": every error an app can meet has the Gizwits body."""
    for method, path in (("GET", "/nope"), ("GET", "/app/nope"), ("POST", "/app/users/extra"), ("GET", "/dev/x/y/z")):
        reply = cloud.request(method, path, b"{}" if method == "POST" else None, JSON_HEADERS)
        assert reply.status == 404, reply
        assert reply.body == {
            "error_code": 9015,
            "error_message": "form invalid!",
            "detail_message": f"no API at {method} {path}",
        }
    conn = http.client.HTTPConnection("127.0.0.1", cloud.http_port, timeout=30)
    try:
        conn.request("PATCH", "/app/users", body=b"{}", headers=JSON_HEADERS)
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 405
    assert response.getheader("Content-Type", "").startswith("application/json")
    allowed = {method.strip() for method in response.getheader("Allow", "").split(",")}
    assert {"GET", "POST", "PUT"} <= allowed and "PATCH" not in allowed  # the header aiohttp sets is kept
    assert body["error_code"] == 9015 and body["error_message"] == "form invalid!"
    assert body["detail_message"].startswith("/app/users does not take PATCH; it takes ")


def test_a_body_of_no_sign_up_variant_names_the_variants(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    reply = cloud.api("POST", "/app/users", {"password": "123456"}, appid=appid)
    assert reply.status == 400
    assert reply.body == {
        "error_code": 9015,
        "error_message": "form invalid!",
        "detail_message": "give exactly one of: phone_id; password + username; email + password; code + password + "
        "phone; code + phone; authData (this body has password)",
    }


def test_a_user_disabled_by_another_process_is_refused_within_a_second(cloud: CloudThread) -> None:
    """The admin CLI is another process: the server's session cache keeps a disabled user's token alive for at
    most SESSION_CACHE_S."""
    appid = cloud.add_app()
    token = new_user(cloud, appid)
    uid = cloud.api("GET", "/app/users", appid=appid, token=token).body["uid"]  # a request like any other first
    database = cloud.server.config.database
    assert database is not None

    async def disable() -> None:
        storage = await Storage.open(database, create=False)  # its own engine and connections, as the CLI has
        try:
            await storage.set_user_disabled(uid, True)
        finally:
            await storage.close()

    guarded_run(disable())
    time.sleep(SESSION_CACHE_S + 0.1)
    assert_refused(cloud.api("GET", "/app/users", appid=appid, token=token), 9004)
    assert_refused(cloud.api("POST", "/app/login", {"username": "bob", "password": "123456"}, appid=appid), 9026)
