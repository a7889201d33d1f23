"""Scheduler request bodies → typed schedules, for both forms of the Open API (cloud protocol §3.11).

* legacy multi-device form, ``POST /app/scheduler``: ``date`` (required when ``repeat`` is "none"), ``time``,
  ``repeat`` ("none" or a comma list of mon…sun), ``task`` (a list of ``{did, product_key, attrs}``),
  ``retry_count`` 0..60, ``retry_task`` "all" | "failed";
* per-device form, ``/app/devices/{did}/scheduler``: ``raw`` (hex P0) or ``attrs``, ``date``, ``time``, ``repeat``
  ("none", a weekday list or "day" with ``days`` 1..31), ``start_date``/``end_date``, ``enabled``, ``remark``.

Everything here is about the shape of the request; every refusal is 9015 "form invalid!" with a detail naming the
field. What needs the database or a product (is the device bound — 9017; are the attrs writable and in range — 9025,
checked by the codec at creation) is the HTTP layer's job. A one-off schedule whose date and time are already past
is refused here too, against the ``now`` the caller passes (the cloud's clock, injectable for tests).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.scheduler.recurrence import WEEKDAYS, Recurrence

__all__ = [
    "MAX_RETRY_COUNT",
    "MAX_TASKS",
    "RetryPolicy",
    "ScheduleRequest",
    "Task",
    "parse_device_schedule",
    "parse_legacy_schedule",
]

MAX_RETRY_COUNT = 60  # open-api-seed: "重复次数的范围为 0 ~ 60 次"
MAX_TASKS = 100  # one schedule's commands; the document sets no limit, a bound keeps one request cheap
MAX_REMARK = 1024  # §3.11 per-device form
MAX_RAW_BYTES = 1024
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}")
_DID = re.compile(r"[A-Za-z0-9]{1,32}")
_PRODUCT_KEY = re.compile(r"[0-9a-f]{32}")

RetryPolicy = Literal["all", "failed"]


@dataclass(frozen=True, slots=True)
class Task:
    """One command of a schedule: ``attrs`` (app values, checked by the codec later) or ``raw`` P0 bytes."""

    did: str
    product_key: str | None = None
    attrs: Mapping[str, Any] | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """A validated schedule; ``echo`` is the request as the list endpoints give it back (normalised)."""

    recurrence: Recurrence
    tasks: tuple[Task, ...]
    retry_count: int
    retry_task: RetryPolicy
    enabled: bool
    remark: str
    echo: dict[str, Any]


def _invalid(detail: str) -> ApiError:
    return ApiError(Code.FORM_INVALID, detail)


def _string(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name} must be a string, not {type(value).__name__}")
    return value


def _date(text: str, name: str) -> dt.date:
    if not _DATE.fullmatch(text):
        raise _invalid(f'{name} must be "YYYY-MM-DD", not {text[:40]!r}')
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _invalid(f"{name} is not a calendar date: {text!r}") from None


def _time(body: Mapping[str, Any]) -> dt.time:
    text = _string(body, "time")
    assert text is not None
    if not _TIME.fullmatch(text):
        raise _invalid(f'time must be "HH:MM" (UTC), not {text[:40]!r}')
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        raise _invalid(f"time is not a time of day: {text!r}")
    return dt.time(hours, minutes)


def _weekdays(text: str) -> frozenset[int]:
    names = [part.strip() for part in text.split(",")]
    unknown = [name for name in names if name not in WEEKDAYS]
    if unknown or not names:
        raise _invalid(f'repeat is "none" or a comma list of {",".join(WEEKDAYS)}; unknown: {unknown[:7]}')
    if len(set(names)) != len(names):
        raise _invalid(f"repeat names a weekday twice: {text!r}")
    return frozenset(WEEKDAYS.index(name) for name in names)


def _month_days(body: Mapping[str, Any]) -> frozenset[int]:
    days = body.get("days")
    if not isinstance(days, list) or not days:
        raise _invalid('repeat "day" needs days: a list of days of the month (1..31)')
    if not all(isinstance(day, int) and not isinstance(day, bool) and 1 <= day <= 31 for day in days):
        raise _invalid("days are whole numbers from 1 to 31")
    if len(set(days)) != len(days):
        raise _invalid("days names a day twice")
    return frozenset(days)


def _bounds(body: Mapping[str, Any]) -> tuple[dt.date | None, dt.date | None]:
    start_text, end_text = _string(body, "start_date", required=False), _string(body, "end_date", required=False)
    start = _date(start_text, "start_date") if start_text is not None else None
    end = _date(end_text, "end_date") if end_text is not None else None
    if start is not None and end is not None and end < start:
        raise _invalid(f"end_date {end} is before start_date {start}")
    return start, end


def _recurrence(body: Mapping[str, Any], now: dt.datetime, *, monthly_allowed: bool) -> Recurrence:
    at = _time(body)
    repeat = _string(body, "repeat")
    assert repeat is not None
    if repeat == "none":
        text = _string(body, "date", required=False)
        if text is None:
            raise _invalid('date is required when repeat is "none"')
        recurrence = Recurrence.once(_date(text, "date"), at)
        if recurrence.next_after(now) is None:
            raise _invalid(f"date and time {text} {at:%H:%M} UTC are already past")
        return recurrence
    start, end = _bounds(body) if monthly_allowed else (None, None)
    if repeat == "day":
        if not monthly_allowed:
            raise _invalid('repeat "day" belongs to the per-device scheduler; here: "none" or weekdays')
        return Recurrence.monthly(_month_days(body), at, start, end)
    return Recurrence.weekly(_weekdays(repeat), at, start, end)


def _attrs(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict) or not value:
        raise _invalid(f"{where} must be a non-empty object of datapoint values")
    if not all(isinstance(key, str) for key in value):
        raise _invalid(f"{where} keys are datapoint names")
    return dict(value)


def _did(value: object, where: str) -> str:
    if not isinstance(value, str) or not _DID.fullmatch(value):
        raise _invalid(f"{where} is not a device id")
    return value


def _retry(body: Mapping[str, Any]) -> tuple[int, RetryPolicy]:
    count = body.get("retry_count", 0)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_RETRY_COUNT:
        raise _invalid(f"retry_count is a whole number from 0 to {MAX_RETRY_COUNT}")
    policy = body.get("retry_task", "all")
    if policy not in ("all", "failed"):
        raise _invalid('retry_task is "all" or "failed"')
    return count, policy


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object")
    return body


def parse_legacy_schedule(body: object, now: dt.datetime) -> ScheduleRequest:
    """``POST /app/scheduler``'s body (the multi-device form of the document)."""
    body = _object(body)
    recurrence = _recurrence(body, now, monthly_allowed=False)
    raw_tasks = body.get("task")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise _invalid("task must be a non-empty list of {did, product_key, attrs}")
    if len(raw_tasks) > MAX_TASKS:
        raise _invalid(f"task has {len(raw_tasks)} entries; at most {MAX_TASKS}")
    tasks: list[Task] = []
    for index, item in enumerate(raw_tasks):
        where = f"task[{index}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object with did, product_key and attrs")
        product_key = item.get("product_key")
        if not isinstance(product_key, str) or not _PRODUCT_KEY.fullmatch(product_key):
            raise _invalid(f"{where}.product_key is not a product key")
        tasks.append(Task(_did(item.get("did"), f"{where}.did"), product_key, _attrs(item.get("attrs"), where)))
    if len({task.did for task in tasks}) != len(tasks):
        raise _invalid("task names a device twice")
    retry_count, retry_task = _retry(body)
    echo: dict[str, Any] = {"date": body["date"]} if body.get("date") is not None else {}
    echo |= {
        "time": f"{recurrence.at:%H:%M}",
        "repeat": body["repeat"],
        "task": [{"did": t.did, "product_key": t.product_key, "attrs": dict(t.attrs or {})} for t in tasks],
        "retry_count": retry_count,
        "retry_task": retry_task,
    }
    return ScheduleRequest(recurrence, tuple(tasks), retry_count, retry_task, True, "", echo)


