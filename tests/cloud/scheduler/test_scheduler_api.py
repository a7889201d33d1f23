"""The scheduler endpoints over HTTP (open-api-seed "定时任务", cloud protocol §3.11): what they answer, what they
refuse with which code, and that a refusal stores nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cloud.scheduler.helpers import PK, World, legacy_body, make_world
from tests.cloud.server_fixtures import CloudThread, Reply
from tests.cloud.test_api_hostile import MALFORMED_BODIES, SPEC_STATUS, json_values, raw_request
from tests.cloud.test_open_api_seed import assert_error, new_user

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
STATUS = SPEC_STATUS | {9030: 404}


def refused(reply: Reply, code: int) -> None:
    assert_error(reply, code, STATUS[code])


def tomorrow() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d")


def call(cloud: CloudThread, world: World, method: str, path: str, body: Any = None) -> Reply:
    return cloud.api(method, path, body, appid=world.appid, token=world.token)


def listed(cloud: CloudThread, world: World, path: str = "/app/scheduler") -> list[dict[str, Any]]:
    reply = call(cloud, world, "GET", path)
    assert reply.status == 200, reply
    assert isinstance(reply.body, list)
    return reply.body


def test_create_list_logs_and_delete_as_in_the_document(cloud: CloudThread) -> None:
    world = make_world(cloud)
    once = legacy_body(world.dids, date=tomorrow(), time="12:00", retry_count=3)
    created = call(cloud, world, "POST", "/app/scheduler", once)
    assert created.status == 201 and set(created.body) == {"id"} and isinstance(created.body["id"], str), created
    weekly = legacy_body(world.dids[:1], date=None, time="06:30", repeat="mon,fri", retry_task="failed")
    second = call(cloud, world, "POST", "/app/scheduler", weekly)
    assert second.status == 201, second

    items = listed(cloud, world)
    assert [item["id"] for item in items] == [second.body["id"], created.body["id"]]  # newest first
    for item, sent in zip(items, (weekly, once), strict=True):
        assert ISO.fullmatch(item["created_at"]), item
        made = dt.datetime.fromisoformat(item["created_at"]).replace(tzinfo=dt.UTC)
        assert abs(made.timestamp() - time.time()) < 60
        assert {key: value for key, value in item.items() if key not in ("id", "created_at")} == sent
    assert listed(cloud, world, "/app/scheduler?limit=1&skip=1") == [items[1]]

    # Never run: the latest-run form answers {} (gizdev/cloud/http/scheduler.py says why), the list form [].
    logs = call(cloud, world, "GET", f"/app/scheduler/{created.body['id']}/logs")
    assert logs.status == 200 and logs.body == {}
    assert call(cloud, world, "GET", f"/app/scheduler/{created.body['id']}/logs?limit=5").body == []

    deleted = call(cloud, world, "DELETE", f"/app/scheduler/{created.body['id']}")
    assert deleted.status == 200 and deleted.body == {}
    refused(call(cloud, world, "DELETE", f"/app/scheduler/{created.body['id']}"), 9030)
    refused(call(cloud, world, "GET", f"/app/scheduler/{created.body['id']}/logs"), 9030)
    assert [item["id"] for item in listed(cloud, world)] == [second.body["id"]]


def test_another_users_schedules_are_not_found(cloud: CloudThread) -> None:
    world = make_world(cloud)
    mine = call(cloud, world, "POST", "/app/scheduler", legacy_body(world.dids, date=tomorrow(), time="08:00"))
    assert mine.status == 201
    other = World(world.appid, new_user(cloud, world.appid, "mallory"), [], world.unbound)
    assert listed(cloud, other) == []
    refused(call(cloud, other, "DELETE", f"/app/scheduler/{mine.body['id']}"), 9030)
    refused(call(cloud, other, "GET", f"/app/scheduler/{mine.body['id']}/logs"), 9030)
    # Nor can the other user schedule the first user's devices.
    refused(call(cloud, other, "POST", "/app/scheduler", legacy_body(world.dids, date=tomorrow(), time="08:00")), 9017)
    assert [item["id"] for item in listed(cloud, world)] == [mine.body["id"]]


def test_per_device_form(cloud: CloudThread) -> None:
    world = make_world(cloud)
    did = world.dids[0]
    base = f"/app/devices/{did}/scheduler"
    by_attrs = {"attrs": {"temp": 30}, "time": "07:15", "repeat": "day", "days": [1, 15], "remark": "heat"}
    first = call(cloud, world, "POST", base, by_attrs)
    assert first.status == 201 and set(first.body) == {"id"}, first
    by_raw = {"raw": "010203", "date": tomorrow(), "time": "23:59", "repeat": "none", "enabled": False}
    second = call(cloud, world, "POST", base, by_raw)
    assert second.status == 201, second

    items = listed(cloud, world, base)
    assert [item["id"] for item in items] == [second.body["id"], first.body["id"]]
    assert items[1]["did"] == did and items[1]["product_key"] == PK and ISO.fullmatch(items[1]["created_at"])
    assert items[1]["attrs"] == {"temp": 30} and items[1]["days"] == [1, 15] and items[1]["remark"] == "heat"
    assert items[1]["enabled"] is True and items[0]["enabled"] is False and items[0]["raw"] == "010203"
    # The per-device schedules are not in the multi-device list, and the other device has none.
    assert listed(cloud, world) == []
    assert listed(cloud, world, f"/app/devices/{world.dids[1]}/scheduler") == []

    changed = call(cloud, world, "PUT", f"{base}/{first.body['id']}", by_attrs | {"time": "09:45", "repeat": "sun"})
    assert changed.status == 200 and changed.body == {"id": first.body["id"]}, changed
    item = next(i for i in listed(cloud, world, base) if i["id"] == first.body["id"])
    assert (item["time"], item["repeat"]) == ("09:45", "sun") and item["created_at"] == items[1]["created_at"]
    refused(call(cloud, world, "PUT", f"{base}/{'0' * 24}", by_attrs), 9030)
    # Another device's path does not reach this schedule.
    refused(call(cloud, world, "PUT", f"/app/devices/{world.dids[1]}/scheduler/{first.body['id']}", by_attrs), 9030)
    refused(call(cloud, world, "DELETE", f"/app/devices/{world.dids[1]}/scheduler/{first.body['id']}"), 9030)
    refused(call(cloud, world, "DELETE", f"/app/scheduler/{first.body['id']}"), 9030)

    assert call(cloud, world, "DELETE", f"{base}/{first.body['id']}").body == {}
    assert [i["id"] for i in listed(cloud, world, base)] == [second.body["id"]]


def test_refusals_by_code_store_nothing(cloud: CloudThread) -> None:
    world = make_world(cloud)
    day = tomorrow()
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M").split()
    good = legacy_body(world.dids, date=day, time="12:00")

    def task(**change: Any) -> dict[str, Any]:
        return good | {"task": [good["task"][0] | change]}

    cases: list[tuple[dict[str, Any], int]] = [
        (task(did=world.unbound), 9017),
        (task(did="Z" * 22), 9014),  # no such device
        (task(attrs={"temp": 101}), 9025),  # above the schema's max 100
        (task(attrs={"temp": -1}), 9025),
        (task(attrs={"nope": 1}), 9025),
        (task(attrs={"temp": "hot"}), 9025),
        (task(product_key="0" * 32), 9015),  # not the device's product
        (good | {"date": past[0], "time": past[1]}, 9015),  # a one-off two minutes ago
        (good | {"date": "2020-01-01"}, 9015),
        (good | {"date": "2026-02-30"}, 9015),
        (good | {"date": "01/02/2027"}, 9015),
        (good | {"time": "24:00"}, 9015),
        (good | {"time": "12:60"}, 9015),
        (good | {"time": "1:00"}, 9015),
        (good | {"repeat": "monday"}, 9015),
        (good | {"repeat": "mon,mon"}, 9015),
        (good | {"repeat": ""}, 9015),
        (good | {"repeat": "day", "days": [1]}, 9015),  # monthly belongs to the per-device form
        (good | {"date": None}, 9015),  # repeat none needs a date
        (good | {"retry_count": 61}, 9015),
        (good | {"retry_count": -1}, 9015),
        (good | {"retry_count": True}, 9015),
        (good | {"retry_count": "3"}, 9015),
        (good | {"retry_task": "some"}, 9015),
        (good | {"task": []}, 9015),
        (good | {"task": good["task"] * 60}, 9015),  # over the cap, and a device twice
        (good | {"task": [good["task"][0], good["task"][0]]}, 9015),
        (good | {"task": "did1"}, 9015),
        ({key: value for key, value in good.items() if key != "time"}, 9015),
        ({key: value for key, value in good.items() if key != "task"}, 9015),
    ]
    for body, code in cases:
        refused(call(cloud, world, "POST", "/app/scheduler", body), code)
    assert listed(cloud, world) == []

    base = f"/app/devices/{world.dids[0]}/scheduler"
    device_good = {"attrs": {"temp": 1}, "time": "10:00", "repeat": "mon"}
    device_cases: list[tuple[str, dict[str, Any], int]] = [
        (f"/app/devices/{world.unbound}/scheduler", device_good, 9017),
        (f"/app/devices/{'Z' * 22}/scheduler", device_good, 9014),
        (base, device_good | {"attrs": {"temp": 500}}, 9025),
        (base, device_good | {"raw": "0102"}, 9015),  # both raw and attrs
        (base, {"time": "10:00", "repeat": "mon"}, 9015),  # neither
        (base, {"raw": "zz", "time": "10:00", "repeat": "mon"}, 9015),
        (base, {"raw": "", "time": "10:00", "repeat": "mon"}, 9015),
        (base, device_good | {"repeat": "day"}, 9015),  # without days
        (base, device_good | {"repeat": "day", "days": [0]}, 9015),
        (base, device_good | {"repeat": "day", "days": [32]}, 9015),
        (base, device_good | {"start_date": "2027-05-01", "end_date": "2027-04-01"}, 9015),
        (base, device_good | {"end_date": "2020-01-01"}, 9015),  # never falls due
        (base, device_good | {"remark": "r" * 1025}, 9015),
        (base, device_good | {"enabled": "yes"}, 9015),
        (base, device_good | {"repeat": "none", "date": past[0], "time": past[1]}, 9015),
    ]
    for path, body, code in device_cases:
        refused(call(cloud, world, "POST", path, body), code)
    assert listed(cloud, world, base) == []


def test_every_endpoint_checks_the_app_id_and_the_token(cloud: CloudThread) -> None:
    world = make_world(cloud)
    sid = call(cloud, world, "POST", "/app/scheduler", legacy_body(world.dids, date=tomorrow(), time="12:00")).body[
        "id"
    ]
    device = f"/app/devices/{world.dids[0]}/scheduler"
    dsid = call(cloud, world, "POST", device, {"attrs": {"temp": 1}, "time": "10:00", "repeat": "mon"}).body["id"]
    valid_device_body = {"attrs": {"temp": 2}, "time": "11:00", "repeat": "tue"}
    endpoints: list[tuple[str, str, Any]] = [
        ("POST", "/app/scheduler", legacy_body(world.dids, date=tomorrow(), time="13:00")),
        ("GET", "/app/scheduler", None),
        ("GET", f"/app/scheduler/{sid}/logs", None),
        ("DELETE", f"/app/scheduler/{sid}", None),
        ("GET", device, None),
        ("POST", device, valid_device_body),
        ("PUT", f"{device}/{dsid}", valid_device_body),
        ("DELETE", f"{device}/{dsid}", None),
    ]
    for method, path, body in endpoints:
        payload = None if body is None else json.dumps(body).encode()
        for appid in (None, "", "0" * 32, "' OR '1'='1", "x" * 5000):
            refused(raw_request(cloud, method, path, payload, appid, token=world.token), 9003)
        for token in (None, "", "0" * 32, world.token[:-1], "t" * 5000, "ü"):
            refused(raw_request(cloud, method, path, payload, world.appid, token=token), 9004)
    # Nothing was created, changed or deleted by the refused calls.
    assert [item["id"] for item in listed(cloud, world)] == [sid]
    assert [(item["id"], item["time"]) for item in listed(cloud, world, device)] == [(dsid, "10:00")]


def test_malformed_bodies_ids_and_queries(cloud: CloudThread) -> None:
    world = make_world(cloud)
    device = f"/app/devices/{world.dids[0]}/scheduler"
    dsid = call(cloud, world, "POST", device, {"attrs": {"temp": 1}, "time": "10:00", "repeat": "mon"}).body["id"]
    huge = b'{"time": "' + b"1" * (1024 * 1024) + b'"}'
    for method, path in (("POST", "/app/scheduler"), ("POST", device), ("PUT", f"{device}/{dsid}")):
        for body in [
            *MALFORMED_BODIES,
            huge,
            b'{"time": "12:00", "repeat": "none", "task": [' + b"{}," * 5000 + b"{}]}",
        ]:
            refused(raw_request(cloud, method, path, body, world.appid, token=world.token), 9015)
    for bad_id in ("x", "0" * 23, "0" * 25, "G" * 24, "%00", "'%20OR%201=1%20--", "a" * 5000, "%C3%28"):
        refused(call(cloud, world, "DELETE", f"/app/scheduler/{bad_id}"), 9030)
        refused(call(cloud, world, "GET", f"/app/scheduler/{bad_id}/logs"), 9030)
        refused(call(cloud, world, "DELETE", f"{device}/{bad_id}"), 9030)
        refused(
            call(cloud, world, "PUT", f"{device}/{bad_id}", {"attrs": {"temp": 1}, "time": "10:00", "repeat": "mon"}),
            9030,
        )
    for bad_did in ("x", "%00", "'%20OR%201=1%20--", "a" * 5000):
        refused(call(cloud, world, "GET", f"/app/devices/{bad_did}/scheduler"), 9014)
    for query in ("limit=abc", "limit=0", "limit=100000", "skip=-1", "limit=1&limit=2", "limit=1.5", "skip=1e3"):
        refused(call(cloud, world, "GET", f"/app/scheduler?{query}"), 9015)
        refused(call(cloud, world, "GET", f"{device}?{query}"), 9015)
    # The device schedule survived all of it.
    assert [(item["id"], item["time"]) for item in listed(cloud, world, device)] == [(dsid, "10:00")]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(["date", "time", "repeat", "task", "retry_count", "retry_task", "raw", "attrs", "days"]),
        json_values,
        max_size=5,
    )
    | json_values
)
def test_random_bodies_never_give_a_server_error(cloud: CloudThread, body: Any) -> None:
    if not hasattr(cloud, "scheduler_world"):
        cloud.scheduler_world = make_world(cloud)  # type: ignore[attr-defined]
    world: World = cloud.scheduler_world  # type: ignore[attr-defined]
    payload = json.dumps(body).encode()
    for method, path in (("POST", "/app/scheduler"), ("POST", f"/app/devices/{world.dids[0]}/scheduler")):
        reply = raw_request(cloud, method, path, payload, world.appid, token=world.token)
        assert reply.status in (201, 400, 401, 404), reply
        if reply.status != 201:
            assert reply.body["error_code"] in (9014, 9015, 9017, 9025, 9029), reply


def test_the_endpoints_are_in_the_openapi_document(cloud: CloudThread) -> None:
    document = cloud.request("GET", "/openapi.json").body
    paths = document["paths"]
    assert set(paths["/app/scheduler"]) == {"get", "post"}
    assert set(paths["/app/scheduler/{id}"]) == {"delete"}
    assert set(paths["/app/scheduler/{id}/logs"]) == {"get"}
    assert set(paths["/app/devices/{did}/scheduler"]) == {"get", "post"}
    assert set(paths["/app/devices/{did}/scheduler/{id}"]) == {"put", "delete"}
    create = paths["/app/scheduler"]["post"]
    assert "201" in create["responses"] and "404" in create["responses"]  # 9014 among the errors
    schema = document["components"]["schemas"]["LegacySchedule"]
    assert {"date", "time", "repeat", "task", "retry_count", "retry_task"} <= set(schema["properties"])
    assert set(schema["required"]) == {"time", "repeat", "task"}
    task = document["components"]["schemas"]["ScheduleTask"]
    assert set(task["properties"]) == {"did", "product_key", "attrs"}
    logs = paths["/app/scheduler/{id}/logs"]["get"]
    assert {p["name"] for p in logs["parameters"] if p["in"] == "query"} == {"limit", "skip"}
