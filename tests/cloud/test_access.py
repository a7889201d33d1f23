"""Who may see and act for a device, and what the bindings list says of it (issue 10, items 9 and 10).

* Every DeviceItem field of cloud protocol §3.9, with its value and JSON type, against a real cloud: versions from
  GAgent's own OTA check forms (gagent-wire-observations §2, steps 3-4), roles from the order of binding, the
  query flags ``show_disabled``, ``show_proto_ver`` and ``lan_prot_ver``; ``PUT /app/bindings/{did}``.
* Apps reach only the devices of the products they are linked to: another app's id reads nothing (latest,
  control, bindings).
* A device registered through the encrypted API logs in with the password the cloud sealed into its reply; the
  passcode (which every bound user reads) opens no MQTT session for it, and a fake report cannot reach /latest.
* ``refuse_plain_registration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gizdev.cloud.security import token_digest
from gizdev.protocol.device_api import encrypt_form
from tests.cloud.broker_fixtures import RawMqtt31
from tests.cloud.realtime_helpers import ws_client
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, CloudThread, Reply, make_cloud, world_searchable_dir
from tests.cloud.test_device_api import CONNACK_REFUSED, sealed_registration
from tests.cloud.test_open_api_seed import (
    ALL_TYPES_PK,
    ALL_TYPES_SCHEMA,
    CONNACK_OK,
    api,
    assert_error,
    bind,
    new_user,
    register,
    wait_for,
)
from tests.guards import run

PK = TEMP_HUMI_SCHEMA["product_key"]
SEALED_MAC = "A0B1C2D3E4F5"
PLAIN_MAC = "AABBCCDDEEFF"


def seal_register(cloud: CloudThread, secret: str, mac: str, passcode: str, kind: str = "normal") -> tuple[str, str]:
    sealed = encrypt_form(secret, f"mac={mac}&passcode={passcode}&type={kind}")
    reply = cloud.form("POST", f"/dev/{PK}/device", f"data={sealed}")
    assert reply.status == 201, reply
    return sealed_registration(secret, reply)


def bus_online(cloud: CloudThread, did: str) -> bool:
    return cloud.server.bus is not None and cloud.server.bus.is_online(did)


def ota_check(cloud: CloudThread, did: str, form: str) -> Reply:
    return cloud.form("POST", f"/dev/ota/v4.1/update_and_check/{did}", form)


def listing(cloud: CloudThread, appid: str, token: str, query: str = "") -> list[dict[str, Any]]:
    reply = cloud.api("GET", f"/app/bindings{query}", appid=appid, token=token)
    assert reply.status == 200, reply
    assert list(reply.body) == ["devices"]
    devices: list[dict[str, Any]] = reply.body["devices"]
    return devices


# What every DeviceItem carries (§3.9 plus the MCU's versions), each with the one JSON type it may have.
ITEM_TYPES: dict[str, type] = {
    "product_key": str,
    "product_name": str,
    "did": str,
    "mac": str,
    "is_online": bool,
    "passcode": str,
    "host": str,
    "port": int,
    "port_s": int,
    "ws_port": int,
    "wss_port": int,
    "remark": str,
    "is_disabled": bool,
    "type": str,
    "dev_alias": str,
    "dev_label": list,
    "protoc": int,
    "wifi_soft_version": str,
    "mcu_soft_version": str,
    "mcu_hard_version": str,
    "is_sandbox": bool,
    "role": str,
    "mesh_id": str,
    "gw_did": str,
}


def assert_types(item: dict[str, Any], extra: dict[str, type] | None = None) -> None:
    wanted = {**ITEM_TYPES, **(extra or {})}
    assert set(item) == set(wanted), sorted(set(item) ^ set(wanted))
    for key, kind in wanted.items():
        assert type(item[key]) is kind, (key, item[key])


def test_device_items_carry_every_field_with_real_values(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    _, secret = cloud.add_product()
    sealed_did, password = seal_register(cloud, secret, SEALED_MAC, "SEALEDPASS", "center_control")
    plain_did = register(cloud, PLAIN_MAC, "HKIPANQEYX")
    # The vendor GAgent's two OTA checks, byte for byte (wire observations §2 steps 3 and 4): its own versions
    # with type=1, then the MCU's (hardware 03010100, software 03030000 from the MCU's 0x02 reply) with type=2.
    for form in (
        "passcode=HKIPANQEYX&type=1&hard_version=000LINUX&soft_version=04020006",
        "passcode=HKIPANQEYX&type=2&hard_version=03010100&soft_version=03030000",
    ):
        assert ota_check(cloud, plain_did, form).status == 404  # "no update", as GAgent needs to go on
    first, second = new_user(cloud, appid, "first"), new_user(cloud, appid, "second")
    bind(cloud, appid, first, sealed_did, "SEALEDPASS")
    bind(cloud, appid, first, plain_did, "HKIPANQEYX")
    bind(cloud, appid, second, plain_did, "HKIPANQEYX")

    async def with_device_online() -> list[dict[str, Any]]:
        device = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
        try:
            assert await device.connect(sealed_did, sealed_did, password) == CONNACK_OK
            await asyncio.to_thread(wait_for, lambda: bus_online(cloud, sealed_did), 5.0, "the device online")
            return await asyncio.to_thread(listing, cloud, appid, first, "?show_proto_ver=1&lan_prot_ver=1")
        finally:
            await device.close()

    plain_item, sealed_item = run(with_device_online())  # newest binding first
    common = {
        "product_key": PK,
        "product_name": TEMP_HUMI_SCHEMA["name"],
        "host": "127.0.0.1",
        "port": cloud.mqtt_port,
        "port_s": 0,  # this cloud has no TLS listener, and none was announced
        "ws_port": cloud.http_port,  # the realtime API lives on the HTTP port
        "wss_port": 0,
        "remark": "",
        "is_disabled": False,
        "dev_alias": "",
        "dev_label": [],
        "protoc": 3,  # WiFi
        "proto_ver": "03",
        "lan_prot_ver": "03",
        "is_sandbox": False,
        "role": "special",  # the first user to bind either device
        "mesh_id": "",
        "gw_did": "",
    }
    assert sealed_item == {
        **common,
        "did": sealed_did,
        "mac": SEALED_MAC.lower(),
        "is_online": True,
        "passcode": "SEALEDPASS",
        "type": "center_control",
        "wifi_soft_version": "",  # it sent no OTA check
        "mcu_soft_version": "",
        "mcu_hard_version": "",
    }
    assert plain_item == {
        **common,
        "did": plain_did,
        "mac": PLAIN_MAC.lower(),
        "is_online": False,
        "passcode": "HKIPANQEYX",
        "type": "normal",
        "wifi_soft_version": "04020006",
        "mcu_soft_version": "03030000",
        "mcu_hard_version": "03010100",
    }
    assert_types(sealed_item, {"proto_ver": str, "lan_prot_ver": str})
    # Without the flags, no proto_ver and no lan_prot_ver (§3.9); the second binder is "normal".
    [seconds] = listing(cloud, appid, second)
    assert_types(seconds)
    assert (seconds["did"], seconds["role"]) == (plain_did, "normal")
    assert [item["did"] for item in listing(cloud, appid, first, "?show_proto_ver=0&lan_prot_ver=1")] == [
        plain_did,
        sealed_did,
    ]
    assert "proto_ver" not in listing(cloud, appid, first, "?show_proto_ver=0&lan_prot_ver=1")[0]

    # A disabled device is listed only with show_disabled=1, and then says so.
    assert cloud.form("DELETE", "/dev/devices", f"did={plain_did}&passcode=HKIPANQEYX").status == 200
    assert [item["did"] for item in listing(cloud, appid, first)] == [sealed_did]
    shown = listing(cloud, appid, first, "?show_disabled=1")
    assert [(item["did"], item["is_disabled"]) for item in shown] == [(plain_did, True), (sealed_did, False)]
    for query in ("?show_proto_ver=2", "?lan_prot_ver=yes", "?show_disabled=1&show_disabled=0"):
        assert_error(cloud.api("GET", f"/app/bindings{query}", appid=appid, token=first), 9015, 400)


def test_ota_checks_refuse_what_is_not_the_device(cloud: CloudThread) -> None:
    cloud.add_product()
    did = register(cloud, PLAIN_MAC, "HKIPANQEYX")
    good = "passcode=HKIPANQEYX&type=2&hard_version=03010100&soft_version=03030000"
    assert_error(ota_check(cloud, did, good.replace("HKIPANQEYX", "WRONGPASS1")), 9016, 400)
    assert_error(ota_check(cloud, "Q" * 22, good), 9014, 404)
    for form in (
        "",
        "passcode=HKIPANQEYX&type=3&hard_version=03010100&soft_version=03030000",
        "passcode=HKIPANQEYX&type=2&hard_version=03010100",
        "passcode=HKIPANQEYX&type=2&hard_version=0301%000&soft_version=03030000",
        "passcode=HKIPANQEYX&type=2&hard_version=03010100&soft_version=" + "9" * 17,
        "passcode=HKIPANQEYX&type=2&hard_version=a%26b%3Dc&soft_version=03030000",
        good + "&type=1",
    ):
        assert_error(ota_check(cloud, did, form), 9015, 400)
    device = cloud.call(cloud.storage.get_device(did))
    assert (device.mcu_hard_version, device.mcu_soft_version, device.wifi_soft_version) == ("", "", "")


def test_put_binding_sets_remark_alias_and_labels(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud, PLAIN_MAC, "HKIPANQEYX")
    unbound = register(cloud, "001122334455", "OTHERPASS1")
    token = new_user(cloud, appid)
    bind(cloud, appid, token, did, "HKIPANQEYX")

    def put(body: Any, target: str = did, raw: bytes | None = None) -> Reply:
        if raw is not None:
            headers = {"Content-Type": "application/json", "X-Gizwits-Application-Id": appid}
            return cloud.request("PUT", f"/app/bindings/{target}", raw, {**headers, "X-Gizwits-User-token": token})
        return cloud.api("PUT", f"/app/bindings/{target}", body, appid=appid, token=token)

    every = {"remark": "by the door", "dev_alias": "Küche", "dev_label": ["kitchen", "floor 1"]}
    reply = put(every)
    assert reply.status == 200 and reply.body == every  # the fields it set, echoed
    [item] = listing(cloud, appid, token)
    assert {key: item[key] for key in every} == every
    alias = put({"dev_alias": "pantry"})
    assert alias.status == 200 and alias.body == {"dev_alias": "pantry"}
    [item] = listing(cloud, appid, token)
    assert (item["remark"], item["dev_alias"], item["dev_label"]) == ("by the door", "pantry", ["kitchen", "floor 1"])
    cleared = put({"dev_label": []})
    assert cleared.status == 200 and cleared.body == {"dev_label": []}
    assert listing(cloud, appid, token)[0]["dev_label"] == []

    for body in (
        {},
        {"remark": None},
        {"remark": 5},
        {"dev_alias": "x" * 129},
        {"remark": "x" * 257},
        {"dev_label": "kitchen"},
        {"dev_label": [1]},
        {"dev_label": [""]},
        {"dev_label": ["x" * 65]},
        {"dev_label": ["a"] * 21},
        {"dev_label": [["nested"]]},
        {"remark": "nul\x00"},
    ):
        assert_error(put(body), 9015, 400)
    for raw in (b"", b"[]", b'{"remark": ', b"\xff\xfe", b'{"remark": "' + b"x" * 70_000 + b'"}'):
        assert_error(put(None, raw=raw), 9015, 400)
    assert listing(cloud, appid, token)[0]["remark"] == "by the door"  # nothing refused changed anything
    assert_error(put({"remark": "x"}, "Q" * 22), 9014, 404)
    assert_error(put({"remark": "x"}, "x" * 300), 9014, 404)
    assert_error(put({"remark": "x"}, unbound), 9017, 401)
    assert_error(cloud.api("PUT", f"/app/bindings/{did}", {"remark": "x"}, appid=appid), 9004, 400)


# -- item 10: apps and their products ---------------------------------------------------------------------------


def test_another_apps_id_reads_nothing(cloud: CloudThread) -> None:
    """App A serves the device's product; app B serves another product: through B the device does not exist."""
    cloud.add_product()
    cloud.add_product(ALL_TYPES_SCHEMA)
    own = cloud.add_app(products=[PK])
    other = cloud.add_app(products=[ALL_TYPES_PK])
    bare = cloud.add_app(products=[])
    did = register(cloud, PLAIN_MAC, "HKIPANQEYX")
    token = new_user(cloud, own)
    bind(cloud, own, token, did, "HKIPANQEYX")
    cloud.call(cloud.storage.put_latest(did, {"temp": 21, "humi": 40}, int(time.time())))
    served = cloud.api("GET", f"/app/devdata/{did}/latest", appid=own)
    assert served.status == 200 and served.body["attr"] == {"temp": 21, "humi": 40}

    for appid in (other, bare):
        intruder = new_user(cloud, appid, f"eve-{appid[:6]}")
        # /latest with the app id alone (as the seed sends it), and with the intruder's token.
        assert_error(cloud.api("GET", f"/app/devdata/{did}/latest", appid=appid), 9014, 404)
        assert_error(cloud.api("GET", f"/app/devdata/{did}/latest", appid=appid, token=intruder), 9014, 404)
        # Binding with the right passcode fails; so do control, unbinding and PUT, as for a DID that names nothing.
        devices = {"devices": [{"did": did, "passcode": "HKIPANQEYX"}]}
        bound = cloud.api("POST", "/app/bindings", devices, appid=appid, token=intruder)
        assert bound.status == 200 and bound.body == {"success": [], "failed": [did]}
        assert_error(
            cloud.api("POST", f"/app/control/{did}", {"attrs": {"temp": 1}}, appid=appid, token=intruder), 9014, 404
        )
        unbound = cloud.api("DELETE", "/app/bindings", {"devices": [{"did": did}]}, appid=appid, token=intruder)
        assert unbound.status == 200 and unbound.body == {"success": [], "failed": [did]}
        assert_error(cloud.api("PUT", f"/app/bindings/{did}", {"remark": "x"}, appid=appid, token=intruder), 9014, 404)
        assert listing(cloud, appid, intruder) == []
    assert [item["did"] for item in listing(cloud, own, token)] == [did]  # nothing of it touched A's binding

    # Unlinking takes the product's devices away from A too (the server's app cache is dropped here; another
    # process's change is seen within its TTL), linking brings them back.
    cloud.call(cloud.storage.link_app_product(own, PK, linked=False))
    cloud.forget_cached_apps()
    assert_error(cloud.api("GET", f"/app/devdata/{did}/latest", appid=own), 9014, 404)
    assert_error(cloud.api("POST", f"/app/control/{did}", {"attrs": {"temp": 1}}, appid=own, token=token), 9014, 404)
    assert listing(cloud, own, token) == []
    uid = cloud.call(cloud.storage.lookup_session(token_digest(token)))
    assert uid is not None

    async def realtime() -> None:  # the WebSocket API answers the same way: the device is not A's to reach
        async with ws_client(cloud) as ws:
            await ws.login(own, uid[1].uid, token, auto=False)
            await ws.send("subscribe_req", [{"did": did}])
            reply = await ws.expect("subscribe_res")
            assert reply["data"]["success"] == []
            assert [entry["error_code"] for entry in reply["data"]["failed"]] == [9014]
            await ws.send("c2s_write", {"did": did, "attrs": {"temp": 1}})
            assert await ws.invalid() == 9014

    run(realtime())
    cloud.call(cloud.storage.link_app_product(own, PK))
    cloud.forget_cached_apps()
    assert [item["did"] for item in listing(cloud, own, token)] == [did]
    assert cloud.api("GET", f"/app/devdata/{did}/latest", appid=own).status == 200


