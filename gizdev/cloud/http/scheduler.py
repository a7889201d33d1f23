"""Schedules (cloud protocol §3.11): the multi-device form ``/app/scheduler`` of the user's document and the
per-device form ``/app/devices/{did}/scheduler``.

The shape of a request is checked by :mod:`gizdev.cloud.scheduler.requests` (9015, one-off times already past
included, against the cloud's clock); here, what needs the database: every device is the caller's (9014 unknown,
9023 disabled, 9017 not bound) and every ``attrs`` is a valid write of its product, encoded by the codec now
(9029, 9025), so that a schedule that was accepted cannot fail on its values when it runs. Each schedule keeps the
P0 of each command; the runner (:mod:`gizdev.cloud.scheduler.runner`) sends them.

``GET /app/scheduler/{id}/logs``: the document titles it "获取最近一次定时任务执行日志" (get the *latest* run's log)
and shows one object, while apps that page through a history expect a list, newest first. Both: without query
parameters the answer is exactly the document's object for the latest run; with ``limit`` and/or ``skip`` it is
the list. A schedule that has not run yet answers 200 ``{}``: the request is right (the schedule exists and is
the caller's, so 9030 "scheduler not found!" would be false) and there is no run to describe — inventing a run
with null fields would break a client that trusts ``status`` to be "succeed" or "failed", while an empty object is
what this API answers elsewhere for "nothing to report" (``/app/control``; ``attr: {}`` of latest data).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, RootModel

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, EmptyReply, Query, Reply, Text
from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.http.control import accessible_device, attrs_p0
from gizdev.cloud.http.forms import invalid
from gizdev.cloud.scheduler.requests import (
    MAX_REMARK,
    MAX_RETRY_COUNT,
    MAX_TASKS,
    ScheduleRequest,
    parse_device_schedule,
    parse_legacy_schedule,
)
from gizdev.cloud.storage import (
    InvalidInput,
    NotFound,
    Schedule,
    ScheduledCommand,
    ScheduleRun,
    ScheduleSpec,
)

__all__ = ["api"]

api = Api("scheduler")

MAX_PAGE = 1000
_DEVICE_ERRORS = (
    Code.DEVICE_NOT_FOUND,
    Code.DEVICE_DISABLED,
    Code.DEVICE_NOT_BOUND,
    Code.DATAPOINT_DATA_NOT_FOUND,
    Code.ATTR_INVALID,
)


# --- request and answer models (validation of the types; requests.py checks the rest) ----------------------------


class ScheduleTask(Body):
    did: Text = Field(max_length=32)
    product_key: Text = Field(max_length=32)
    attrs: dict[Text, Any] = Field(description="data point name -> value, as for /app/control")


class LegacySchedule(Body):
    """``POST /app/scheduler`` as the document gives it."""

    date: Text | None = Field(default=None, max_length=10, description='"YYYY-MM-DD"; required when repeat is none')
    time: Text = Field(max_length=5, description='"HH:MM", UTC')
    repeat: Text = Field(max_length=64, description='"none", or a comma list of mon,tue,wed,thu,fri,sat,sun')
    task: list[ScheduleTask] = Field(min_length=1, max_length=MAX_TASKS)
    retry_count: int = Field(default=0, ge=0, le=MAX_RETRY_COUNT)
    retry_task: Literal["all", "failed"] = "all"


class DeviceSchedule(Body):
    """``POST``/``PUT /app/devices/{did}/scheduler``: ``raw`` (hex P0) or ``attrs``."""

    raw: Text | None = Field(default=None, max_length=2048, description="hex string of a P0, e.g. 010203")
    attrs: dict[Text, Any] | None = None
    date: Text | None = Field(default=None, max_length=10, description='"YYYY-MM-DD"; required when repeat is none')
    time: Text = Field(max_length=5, description='"HH:MM", UTC')
    repeat: Text = Field(max_length=64, description='"none", a comma list of mon..sun, or "day" (with days)')
    days: list[int] | None = Field(default=None, max_length=31, description="days of the month 1..31 (repeat day)")
    start_date: Text | None = Field(default=None, max_length=10)
    end_date: Text | None = Field(default=None, max_length=10)
    enabled: bool = True
    remark: Text | None = Field(default=None, max_length=MAX_REMARK)


class Page(Query):
    limit: int = Field(default=20, ge=1, le=MAX_PAGE)
    skip: int = Field(default=0, ge=0, le=10**9)


class LogPage(Query):
    """Neither given: the latest run alone (the document); either: the runs, newest first."""

    limit: int | None = Field(default=None, ge=1, le=MAX_PAGE)
    skip: int | None = Field(default=None, ge=0, le=10**9)


class ScheduleCreated(Reply):
    id: str


class LegacyScheduleItem(Reply):
    id: str
    created_at: str = Field(description='UTC, "2015-01-01T12:00:00"')
    date: str | None = None
    time: str
    repeat: str
    task: list[dict[str, Any]]
    retry_count: int
    retry_task: str


class LegacyScheduleList(RootModel[list[LegacyScheduleItem]]):
    pass


class DeviceScheduleItem(Reply):
    id: str
    created_at: str
    did: str
    product_key: str
    raw: str | None = None
    attrs: dict[str, Any] | None = None
    date: str | None = None
    time: str
    repeat: str
    days: list[int] | None = None
    start_date: str | None = None
    end_date: str | None = None
    enabled: bool
    remark: str


class DeviceScheduleList(RootModel[list[DeviceScheduleItem]]):
    pass


class RunLog(Reply):
    datetime: str = Field(description='the due time, UTC, "2015-01-02T12:00:00"')
    status: Literal["succeed", "failed", "missed"]
    detail: dict[str, bool] = Field(description="did -> whether its command was delivered")


class RunLogList(RootModel[list[RunLog]]):
    pass


# --- helpers ---------------------------------------------------------------------------------------------------


def _iso(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _now(ctx: CloudContext) -> dt.datetime:
    return dt.datetime.fromtimestamp(ctx.clock(), dt.UTC)


def _spec(
    request: ScheduleRequest, commands: list[ScheduledCommand], now: dt.datetime, did: str | None, **echo: str
) -> ScheduleSpec:
    due = request.recurrence.next_after(now)
    if due is None:  # a repeating rule whose end_date is past (a past one-off was refused by requests.py)
        raise invalid("the schedule never falls due: its end_date is past")
    return ScheduleSpec(
        did=did,
        request=request.echo | echo,
        rule=request.recurrence.to_json(),
        commands=tuple(commands),
        retry_count=request.retry_count,
        retry_task=request.retry_task,
        enabled=request.enabled,
        next_due_at=int(due.timestamp()),
    )


def _listed(schedule: Schedule) -> dict[str, Any]:
    return {"id": schedule.id, "created_at": _iso(schedule.created_at), **schedule.request}


def _log(run: ScheduleRun) -> dict[str, Any]:
    # A run still being retried has failed so far; "pending"/"running" are not statuses the document knows.
    status = run.status if run.status in ("succeed", "failed", "missed") else "failed"
    return {"datetime": _iso(run.due_at), "status": status, "detail": run.detail}


def _schedule_not_found(schedule_id: str) -> ApiError:
    return ApiError(Code.SCHEDULER_NOT_FOUND, f"no scheduler {schedule_id[:40]!r} of this user")


# --- the multi-device form -----------------------------------------------------------------------------------------


@api.endpoint(
    "POST",
    "/app/scheduler",
    summary="Create a schedule: commands to several bound devices at a UTC date/time or weekly",
    auth=Auth.USER,
    body=LegacySchedule,
    responses={201: ScheduleCreated},
    errors=_DEVICE_ERRORS,
)
async def create_schedule(call: Call[LegacySchedule, Empty]) -> ScheduleCreated:
    ctx, user = call.ctx, call.user
    now = _now(ctx)
    request = parse_legacy_schedule(call.body.model_dump(exclude_unset=True), now)
    commands: list[ScheduledCommand] = []
    for index, task in enumerate(request.tasks):
        device = await accessible_device(ctx, call.app, user.uid, task.did)
        if task.product_key != device.product_key:
            raise invalid(f"task[{index}].product_key is not the product of device {device.did}")
        commands.append(ScheduledCommand(device.did, await attrs_p0(ctx, device, task.attrs)))
    schedule = await ctx.storage.create_schedule(user.uid, _spec(request, commands, now, None))
    return ScheduleCreated(id=schedule.id)


@api.endpoint(
    "GET",
    "/app/scheduler",
    summary="The caller's schedules (multi-device form), newest first",
    auth=Auth.USER,
    query=Page,
    responses={200: LegacyScheduleList},
)
async def list_schedules(call: Call[Empty, Page]) -> web.Response:
    found = await call.ctx.storage.list_schedules(call.user.uid, did=None, limit=call.query.limit, skip=call.query.skip)
    return web.json_response([_listed(schedule) for schedule in found])


@api.endpoint(
    "DELETE",
    "/app/scheduler/{id:[^/]+}",
    summary="Delete a schedule: it runs no more",
    auth=Auth.USER,
    responses={200: EmptyReply},
    errors=(Code.SCHEDULER_NOT_FOUND,),
)
async def delete_schedule(call: Call[Empty, Empty]) -> EmptyReply:
    schedule_id = call.path("id")
    try:
        await call.ctx.storage.delete_schedule(call.user.uid, schedule_id, did=None)
    except (NotFound, InvalidInput):
        raise _schedule_not_found(schedule_id) from None
    return EmptyReply()


@api.endpoint(
    "GET",
    "/app/scheduler/{id:[^/]+}/logs",
    summary="The latest run of a schedule ({} before the first); with limit/skip, its runs newest first",
    auth=Auth.USER,
    query=LogPage,
    responses={200: RunLog},
    errors=(Code.SCHEDULER_NOT_FOUND,),
)
async def schedule_logs(call: Call[Empty, LogPage]) -> web.Response:
    ctx, schedule_id, page = call.ctx, call.path("id"), call.query
    try:
        await ctx.storage.get_schedule(call.user.uid, schedule_id, did=None)
    except (NotFound, InvalidInput):
        raise _schedule_not_found(schedule_id) from None
    if page.limit is None and page.skip is None:
        latest = await ctx.storage.list_schedule_runs(schedule_id, limit=1)
        return web.json_response(_log(latest[0]) if latest else {})
    runs = await ctx.storage.list_schedule_runs(schedule_id, limit=page.limit or 20, skip=page.skip or 0)
    return web.json_response([_log(run) for run in runs])


# --- the per-device form -------------------------------------------------------------------------------------------


async def _device_spec(call: Call[DeviceSchedule, Empty]) -> ScheduleSpec:
    ctx, did = call.ctx, call.path("did")
    now = _now(ctx)
    request = parse_device_schedule(call.body.model_dump(exclude_unset=True), did, now)
    device = await accessible_device(ctx, call.app, call.user.uid, did)
    (task,) = request.tasks
    p0 = task.raw if task.raw is not None else await attrs_p0(ctx, device, task.attrs)
    return _spec(request, [ScheduledCommand(device.did, p0)], now, device.did, product_key=device.product_key)


@api.endpoint(
    "GET",
    "/app/devices/{did:[^/]+}/scheduler",
    summary="The caller's schedules of one bound device, newest first",
    auth=Auth.USER,
    query=Page,
    responses={200: DeviceScheduleList},
    errors=(Code.DEVICE_NOT_FOUND, Code.DEVICE_DISABLED, Code.DEVICE_NOT_BOUND),
)
async def list_device_schedules(call: Call[Empty, Page]) -> web.Response:
    device = await accessible_device(call.ctx, call.app, call.user.uid, call.path("did"))
    found = await call.ctx.storage.list_schedules(
        call.user.uid, did=device.did, limit=call.query.limit, skip=call.query.skip
    )
    return web.json_response([_listed(schedule) for schedule in found])


@api.endpoint(
    "POST",
    "/app/devices/{did:[^/]+}/scheduler",
    summary="Create a schedule for one bound device (raw P0 or attrs; once, weekly or monthly)",
    auth=Auth.USER,
    body=DeviceSchedule,
    responses={201: ScheduleCreated},
    errors=_DEVICE_ERRORS,
)
async def create_device_schedule(call: Call[DeviceSchedule, Empty]) -> ScheduleCreated:
    schedule = await call.ctx.storage.create_schedule(call.user.uid, await _device_spec(call))
    return ScheduleCreated(id=schedule.id)


@api.endpoint(
    "PUT",
    "/app/devices/{did:[^/]+}/scheduler/{id:[^/]+}",
    summary="Replace a schedule of one bound device (the runs so far stay in its log)",
    auth=Auth.USER,
    body=DeviceSchedule,
    responses={200: ScheduleCreated},
    errors=(*_DEVICE_ERRORS, Code.SCHEDULER_NOT_FOUND),
)
async def replace_device_schedule(call: Call[DeviceSchedule, Empty]) -> ScheduleCreated:
    schedule_id = call.path("id")
    spec = await _device_spec(call)
    try:
        schedule = await call.ctx.storage.replace_schedule(call.user.uid, schedule_id, spec)
    except (NotFound, InvalidInput):
        raise _schedule_not_found(schedule_id) from None
    return ScheduleCreated(id=schedule.id)


@api.endpoint(
    "DELETE",
    "/app/devices/{did:[^/]+}/scheduler/{id:[^/]+}",
    summary="Delete a schedule of one device (also after the device was unbound): it runs no more",
    auth=Auth.USER,
    responses={200: EmptyReply},
    errors=(Code.SCHEDULER_NOT_FOUND,),
)
async def delete_device_schedule(call: Call[Empty, Empty]) -> EmptyReply:
    schedule_id = call.path("id")
    try:
        await call.ctx.storage.delete_schedule(call.user.uid, schedule_id, did=call.path("did"))
    except (NotFound, InvalidInput):
        raise _schedule_not_found(schedule_id) from None
    return EmptyReply()
