"""Every request example of the Open API slice in the user's seed document (``shared/spec/open-api-seed.txt``),
sent the way its curl lines send it, answered the way the document shows; and control of every data type.

Expected 0x0090 frames are written out by hand from cloud protocol §1.6 (envelope) and serial protocol §4.3-§4.5
(P0 layout), or taken from the vendor MCU SDK's GoKit write vectors (``tests/data/vectors``): never from our encoder.
The helpers at the top are shared by the other Open API test modules of this folder.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, CloudThread, Reply
from tests.conftest import REPO_ROOT, load_vectors
from tests.guards import run

PK = TEMP_HUMI_SCHEMA["product_key"]
GOKIT_SCHEMA: dict[str, Any] = json.loads((REPO_ROOT / "protocols" / "gokit.json").read_text())
GOKIT_PK: str = GOKIT_SCHEMA["product_key"]
CONNACK_OK = bytes.fromhex("20020000")
SEED_DID = "gdGn7PzAYf4VrhnVag5x8D"  # the vendor's example DID in the seed; ours replace it
APPID_PLACEHOLDER = "{appid}"

# A product with every data type the Open API controls (§3.10: bool, enum label, scaled numbers, binary hex of
# full length), for the types GoKit lacks: uint16 with a fractional ratio and an offset, uint32, binary.
ALL_TYPES_SCHEMA: dict[str, Any] = {
    "name": "all-types",
    "product_key": "a11a11a11a11a11a11a11a11a11a11a1",
    "protocolType": "standard",
    "packetVersion": "0x00000004",
    "entities": [
        {
            "id": 0,
            "name": "entity0",
            "display_name": "device",
            "attrs": [
                {
                    "id": 0,
                    "name": "sw",
                    "display_name": "switch",
                    "type": "status_writable",
                    "data_type": "bool",
                    "position": {"byte_offset": 0, "bit_offset": 0, "len": 1, "unit": "bit"},
                    "desc": "",
                },
                {
                    "id": 1,
                    "name": "mode",
                    "display_name": "mode",
                    "type": "status_writable",
                    "data_type": "enum",
                    "enum": ["low", "mid", "high"],
                    "position": {"byte_offset": 0, "bit_offset": 1, "len": 2, "unit": "bit"},
                    "desc": "",
                },
                {
                    "id": 2,
                    "name": "level",
                    "display_name": "level",
                    "type": "status_writable",
                    "data_type": "uint16",
                    "position": {"byte_offset": 1, "bit_offset": 0, "len": 2, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 1000, "ratio": 0.5, "addition": -10},
                    "desc": "",
                },
                {
                    "id": 3,
                    "name": "count",
                    "display_name": "count",
                    "type": "status_writable",
                    "data_type": "uint32",
                    "position": {"byte_offset": 3, "bit_offset": 0, "len": 4, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 4000000000, "ratio": 1, "addition": 0},
                    "desc": "",
                },
                {
                    "id": 4,
                    "name": "blob",
                    "display_name": "blob",
                    "type": "status_writable",
                    "data_type": "binary",
                    "position": {"byte_offset": 7, "bit_offset": 0, "len": 4, "unit": "byte"},
                    "desc": "",
                },
                {
                    "id": 5,
                    "name": "reading",
                    "display_name": "reading",
                    "type": "status_readonly",
                    "data_type": "uint8",
                    "position": {"byte_offset": 11, "bit_offset": 0, "len": 1, "unit": "byte"},
                    "uint_spec": {"min": 0, "max": 100, "ratio": 1, "addition": 0},
                    "desc": "",
                },
            ],
        }
    ],
}
ALL_TYPES_PK: str = ALL_TYPES_SCHEMA["product_key"]


# -- helpers shared by the Open API tests ---------------------------------------------------------------------


def frame_0090(p0: bytes) -> bytes:
    """The business frame of §1.6 around ``p0``, by hand: ``00 00 00 03``, len (one byte below 128), flag 0,
    cmd ``00 90``, P0."""
    assert len(p0) + 3 < 128
    return bytes.fromhex("00000003") + bytes([len(p0) + 3, 0x00, 0x00, 0x90]) + p0


def curl(
    cloud: CloudThread,
    method: str,
    path: str,
    *,
    appid: str | None,
    token: str | None = None,
    body: str | None = None,
) -> Reply:
    """A request as the seed's curl lines send it: their headers, in their order, and the body text verbatim."""
    headers = {"User-Agent": "curl/8.5.0", "Accept": "*/*", "Content-Type": "application/json"}
    if appid is not None:
        headers["X-Gizwits-Application-Id"] = appid
    if token is not None:
        headers["X-Gizwits-User-token"] = token
    return cloud.request(method, path, None if body is None else body.encode(), headers)