# -- item 10: the MQTT password of an encrypted device ----------------------------------------------------------


def test_the_passcode_opens_no_session_of_an_encrypted_device(cloud: CloudThread) -> None:
    """A bound user reads the passcode from the bindings list; as the device's MQTT password it is refused, and the
    device's own session stays up, so a fake report never reaches /latest."""
    appid = cloud.add_app()
    _, secret = cloud.add_product()
    did, password = seal_register(cloud, secret, SEALED_MAC, "SEALEDPASS")
    token = new_user(cloud, appid)
    bind(cloud, appid, token, did, "SEALEDPASS")
    [item] = listing(cloud, appid, token)
    leaked = item["passcode"]
    assert leaked == "SEALEDPASS" and leaked != password

    real_report = bytes.fromhex("000000030600009104150a")  # 0x0091, P0 04 15 0a: temp 21, humi 10
    fake_report = bytes.fromhex("000000030600009104630a")  # temp 99

    async def scenario() -> None:
        device = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
        try:
            assert await device.connect(did, did, password) == CONNACK_OK
            assert await device.subscribe(1, f"app2dev/{did}/#") == bytes.fromhex("90030001") + b"\x00"
            await asyncio.to_thread(wait_for, lambda: bus_online(cloud, did), 5.0, "the device online")
            for client_id in (did, "attacker"):
                attacker = await RawMqtt31.open("127.0.0.1", cloud.mqtt_port)
                try:
                    assert await attacker.connect(client_id, did, leaked) == CONNACK_REFUSED
                    with contextlib.suppress(OSError):  # the broker may have closed it already
                        await attacker.publish(f"dev2app/{did}", fake_report)
                    # Closed by the broker (an EOF, or a reset when the refused PUBLISH arrived after the close).
                    with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
                        await attacker.read_packet(timeout_s=2.0)
                finally:
                    await attacker.close()
            # The device was not displaced: its session answers, and its report is the one /latest serves.
            await device.publish(f"dev2app/{did}", real_report)

            def latest() -> Any:
                return cloud.api("GET", f"/app/devdata/{did}/latest", appid=appid, token=token).body["attr"]

            await asyncio.to_thread(wait_for, lambda: latest() == {"temp": 21, "humi": 10}, 5.0, "the real report")
            control = await api(cloud, "POST", f"/app/control/{did}", {"attrs": {"temp": 5}}, appid=appid, token=token)
            assert control.status == 200, control
            topic, _ = await device.read_publish(timeout_s=5.0)
            assert topic.startswith(f"app2dev/{did}/")
            assert latest() == {"temp": 21, "humi": 10}
            assert bus_online(cloud, did)
        finally:
            await device.close()

    run(scenario())


