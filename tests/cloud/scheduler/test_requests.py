"""Scheduler request bodies: the document's own example, both forms, and every malformed field → 9015."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.scheduler import Recurrence, parse_device_schedule, parse_legacy_schedule

NOW = dt.datetime(2014, 12, 31, 12, 0, tzinfo=dt.UTC)
PK = "0123456789abcdef0123456789abcdef"
DID = "dEvIcE0123456789abcdef"

# open-api-seed "创建定时任务", with real values for the placeholders (val, xxx).
SEED_BODY: dict[str, Any] = {
    "date": "2015-01-01",
    "time": "12:00",
    "repeat": "none",
    "task": [
        {"did": "did1", "product_key": PK, "attrs": {"attr1": 1, "attr2": 1}},
        {"did": "did2", "product_key": PK, "attrs": {"attr1": 1, "attr2": 2}},
    ],
    "retry_count": 3,
    "retry_task": "all",
}


def test_the_documents_example() -> None:
    schedule = parse_legacy_schedule(copy.deepcopy(SEED_BODY), NOW)
    assert schedule.recurrence == Recurrence.once(dt.date(2015, 1, 1), dt.time(12, 0))
    assert [task.did for task in schedule.tasks] == ["did1", "did2"]
    assert schedule.tasks[1].attrs == {"attr1": 1, "attr2": 2}
    assert (schedule.retry_count, schedule.retry_task) == (3, "all")
    assert schedule.echo == SEED_BODY  # what GET /app/scheduler lists, beside id and created_at


def test_weekly_legacy_needs_no_date_and_retry_defaults() -> None:
    body = {"time": "08:05", "repeat": "mon,fri", "task": SEED_BODY["task"][:1]}
    schedule = parse_legacy_schedule(body, NOW)
    assert schedule.recurrence == Recurrence.weekly(frozenset({0, 4}), dt.time(8, 5))
    assert (schedule.retry_count, schedule.retry_task) == (0, "all")
    assert "date" not in schedule.echo


def _with(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_BODY)
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ([], "JSON object"),
        (_with(time=...), "time is required"),
        (_with(time="12:60"), "not a time of day"),
        (_with(time="24:00"), "not a time of day"),
        (_with(time="1200"), "HH:MM"),
        (_with(time=1200), "must be a string"),
        (_with(date=...), "date is required"),
        (_with(date="2015-02-30"), "not a calendar date"),
        (_with(date="01/01/2015"), "YYYY-MM-DD"),
        (_with(date="2014-12-31", time="11:59"), "already past"),
        (_with(date="2014-12-31", time="12:00"), "already past"),
        (_with(repeat=...), "repeat is required"),
        (_with(repeat="monday"), "unknown"),
        (_with(repeat="mon,mon"), "twice"),
        (_with(repeat=""), "unknown"),
        (_with(repeat="day"), "per-device"),
        (_with(task=...), "task must be"),
        (_with(task=[]), "task must be"),
        (_with(task={"did": "x"}), "task must be"),
        (_with(task=["did1"]), "task[0] must be an object"),
        (_with(task=[{"did": "did1", "product_key": "xxx", "attrs": {"a": 1}}]), "product_key"),
        (_with(task=[{"did": "d i d", "product_key": PK, "attrs": {"a": 1}}]), "task[0].did"),
        (_with(task=[{"did": "did1", "product_key": PK, "attrs": {}}]), "task[0] must be a non-empty object"),
        (_with(task=[{"did": "did1", "product_key": PK, "attrs": [1]}]), "task[0] must be a non-empty object"),
        (_with(task=[SEED_BODY["task"][0], SEED_BODY["task"][0]]), "device twice"),
        (_with(task=[SEED_BODY["task"][0]] * 101), "at most 100"),
        (_with(retry_count=61), "retry_count"),
        (_with(retry_count=-1), "retry_count"),
        (_with(retry_count=True), "retry_count"),
        (_with(retry_count="3"), "retry_count"),
        (_with(retry_task="some"), "retry_task"),
    ],
)
def test_malformed_legacy_bodies_are_form_invalid(body: Any, detail: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_legacy_schedule(body, NOW)
    assert caught.value.code == Code.FORM_INVALID
    assert detail in (caught.value.detail or "")


def test_device_form_monthly_with_bounds_and_raw() -> None:
    body = {
        "raw": "0102ff",
        "time": "23:59",
        "repeat": "day",
        "days": [1, 15],
        "start_date": "2015-01-01",
        "end_date": "2015-12-31",
        "enabled": False,
        "remark": "filter",
    }
    schedule = parse_device_schedule(body, DID, NOW)
    assert schedule.recurrence == Recurrence.monthly(
        frozenset({1, 15}), dt.time(23, 59), dt.date(2015, 1, 1), dt.date(2015, 12, 31)
    )
    assert schedule.tasks[0].raw == b"\x01\x02\xff" and schedule.tasks[0].did == DID
    assert not schedule.enabled and schedule.remark == "filter"
    assert schedule.echo == {**body, "did": DID}


def test_device_form_attrs_weekly() -> None:
    schedule = parse_device_schedule({"attrs": {"LED_OnOff": True}, "time": "07:00", "repeat": "sat,sun"}, DID, NOW)
    assert schedule.tasks[0].attrs == {"LED_OnOff": True} and schedule.enabled


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"time": "07:00", "repeat": "none", "date": "2015-01-01"}, "either raw"),
        ({"raw": "01", "attrs": {"a": 1}, "time": "07:00", "repeat": "mon"}, "either raw"),
        ({"raw": "0g", "time": "07:00", "repeat": "mon"}, "hex"),
        ({"raw": "", "time": "07:00", "repeat": "mon"}, "1 to"),
        ({"raw": "00" * 1025, "time": "07:00", "repeat": "mon"}, "1 to"),
        ({"raw": "01", "time": "07:00", "repeat": "day"}, "days"),
        ({"raw": "01", "time": "07:00", "repeat": "day", "days": [0]}, "1 to 31"),
        ({"raw": "01", "time": "07:00", "repeat": "day", "days": [32]}, "1 to 31"),
        ({"raw": "01", "time": "07:00", "repeat": "day", "days": [1, 1]}, "twice"),
        ({"raw": "01", "time": "07:00", "repeat": "day", "days": [True]}, "1 to 31"),
        (
            {"raw": "01", "time": "07:00", "repeat": "mon", "start_date": "2015-02-01", "end_date": "2015-01-01"},
            "before",
        ),
        ({"raw": "01", "time": "07:00", "repeat": "mon", "enabled": "yes"}, "enabled"),
        ({"raw": "01", "time": "07:00", "repeat": "mon", "remark": "r" * 1025}, "remark"),
        ({"raw": "01", "time": "07:00", "repeat": "none", "date": "2014-12-30"}, "already past"),
    ],
)
def test_malformed_device_bodies_are_form_invalid(body: dict[str, Any], detail: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_device_schedule(body, DID, NOW)
    assert caught.value.code == Code.FORM_INVALID
    assert detail in (caught.value.detail or "")