def parse_device_schedule(body: object, did: str, now: dt.datetime) -> ScheduleRequest:
    """``POST``/``PUT /app/devices/{did}/scheduler``'s body (the per-device form)."""
    body = _object(body)
    did = _did(did, "did")
    recurrence = _recurrence(body, now, monthly_allowed=True)
    has_raw, has_attrs = body.get("raw") is not None, body.get("attrs") is not None
    if has_raw == has_attrs:
        raise _invalid("give either raw (hex P0) or attrs")
    if has_raw:
        text = _string(body, "raw")
        assert text is not None
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise _invalid("raw is a hex string of P0 bytes") from None
        if not raw or len(raw) > MAX_RAW_BYTES:
            raise _invalid(f"raw is 1 to {MAX_RAW_BYTES} bytes")
        task = Task(did, raw=raw)
    else:
        task = Task(did, attrs=_attrs(body.get("attrs"), "attrs"))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid("enabled is true or false")
    remark = _string(body, "remark", required=False) or ""
    if len(remark) > MAX_REMARK:
        raise _invalid(f"remark is at most {MAX_REMARK} characters")
    echo: dict[str, Any] = {
        key: body[key] for key in ("date", "repeat", "days", "start_date", "end_date") if body.get(key) is not None
    }
    echo.update(time=f"{recurrence.at:%H:%M}", enabled=enabled, remark=remark, did=did)
    echo["raw" if has_raw else "attrs"] = task.raw.hex() if task.raw is not None else dict(task.attrs or {})
    return ScheduleRequest(recurrence, (task,), 0, "all", enabled, remark, echo)