# -- refuse_plain_registration, and the TLS ports announced ------------------------------------------------------


@pytest.fixture(name="strict_cloud")
def strict_cloud_fixture(mosquitto_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudThread]:
    base = world_searchable_dir()
    database = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('strict') / 'cloud.db'}"
    thread = make_cloud(
        database,
        base / "data",
        mosquitto_binary=mosquitto_binary,
        refuse_plain_registration=True,
        public_mqtts_port=8883,
        public_wss_port=8880,
    )
    try:
        yield thread
    finally:
        thread.close()
        shutil.rmtree(base, ignore_errors=True)


def test_refuse_plain_registration(strict_cloud: CloudThread) -> None:
    cloud = strict_cloud
    appid = cloud.add_app()
    _, secret = cloud.add_product()
    refused = cloud.form("POST", "/dev/devices", f"passcode=HKIPANQEYX&mac={PLAIN_MAC}&product_key={PK}")
    assert_error(refused, 9048, 400)
    assert "encrypted device API" in refused.body["detail_message"]
    assert cloud.call(cloud.storage.list_devices()) == []  # nothing registered
    did, _ = seal_register(cloud, secret, SEALED_MAC, "SEALEDPASS")
    token = new_user(cloud, appid)
    bind(cloud, appid, token, did, "SEALEDPASS")
    [item] = listing(cloud, appid, token)
    assert (item["port_s"], item["ws_port"], item["wss_port"]) == (8883, cloud.http_port, 8880)