def register(cloud: CloudThread, mac: str, passcode: str, pk: str = PK) -> str:
    """Register a device through the device API (§1.2); its DID."""
    reply = cloud.form("POST", "/dev/devices", f"passcode={passcode}&mac={mac}&product_key={pk}")
    assert reply.status == 201, reply
    assert isinstance(reply.body, str) and reply.body.startswith("did=")
    return reply.body[4:]


def new_user(cloud: CloudThread, appid: str, username: str = "bob", password: str = "123456") -> str:
    reply = cloud.api("POST", "/app/users", {"username": username, "password": password}, appid=appid)
    assert reply.status == 201, reply
    token: str = reply.body["token"]
    return token


def bind(cloud: CloudThread, appid: str, token: str, did: str, passcode: str) -> None:
    reply = cloud.api(
        "POST", "/app/bindings", {"devices": [{"did": did, "passcode": passcode}]}, appid=appid, token=token
    )
    assert reply.status == 200 and reply.body == {"success": [did], "failed": []}, reply


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def device_online(cloud: CloudThread, did: str) -> bool:
    return cloud.call(cloud.storage.get_device(did)).is_online


async def online_device(cloud: CloudThread, did: str, passcode: str) -> RawMqtt31:
    """The device on MQTT with its credentials (§1.4), subscribed to its commands, and seen online by the cloud."""
    device = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
    assert await device.connect(did, did, passcode) == CONNACK_OK
    assert await device.subscribe(1, f"app2dev/{did}/#") == bytes.fromhex("90030001") + b"\x00"
    await asyncio.to_thread(wait_for, lambda: device_online(cloud, did), 5.0, f"{did} online")
    return device


async def api(cloud: CloudThread, method: str, path: str, payload: Any = None, **kwargs: Any) -> Reply:
    """``cloud.api`` from a coroutine (the cloud runs on its own loop; this keeps ours free for MQTT)."""
    return await asyncio.to_thread(cloud.api, method, path, payload, **kwargs)


async def next_command(device: RawMqtt31, did: str) -> bytes:
    """The payload of the next command on ``app2dev/<did>/<clientid>`` (clientid: 1-23 characters, GA-h)."""
    topic, payload = await device.read_publish(timeout_s=5.0)
    prefix = f"app2dev/{did}/"
    assert topic.startswith(prefix), topic
    assert 1 <= len(topic) - len(prefix) <= 23, topic
    return payload


async def assert_silent(device: RawMqtt31, seconds: float = 0.4) -> None:
    """Nothing reaches the device within ``seconds``."""
    try:
        packet = await device.read_packet(timeout_s=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"the device received {packet.hex()}")


def assert_error(reply: Reply, code: int, status: int) -> None:
    assert reply.status == status, reply
    assert isinstance(reply.body, dict), reply
    assert reply.body["error_code"] == code, reply
    assert isinstance(reply.body["error_message"], str) and reply.body["error_message"]
    assert set(reply.body) == {"error_code", "error_message", "detail_message"}


# -- users and login (§3.2, §3.4) -----------------------------------------------------------------------------

SEED_ANONYMOUS = '{\n    "phone_id": "apiary"\n}'
SEED_BOB = '{\n    "username": "bob",\n    "password": "123456"\n}'
TOKEN_DAYS_MIN, TOKEN_DAYS_MAX = 7, 180  # §3.1: one week in the old docs, 180 days in the new ones


