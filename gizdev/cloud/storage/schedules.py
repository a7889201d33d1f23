"""The scheduler's storage: schedules, their runs (one per due time) and each run's attempts.

Methods of :class:`~gizdev.cloud.storage.store.Storage` (mixed in from here to keep store.py to one job per
section); the same rules hold: one transaction per call, arguments checked first, only StorageErrors leave.

Exactly once, whatever the number of workers
--------------------------------------------
A run goes ``pending`` → ``running`` (claimed by one worker until ``lease_until``) → ``succeed`` / ``failed``, or
back to ``pending`` for a retry; a due time found more than the grace period late is stored ``missed`` instead.

* :meth:`ScheduleMethods.materialize_due_runs` turns due schedules into runs and moves ``next_due_at`` on, in one
  transaction holding the schedule rows (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite: the write lock, one writer
  at a time across processes). ``UNIQUE (schedule_id, due_at)`` makes a second run of one due time impossible even
  if that reasoning had a hole.
* :meth:`ScheduleMethods.claim_schedule_runs` claims pending runs the same way and marks them running for one
  worker; that commit comes before any command is sent.
* :meth:`ScheduleMethods.finish_schedule_attempts` records what was delivered, only for runs the worker still holds.

A worker that dies holding a claim leaves its runs ``running``; once the lease is over, the next claim concludes
that attempt as ``interrupted`` with its commands counted as not delivered (whether they left is unknown). It is
*not* resent on that account alone: resending might deliver a command twice, which is worse than the
documented failure. It is retried only if the schedule asks for retries, like any failed attempt. The runner
claims a few runs at a time and sends them at once (``SchedulerSettings.batch``), so a killed worker takes at most
that many unknown deliveries with it; the runs it had not claimed are claimed by the others as usual.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from gizdev.cloud.storage import validate as v
from gizdev.cloud.storage.errors import InvalidInput, NotFound
from gizdev.cloud.storage.models import (
    ClaimedRun,
    Schedule,
    ScheduleAttempt,
    ScheduledCommand,
    ScheduleRun,
    ScheduleSpec,
)
from gizdev.cloud.storage.tables import bindings, devices, schedule_attempts, schedule_runs, schedules

if TYPE_CHECKING:
    from gizdev.cloud.storage.store import _Conn

__all__ = ["MAX_MISSED_PER_SCHEDULE", "NextDue", "ScheduleMethods"]

SCHEDULE_ID = (re.compile(r"[0-9a-f]{24}"), "24 lower-case hex digits")
MAX_COMMANDS = 100
MAX_REQUEST_BYTES = 64 * 1024
#: A cloud down for months must not write a "missed" row per day it was away: beyond these, due times are skipped.
MAX_MISSED_PER_SCHEDULE = 60
_CONCLUDED = ("succeed", "failed", "missed")

#: The due time after a Unix time for a stored rule (Recurrence.from_json(rule).next_after), or None; passed in by
#: the runner so that the storage does not depend on the scheduler.
NextDue = Callable[[Mapping[str, Any], int], int | None]


def _schedule(row: sa.Row[Any]) -> Schedule:
    m = row._mapping
    commands = tuple(ScheduledCommand(item["did"], bytes.fromhex(item["p0"])) for item in json.loads(m["tasks_json"]))
    return Schedule(
        id=m["id"],
        uid=m["uid"],
        did=m["did"],
        request=json.loads(m["request_json"]),
        rule=json.loads(m["rule_json"]),
        commands=commands,
        retry_count=int(m["retry_count"]),
        retry_task=m["retry_task"],
        enabled=bool(m["enabled"]),
        created_at=int(m["created_at"]),
        next_due_at=None if m["next_due_at"] is None else int(m["next_due_at"]),
    )


def _run(row: sa.Row[Any]) -> ScheduleRun:
    m = row._mapping
    return ScheduleRun(
        id=int(m["id"]),
        schedule_id=m["schedule_id"],
        due_at=int(m["due_at"]),
        status=m["status"],
        attempts=int(m["attempts"]),
        detail=json.loads(m["detail_json"]),
        finished_at=None if m["finished_at"] is None else int(m["finished_at"]),
    )


def _commands_json(commands: Sequence[ScheduledCommand]) -> str:
    if not commands or len(commands) > MAX_COMMANDS:
        raise InvalidInput("commands", f"a schedule has 1 to {MAX_COMMANDS} commands")
    items = []
    for command in commands:
        if not isinstance(command, ScheduledCommand) or not isinstance(command.p0, bytes) or not command.p0:
            raise InvalidInput("commands", "each is a ScheduledCommand with a non-empty P0")
        items.append({"did": v.text("did", command.did, max_len=22, pattern=v.DID), "p0": command.p0.hex()})
    if len({item["did"] for item in items}) != len(items):
        raise InvalidInput("commands", "one command per device")
    return json.dumps(items, separators=(",", ":"))


def _document(field: str, value: object) -> str:
    encoded = v.attrs_json(field, value)  # a JSON object of bounded size and depth
    if len(encoded) > MAX_REQUEST_BYTES:
        raise InvalidInput(field, f"is more than {MAX_REQUEST_BYTES} bytes as JSON")
    return encoded


def _schedule_values(uid: str, spec: ScheduleSpec) -> dict[str, Any]:
    if not isinstance(spec, ScheduleSpec):
        raise InvalidInput("spec", f"must be a ScheduleSpec, not {type(spec).__name__}")
    if spec.retry_task not in ("all", "failed"):
        raise InvalidInput("retry_task", 'must be "all" or "failed"')
    return {
        "uid": v.text("uid", uid, max_len=32, pattern=v.UID),
        "did": None if spec.did is None else v.text("did", spec.did, max_len=22, pattern=v.DID),
        "request_json": _document("request", spec.request),
        "rule_json": _document("rule", spec.rule),
        "tasks_json": _commands_json(spec.commands),
        "retry_count": v.count("retry_count", spec.retry_count, low=0, high=60),
        "retry_task": spec.retry_task,
        "enabled": v.flag("enabled", spec.enabled),
        "next_due_at": None if spec.next_due_at is None else v.timestamp("next_due_at", spec.next_due_at),
    }


def _dids(targets_json: str) -> list[str]:
    return list(json.loads(targets_json))


class ScheduleMethods:
    """The scheduler's part of Storage (see the module docstring)."""

    if TYPE_CHECKING:

        def _transaction(self, *, write: bool) -> contextlib.AbstractAsyncContextManager[_Conn]: ...

        def _now(self) -> int: ...

    # --- schedules, as the Open API handlers use them -------------------------------------------------------------

    async def create_schedule(self, uid: str, spec: ScheduleSpec) -> Schedule:
        """Keep a schedule of user ``uid``; its id is new and random."""
        values = _schedule_values(uid, spec) | {"id": secrets.token_hex(12), "created_at": self._now()}
        async with self._transaction(write=True) as conn:
            await conn.execute(sa.insert(schedules).values(**values))
            row = (await conn.execute(sa.select(schedules).where(schedules.c.id == values["id"]))).one()
        return _schedule(row)

    async def replace_schedule(self, uid: str, schedule_id: str, spec: ScheduleSpec) -> Schedule:
        """Change a schedule of ``uid`` (PUT); its runs so far stay. :class:`NotFound` if it is not theirs."""
        schedule_id = v.text("schedule_id", schedule_id, max_len=24, pattern=SCHEDULE_ID)
        values = _schedule_values(uid, spec)
        async with self._transaction(write=True) as conn:
            owned = self._owned(uid, schedule_id, spec.did)
            result = await conn.execute(sa.update(schedules).where(*owned).values(**values))
            if result.rowcount == 0:
                raise NotFound("schedule", schedule_id)
            row = (await conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id))).one()
        return _schedule(row)

    @staticmethod
    def _owned(uid: str, schedule_id: str, did: str | None) -> list[sa.ColumnElement[bool]]:
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        where = [schedules.c.id == schedule_id, schedules.c.uid == uid]
        if did is None:
            where.append(schedules.c.did.is_(None))
        else:
            where.append(schedules.c.did == v.text("did", did, max_len=22, pattern=v.DID))
        return where

    async def get_schedule(self, uid: str, schedule_id: str, *, did: str | None) -> Schedule:
        """The schedule ``schedule_id`` of ``uid`` in that form (``did``); :class:`NotFound` otherwise."""
        schedule_id = v.text("schedule_id", schedule_id, max_len=24, pattern=SCHEDULE_ID)
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(sa.select(schedules).where(*self._owned(uid, schedule_id, did)))).first()
        if row is None:
            raise NotFound("schedule", schedule_id)
        return _schedule(row)

    async def list_schedules(self, uid: str, *, did: str | None, limit: int = 20, skip: int = 0) -> list[Schedule]:
        """The schedules of ``uid`` in one form (``did`` None: the multi-device form), newest first."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        limit = v.count("limit", limit, low=1, high=1000)
        skip = v.count("skip", skip, low=0, high=10**9)
        query = sa.select(schedules).where(schedules.c.uid == uid)
        if did is None:
            query = query.where(schedules.c.did.is_(None))
        else:
            query = query.where(schedules.c.did == v.text("did", did, max_len=22, pattern=v.DID))
        query = query.order_by(schedules.c.created_at.desc(), schedules.c.seq.desc()).limit(limit).offset(skip)
        async with self._transaction(write=False) as conn:
            return [_schedule(row) for row in (await conn.execute(query)).all()]

    async def delete_schedule(self, uid: str, schedule_id: str, *, did: str | None) -> None:
        """Delete a schedule of ``uid`` with its runs: no run of it starts afterwards. :class:`NotFound` if none."""
        schedule_id = v.text("schedule_id", schedule_id, max_len=24, pattern=SCHEDULE_ID)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(sa.delete(schedules).where(*self._owned(uid, schedule_id, did)))
            if result.rowcount == 0:
                raise NotFound("schedule", schedule_id)

    async def list_schedule_runs(self, schedule_id: str, *, limit: int = 20, skip: int = 0) -> list[ScheduleRun]:
        """The runs of a schedule that have something to tell (an attempt made, or missed), newest first."""
        schedule_id = v.text("schedule_id", schedule_id, max_len=24, pattern=SCHEDULE_ID)
        limit = v.count("limit", limit, low=1, high=1000)
        skip = v.count("skip", skip, low=0, high=10**9)
        query = (
            sa.select(schedule_runs)
            .where(
                schedule_runs.c.schedule_id == schedule_id,
                sa.or_(schedule_runs.c.status.in_(_CONCLUDED), schedule_runs.c.attempts > 0),
            )
            .order_by(schedule_runs.c.due_at.desc(), schedule_runs.c.id.desc())
            .limit(limit)
            .offset(skip)
        )
        async with self._transaction(write=False) as conn:
            return [_run(row) for row in (await conn.execute(query)).all()]

    async def list_schedule_attempts(self, schedule_id: str) -> list[ScheduleAttempt]:
        """Every attempt of every run of a schedule, oldest first (the runner's log)."""
        schedule_id = v.text("schedule_id", schedule_id, max_len=24, pattern=SCHEDULE_ID)
        query = (
            sa.select(schedule_attempts)
            .join(schedule_runs, schedule_runs.c.id == schedule_attempts.c.run_id)
            .where(schedule_runs.c.schedule_id == schedule_id)
            .order_by(schedule_attempts.c.id)
        )
        async with self._transaction(write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [
            ScheduleAttempt(
                run_id=int(m["run_id"]),
                attempt=int(m["attempt"]),
                worker=m["worker"],
                started_at=int(m["started_at"]),
                finished_at=int(m["finished_at"]),
                outcome=m["outcome"],
                detail=json.loads(m["detail_json"]),
            )
            for m in (row._mapping for row in rows)
        ]

    # --- the runner --------------------------------------------------------------------------------------------------

    async def materialize_due_runs(self, now: int, *, grace_s: int, next_due: NextDue, limit: int = 200) -> int:
        """Runs for the schedules due at ``now``: ``pending``, or ``missed`` when more than ``grace_s`` late.

        Returns how many schedules were handled (``limit`` at most; call again while it returns ``limit``).
        """
        now = v.timestamp("now", now)
        limit = v.count("limit", limit, low=1, high=10_000)
        due = (
            sa.select(schedules.c.id, schedules.c.rule_json, schedules.c.tasks_json, schedules.c.next_due_at)
            .where(schedules.c.enabled.is_(True), schedules.c.next_due_at <= now)
            .order_by(schedules.c.next_due_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=schedules)
        )
        async with self._transaction(write=True) as conn:
            rows = (await conn.execute(due)).all()
            for row in rows:
                m = row._mapping
                rule = json.loads(m["rule_json"])
                targets = json.dumps([item["did"] for item in json.loads(m["tasks_json"])])
                at: int | None = int(m["next_due_at"])
                missed = 0
                while at is not None and at <= now:
                    late = now - at > grace_s
                    if not late or missed < MAX_MISSED_PER_SCHEDULE:
                        await _insert_run(conn, m["id"], due_at=at, now=now, targets=targets, missed=late)
                    missed += late
                    at = next_due(rule, at)
                await conn.execute(sa.update(schedules).where(schedules.c.id == m["id"]).values(next_due_at=at))
        return len(rows)

    async def claim_schedule_runs(
        self, now: int, *, worker: str, lease_s: int, retry_interval_s: int, limit: int = 100
    ) -> list[ClaimedRun]:
        """Claim up to ``limit`` pending runs whose attempt is due for ``worker`` until ``now + lease_s``.

        First concludes the attempts of workers whose lease ran out (module docstring: ``interrupted``).
        """
        now = v.timestamp("now", now)
        worker = v.text("worker", worker, max_len=64, pattern=v.PRINTABLE)
        lease_until = now + v.count("lease_s", lease_s, low=1, high=86_400)
        lost = (
            _RUN_WITH_SCHEDULE.where(schedule_runs.c.status == "running", schedule_runs.c.lease_until < now)
            .limit(limit)
            .with_for_update(skip_locked=True, of=schedule_runs)
        )
        pending = (
            _RUN_WITH_SCHEDULE.where(schedule_runs.c.status == "pending", schedule_runs.c.next_attempt_at <= now)
            .order_by(schedule_runs.c.next_attempt_at, schedule_runs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=schedule_runs)
        )
        claimed: list[ClaimedRun] = []
        async with self._transaction(write=True) as conn:
            for row in (await conn.execute(lost)).all():
                m = row._mapping
                detail = dict.fromkeys(_dids(m["targets_json"]), False)
                await _conclude(
                    conn,
                    m,
                    worker=m["worker"] or "?",
                    started_at=int(m["next_attempt_at"] or now),
                    sent=detail,
                    now=now,
                    retry_interval_s=retry_interval_s,
                    interrupted=True,
                )
            rows = [row._mapping for row in (await conn.execute(pending)).all()]
            if not rows:
                return claimed
            # Checked at every run, not only at creation: a device unbound (or disabled) since is not controlled.
            pairs = {(m["uid"], did) for m in rows for did in _dids(m["targets_json"])}
            allowed = (
                sa.select(bindings.c.uid, bindings.c.did)
                .join(devices, devices.c.did == bindings.c.did)
                .where(
                    sa.tuple_(bindings.c.uid, bindings.c.did).in_(sorted(pairs)),
                    bindings.c.is_disabled.is_(False),
                    devices.c.is_disabled.is_(False),
                )
            )
            bound = {(row._mapping["uid"], row._mapping["did"]) for row in (await conn.execute(allowed)).all()}
            await conn.execute(
                sa.update(schedule_runs)
                .where(schedule_runs.c.id.in_([m["id"] for m in rows]))
                # next_attempt_at keeps the attempt's start while it runs (the attempt log's started_at)
                .values(status="running", worker=worker, lease_until=lease_until, next_attempt_at=now)
            )
            for m in rows:
                by_did = {item["did"]: item["p0"] for item in json.loads(m["tasks_json"])}
                targets = [did for did in _dids(m["targets_json"]) if did in by_did]
                claimed.append(
                    ClaimedRun(
                        run_id=int(m["id"]),
                        schedule_id=m["schedule_id"],
                        due_at=int(m["due_at"]),
                        attempt=int(m["attempts"]) + 1,
                        commands=tuple(
                            ScheduledCommand(did, bytes.fromhex(by_did[did]))
                            for did in targets
                            if (m["uid"], did) in bound
                        ),
                        refused=tuple(did for did in targets if (m["uid"], did) not in bound),
                        lease_until=lease_until,
                    )
                )
        return claimed

    async def finish_schedule_attempts(
        self,
        results: Iterable[tuple[ClaimedRun, Mapping[str, bool]]],
        now: int,
        *,
        worker: str,
        retry_interval_s: int,
    ) -> int:
        """Record the attempts ``worker`` made (``{did: delivered}`` per claimed run); returns how many it still
        held (a run deleted meanwhile, or concluded by another worker after the lease, is left alone)."""
        now = v.timestamp("now", now)
        worker = v.text("worker", worker, max_len=64, pattern=v.PRINTABLE)
        sent = {claim.run_id: detail for claim, detail in results}
        if not sent:
            return 0
        query = (
            _RUN_WITH_SCHEDULE.where(
                schedule_runs.c.id.in_(sorted(sent)),
                schedule_runs.c.status == "running",
                schedule_runs.c.worker == worker,
            )
            .order_by(schedule_runs.c.id)
            .with_for_update(of=schedule_runs)
        )
        async with self._transaction(write=True) as conn:
            held = [row._mapping for row in (await conn.execute(query)).all()]
            for m in held:
                await _conclude(
                    conn,
                    m,
                    worker=worker,
                    started_at=int(m["next_attempt_at"] or now),
                    sent={did: bool(ok) for did, ok in sent[int(m["id"])].items()},
                    now=now,
                    retry_interval_s=retry_interval_s,
                )
        return len(held)


_RUN_WITH_SCHEDULE = sa.select(
    *schedule_runs.c,
    schedules.c.uid,
    schedules.c.tasks_json,
    schedules.c.retry_count,
    schedules.c.retry_task,
).join(schedules, schedules.c.id == schedule_runs.c.schedule_id)


async def _insert_run(conn: _Conn, schedule_id: str, *, due_at: int, now: int, targets: str, missed: bool) -> None:
    values = {
        "schedule_id": schedule_id,
        "due_at": due_at,
        "status": "missed" if missed else "pending",
        "attempts": 0,
        "next_attempt_at": None if missed else now,
        "lease_until": None,
        "worker": None,
        "targets_json": targets,
        "detail_json": "{}",
        "finished_at": now if missed else None,
    }
    dialect = pg_dialect if conn.dialect.name == "postgresql" else sqlite_dialect
    stmt = (
        dialect.insert(schedule_runs)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[schedule_runs.c.schedule_id, schedule_runs.c.due_at])
    )
    await conn.execute(stmt)


async def _conclude(
    conn: _Conn,
    m: sa.RowMapping,
    *,
    worker: str,
    started_at: int,
    sent: Mapping[str, bool],
    now: int,
    retry_interval_s: int,
    interrupted: bool = False,
) -> None:
    """Log one attempt of run ``m`` and decide: succeed, retry (per the schedule's policy) or failed."""
    every = [item["did"] for item in json.loads(m["tasks_json"])]
    detail = {did: bool(json.loads(m["detail_json"]).get(did, False)) for did in every} | dict(sent)
    attempt = int(m["attempts"]) + 1
    delivered = all(detail.get(did) for did in every)
    outcome = "interrupted" if interrupted else "delivered" if sent and all(sent.values()) else "failed"
    await conn.execute(
        sa.insert(schedule_attempts).values(
            run_id=m["id"],
            attempt=attempt,
            worker=worker,
            started_at=started_at,
            finished_at=now,
            outcome=outcome,
            detail_json=json.dumps(dict(sent), separators=(",", ":")),
        )
    )
    values: dict[str, Any] = {
        "attempts": attempt,
        "detail_json": json.dumps(detail, separators=(",", ":")),
        "lease_until": None,
        "worker": None,
    }
    if delivered:
        values |= {"status": "succeed", "finished_at": now, "next_attempt_at": None}
    elif attempt <= int(m["retry_count"]):
        again = every if m["retry_task"] == "all" else [did for did in every if not detail.get(did)]
        values |= {"status": "pending", "next_attempt_at": now + retry_interval_s, "targets_json": json.dumps(again)}
    else:
        values |= {"status": "failed", "finished_at": now, "next_attempt_at": None}
    await conn.execute(sa.update(schedule_runs).where(schedule_runs.c.id == m["id"]).values(**values))