def assert_token_reply(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply
    assert reply.raw.startswith(b"{")
    body: dict[str, Any] = reply.body
    assert set(body) == {"uid", "token", "expire_at"}
    assert isinstance(body["uid"], str) and body["uid"]
    # ≥ 128 random bits: at least 22 characters of base64 (or 32 of hex).
    assert isinstance(body["token"], str) and len(body["token"]) >= 22
    assert type(body["expire_at"]) is int
    now = time.time()
    assert now + TOKEN_DAYS_MIN * 86400 - 60 <= body["expire_at"] <= now + TOKEN_DAYS_MAX * 86400 + 60
    return body


def test_anonymous_user_as_in_the_seed(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    first = assert_token_reply(curl(cloud, "POST", "/app/users", appid=appid, body=SEED_ANONYMOUS), 201)
    # Calling it again with the same phone_id is the anonymous user's login: same uid, a new token (§3.2, §3.1).
    again = assert_token_reply(curl(cloud, "POST", "/app/users", appid=appid, body=SEED_ANONYMOUS), 201)
    assert again["uid"] == first["uid"] and again["token"] != first["token"]
    for token in (first["token"], again["token"]):  # older tokens stay valid (§3.1)
        me = curl(cloud, "GET", "/app/users", appid=appid, token=token)
        assert me.status == 200 and me.body["uid"] == first["uid"] and me.body["is_anonymous"] is True
    # Another phone_id is another user; the same phone_id in another app is another user too.
    other = cloud.api("POST", "/app/users", {"phone_id": "apiary-2"}, appid=appid)
    assert assert_token_reply(other, 201)["uid"] != first["uid"]
    elsewhere = curl(cloud, "POST", "/app/users", appid=cloud.add_app(), body=SEED_ANONYMOUS)
    assert assert_token_reply(elsewhere, 201)["uid"] != first["uid"]


def test_username_user_login_and_profile_as_in_the_seed(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    created = assert_token_reply(curl(cloud, "POST", "/app/users", appid=appid, body=SEED_BOB), 201)
    login_reply = curl(cloud, "POST", "/app/login", appid=appid, body=SEED_BOB)
    login = assert_token_reply(login_reply, 200)
    assert login["uid"] == created["uid"] and login["token"] != created["token"]
    for token in (created["token"], login["token"]):
        me = curl(cloud, "GET", "/app/users", appid=appid, token=token)
        assert me.status == 200
        assert me.body["uid"] == created["uid"] and me.body["username"] == "bob"
        assert me.body["is_anonymous"] is False
        # §3.3: the profile fields GET /app/users returns.
        fields = {"uid", "username", "phone", "email", "name", "gender", "birthday", "address", "lang", "remark"}
        assert fields | {"is_anonymous"} <= set(me.body)
    # The same username in another application is a different account (users belong to an app).
    other_app = cloud.add_app()
    assert (
        assert_token_reply(curl(cloud, "POST", "/app/users", appid=other_app, body=SEED_BOB), 201)["uid"]
        != (created["uid"])
    )


def test_header_names_are_case_insensitive(cloud: CloudThread) -> None:
    """§3.1: integrations (MQB) send the Gizwits headers in lower case."""
    appid = cloud.add_app()
    created = cloud.request(
        "POST", "/app/users", SEED_BOB.encode(), {"content-type": "application/json", "x-gizwits-application-id": appid}
    )
    token = assert_token_reply(created, 201)["token"]
    for name in ("x-gizwits-user-token", "X-GIZWITS-USER-TOKEN", "X-Gizwits-User-Token"):
        me = cloud.request("GET", "/app/users", None, {"X-GIZWITS-APPLICATION-ID": appid, name: token})
        assert me.status == 200 and me.body["username"] == "bob", (name, me)


# -- bindings (§3.9) ------------------------------------------------------------------------------------------

SEED_BIND = (
    '{\n    "devices": [{\n        "did": "gdGn7PzAYf4VrhnVag5x8D",\n        "passcode": "gokit",\n'
    '        "remark": ""\n    }]\n}'
)
SEED_UNBIND = '{\n    "devices": [{\n        "did": "gdGn7PzAYf4VrhnVag5x8D"\n    }]\n}'
SEED_LIST_QUERY = "/app/bindings?show_disabled=1&limit=20&skip=0"


def test_bindings_as_in_the_seed(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud, "AABBCCDDEEFF", "gokit")
    token = new_user(cloud, appid)

    empty = curl(cloud, "GET", SEED_LIST_QUERY, appid=appid, token=token)
    assert empty.status == 200 and empty.body == {"devices": []}

    bound = curl(cloud, "POST", "/app/bindings", appid=appid, token=token, body=SEED_BIND.replace(SEED_DID, did))
    assert bound.status == 200 and bound.body == {"success": [did], "failed": []}

    listed = curl(cloud, "GET", SEED_LIST_QUERY, appid=appid, token=token)
    assert listed.status == 200 and list(listed.body) == ["devices"]
    [item] = listed.body["devices"]
    expected = {
        "product_key": PK,
        "did": did,
        "is_online": False,
        "passcode": "gokit",
        "host": "127.0.0.1",
        "port": cloud.mqtt_port,
        "remark": "",
        "is_disabled": False,
        "type": "normal",
    }
    assert {key: item[key] for key in expected} == expected
    # JSON types as in the seed (true/false, not 0/1; port a number).
    for key in ("is_online", "is_disabled"):
        assert type(item[key]) is bool
    assert type(item["port"]) is int
    assert item["mac"].lower() == "aabbccddeeff"  # the seed shows bare hex; its case is not specified

    unbound = curl(cloud, "DELETE", "/app/bindings", appid=appid, token=token, body=SEED_UNBIND.replace(SEED_DID, did))
    assert unbound.status == 200 and unbound.body == {"success": [did], "failed": []}
    assert curl(cloud, "GET", SEED_LIST_QUERY, appid=appid, token=token).body == {"devices": []}
    # Unbinding again: the device is no longer bound, so it is reported as failed.
    again = curl(cloud, "DELETE", "/app/bindings", appid=appid, token=token, body=SEED_UNBIND.replace(SEED_DID, did))
    assert again.status == 200 and again.body == {"success": [], "failed": [did]}
    # The vendor's own DID is not a device of this cloud: failed, not an error.
    foreign = curl(cloud, "POST", "/app/bindings", appid=appid, token=token, body=SEED_BIND)
    assert foreign.status == 200 and foreign.body == {"success": [], "failed": [SEED_DID]}


def test_bindings_pages_remarks_and_disabled_devices(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    token = new_user(cloud, appid)
    dids = [register(cloud, f"0000000000{index:02X}", f"PASS{index}") for index in range(5)]
    for index, did in enumerate(dids):
        reply = cloud.api(
            "POST",
            "/app/bindings",
            {"devices": [{"did": did, "passcode": f"PASS{index}", "remark": f"room {index}"}]},
            appid=appid,
            token=token,
        )
        assert reply.body == {"success": [did], "failed": []}

    def page(query: str) -> list[dict[str, Any]]:
        reply = cloud.api("GET", f"/app/bindings?{query}", appid=appid, token=token)
        assert reply.status == 200, reply
        devices: list[dict[str, Any]] = reply.body["devices"]
        return devices

    everything = page("limit=20&skip=0")
    assert sorted(item["did"] for item in everything) == sorted(dids)
    assert {item["did"]: item["remark"] for item in everything} == {did: f"room {i}" for i, did in enumerate(dids)}
    # limit/skip (§3.1: page 2 of 2 = limit=2&skip=2): pages are disjoint and cover the list in its order.
    pages = [page(f"limit=2&skip={skip}") for skip in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [item["did"] for p in pages for item in p] == [item["did"] for item in everything]
    assert page("limit=20&skip=5") == []
    assert len(page("")) == 5  # defaults: limit 20, skip 0

    # A device that de-registered (DELETE /dev/devices) is disabled: hidden unless show_disabled=1 (§3.9).
    gone = cloud.form("DELETE", "/dev/devices", f"did={dids[0]}&passcode=PASS0")
    assert gone.status == 200, gone
    assert dids[0] not in [item["did"] for item in page("limit=20")]
    shown = {item["did"]: item for item in page("show_disabled=1&limit=20&skip=0")}
    assert shown[dids[0]]["is_disabled"] is True
    assert all(shown[did]["is_disabled"] is False for did in dids[1:])


# -- remote control (§3.10) -----------------------------------------------------------------------------------

SEED_CONTROL_TEMP = '{\n    "attrs": {\n        "temp": 10\n    }\n}'
SEED_CONTROL_TEMP_HUMI = '{\n    "attrs": {\n      "temp": 10,\n      "humi": 50\n    }\n}'
SEED_CONTROL_RAW = '{\n    "raw": [0, 1, 2, 3]\n}'


def test_binding_again_updates_the_remark_and_alias(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    token = new_user(cloud, appid)
    did = register(cloud, "0000000000AA", "PASS0")

    def bind_with(**fields: str) -> dict[str, Any]:
        entry = {"did": did, "passcode": "PASS0", **fields}
        reply = cloud.api("POST", "/app/bindings", {"devices": [entry]}, appid=appid, token=token)
        assert reply.body == {"success": [did], "failed": []}, reply
        [item] = cloud.api("GET", "/app/bindings", appid=appid, token=token).body["devices"]
        return {key: item[key] for key in ("remark", "dev_alias")}

    assert bind_with(remark="hall") == {"remark": "hall", "dev_alias": ""}
    assert bind_with(remark="kitchen") == {"remark": "kitchen", "dev_alias": ""}  # not the old "hall"
    assert bind_with(dev_alias="lamp") == {"remark": "kitchen", "dev_alias": "lamp"}  # what is not sent stays
    assert bind_with() == {"remark": "kitchen", "dev_alias": "lamp"}
    assert bind_with(remark="", dev_alias="desk") == {"remark": "", "dev_alias": "desk"}


def test_control_as_in_the_seed(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud, "AABBCCDDEEFF", "gokit")
    token = new_user(cloud, appid)
    bind(cloud, appid, token, did, "gokit")

    async def scenario() -> None:
        device = await online_device(cloud, did, "gokit")
        # TEMP_HUMI: temp = writable id 0 (flag 0x01, byte 0), humi = writable id 1 (flag 0x02, byte 1), ratio 1.
        cases = [
            (SEED_CONTROL_TEMP, bytes.fromhex("01" + "01" + "0a00")),  # humi unflagged: 0 (serial §4.5)
            (SEED_CONTROL_TEMP_HUMI, bytes.fromhex("01" + "03" + "0a32")),
            (SEED_CONTROL_RAW, bytes.fromhex("00010203")),  # raw = the P0 as given (§3.10)
        ]
        for body, p0 in cases:
            reply = await asyncio.to_thread(
                curl, cloud, "POST", f"/app/control/{did}", appid=appid, token=token, body=body
            )
            assert reply.status == 200 and reply.body == {} and reply.raw.strip() == b"{}", reply
            assert await next_command(device, did) == frame_0090(p0)
        # raw with binary_coding (§3.10): the same P0 as hex and as base64.
        for coded in ({"raw": "00010203", "binary_coding": "hex"}, {"raw": "AAECAw==", "binary_coding": "base64"}):
            reply = await api(cloud, "POST", f"/app/control/{did}", coded, appid=appid, token=token)
            assert reply.status == 200 and reply.body == {}, reply
            assert await next_command(device, did) == frame_0090(bytes.fromhex("00010203"))
        await device.close()

    run(scenario())


def test_control_of_every_gokit_type_matches_the_sdk_write_vectors(cloud: CloudThread) -> None:
    """Each in-range GoKit write vector of the vendor SDK, sent as Open API attrs, gives that vector's P0.

    The vector's values use the enum index; the Open API takes the label (§3.10). Unflagged positions of a
    vector hold whatever the SDK's test fed in; ours are zero (serial §4.5), so they are masked out of the
    expectation, as are attr_flags bits 6-7 (no datapoint).
    """
    appid = cloud.add_app()
    cloud.add_product(GOKIT_SCHEMA)
    did = register(cloud, "0A0B0C0D0E0F", "GOKITPASS", GOKIT_PK)
    token = new_user(cloud, appid)
    bind(cloud, appid, token, did, "GOKITPASS")
    attrs = {attr["name"]: attr for attr in GOKIT_SCHEMA["entities"][0]["attrs"]}
    writable = [name for name, attr in attrs.items() if attr["type"] == "status_writable"]
    bit_masks = {"LED_OnOff": 0x01, "LED_Color": 0x06}  # byte 0: bit 0, bits 1-2 (gokit.json positions)
    byte_index = {"LED_R": 1, "LED_G": 2, "LED_B": 3, "Motor_Speed": 4}
    vectors = [v for v in load_vectors("gokit") if v["kind"] == "write" and not v["out_of_range"] and v["values"]]
    assert len(vectors) >= 40

    def expected_p0(vector: dict[str, Any]) -> bytes:
        flags = vector["attr_flags"] & 0x3F
        sdk_vals = bytes.fromhex(vector["attr_vals_hex"])
        vals = bytearray(5)
        for bit, name in enumerate(writable):
            if flags & (1 << bit):
                if name in bit_masks:
                    vals[0] |= sdk_vals[0] & bit_masks[name]
                else:
                    vals[byte_index[name]] = sdk_vals[byte_index[name]]
        return bytes([0x01, flags]) + bytes(vals)

    def as_attrs(values: dict[str, Any]) -> dict[str, Any]:
        return {
            name: attrs[name]["enum"][value] if attrs[name]["data_type"] == "enum" else value
            for name, value in values.items()
        }

    async def scenario() -> None:
        device = await online_device(cloud, did, "GOKITPASS")
        for vector in vectors:
            reply = await api(
                cloud, "POST", f"/app/control/{did}", {"attrs": as_attrs(vector["values"])}, appid=appid, token=token
            )
            assert reply.status == 200, (vector["id"], reply)
            assert await next_command(device, did) == frame_0090(expected_p0(vector)), vector["id"]
        # Numbers in display units (y = x + addition): Motor_Speed -5..5 is raw 0..10 (serial §4.2).
        for speed, raw in ((-5, 0x00), (0, 0x05), (5, 0x0A)):
            reply = await api(
                cloud, "POST", f"/app/control/{did}", {"attrs": {"Motor_Speed": speed}}, appid=appid, token=token
            )
            assert reply.status == 200, reply
            assert await next_command(device, did) == frame_0090(bytes([0x01, 0x20, 0, 0, 0, 0, raw]))
        # Every enum label, and bool as true/false (§3.10).
        for index, label in enumerate(attrs["LED_Color"]["enum"]):
            body = {"attrs": {"LED_Color": label, "LED_OnOff": True}}
            reply = await api(cloud, "POST", f"/app/control/{did}", body, appid=appid, token=token)
            assert reply.status == 200, reply
            assert await next_command(device, did) == frame_0090(bytes([0x01, 0x03, 1 | index << 1, 0, 0, 0, 0]))
        await device.close()

    run(scenario())


def test_control_of_uint16_uint32_and_binary(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product(ALL_TYPES_SCHEMA)
    did = register(cloud, "0A0B0C0D0E10", "ALLTYPES", ALL_TYPES_PK)
    token = new_user(cloud, appid)
    bind(cloud, appid, token, did, "ALLTYPES")
    # attr_flags: sw 0x01, mode 0x02, level 0x04, count 0x08, blob 0x10 (writable ids 0-4), one byte.
    # attr_vals (11 bytes): W-bits | level (2, BE, x = (y + 10) / 0.5) | count (4, BE) | blob (4).
    cases = [
        (
            {"sw": True, "mode": "high", "level": 100.5, "count": 3000000000, "blob": "deadbeef"},
            "01" + "1f" + "05" + "00dd" + "b2d05e00" + "deadbeef",
        ),
        ({"level": -10}, "01" + "04" + "00" + "0000" + "00000000" + "00000000"),
        ({"level": 490}, "01" + "04" + "00" + "03e8" + "00000000" + "00000000"),
        ({"level": 0}, "01" + "04" + "00" + "0014" + "00000000" + "00000000"),
        ({"count": 4000000000}, "01" + "08" + "00" + "0000" + "ee6b2800" + "00000000"),
        ({"blob": "68656c6c"}, "01" + "10" + "00" + "0000" + "00000000" + "68656c6c"),  # "hell" as ASCII hex
        ({"blob": "FFfF00ff"}, "01" + "10" + "00" + "0000" + "00000000" + "ffff00ff"),
        ({"mode": "mid", "sw": False}, "01" + "03" + "02" + "0000" + "00000000" + "00000000"),
    ]

    async def scenario() -> None:
        device = await online_device(cloud, did, "ALLTYPES")
        for attrs, p0_hex in cases:
            reply = await api(cloud, "POST", f"/app/control/{did}", {"attrs": attrs}, appid=appid, token=token)
            assert reply.status == 200, (attrs, reply)
            assert await next_command(device, did) == frame_0090(bytes.fromhex(p0_hex)), attrs
        await device.close()

    run(scenario())


# -- device data (§3.8, §3.13) --------------------------------------------------------------------------------


def test_latest_data_as_in_the_seed(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    cloud.add_product(GOKIT_SCHEMA)
    did = register(cloud, "AABBCCDDEEFF", "gokit")
    gokit = register(cloud, "AABBCCDDEE00", "GOKITPASS", GOKIT_PK)

    async def scenario() -> None:
        device = await online_device(cloud, did, "gokit")
        # Report temp 10, humi 20 (the seed's example values): 0x0091, P0 04 0a 14.
        await device.publish(f"dev2app/{did}", bytes.fromhex("0000000306000091" + "040a14"))
        kit = await online_device(cloud, gokit, "GOKITPASS")
        # GoKit report, serial protocol §7 Ex 1: LED on, Purple, R 10 G 20 B 30, Motor +2, IR on, 25 °C, 60 %,
        # Alert_2, Fault_Motor.
        await kit.publish(f"dev2app/{gokit}", bytes.fromhex("000000030e000091" + "04050a141e0701263c0202"))
        await asyncio.sleep(0)
        await device.close()
        await kit.close()

    run(scenario())

    def latest(which: str) -> Reply:
        return curl(cloud, "GET", f"/app/devdata/{which}/latest", appid=appid)

    wait_for(lambda: latest(did).body["attr"] != {}, 5.0, "the report stored")
    reply = latest(did)
    assert reply.status == 200
    assert set(reply.body) == {"did", "updated_at", "attr"}
    assert reply.body["did"] == did and reply.body["attr"] == {"temp": 10, "humi": 20}
    assert type(reply.body["updated_at"]) is int and abs(reply.body["updated_at"] - time.time()) < 10

    wait_for(lambda: latest(gokit).body["attr"] != {}, 5.0, "the GoKit report stored")
    assert latest(gokit).body["attr"] == {
        "LED_OnOff": True,
        "LED_Color": "Purple",  # enum label (§3.8)
        "LED_R": 10,
        "LED_G": 20,
        "LED_B": 30,
        "Motor_Speed": 2,  # scaled: raw 7 - 5
        "Infrared": True,
        "Temperature": 25,  # raw 38 - 13
        "Humidity": 60,
        "Alert_1": False,
        "Alert_2": True,
        "Fault_LED": False,
        "Fault_Motor": True,
        "Fault_TemHum": False,
        "Fault_IR": False,
    }


def test_datapoint_as_served_to_apps(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product(GOKIT_SCHEMA)
    reply = curl(cloud, "GET", f"/app/datapoint?product_key={GOKIT_PK}", appid=appid)
    assert reply.status == 200, reply
    assert reply.body["packetVersion"] == "0x00000004" and reply.body["protocolType"] == "standard"
    served = reply.body["entities"][0]["attrs"]
    original = GOKIT_SCHEMA["entities"][0]["attrs"]
    assert [a["name"] for a in served] == [a["name"] for a in original]
    for got, want in zip(served, original, strict=True):
        for key in ("id", "name", "data_type", "type", "position"):
            assert got[key] == want[key], (want["name"], key)
        if "uint_spec" in want:
            assert got["uint_spec"] == want["uint_spec"]
        if "enum" in want:
            assert got["enum"] == want["enum"]
