"""The scheduler's storage on SQLite and PostgreSQL: claims by concurrent workers (each its own engine) are
disjoint, a lost worker's claim is concluded ``interrupted`` after its lease, a device unbound since the schedule
was made is not controlled, and a long downtime logs a bounded number of missed runs."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable

from gizdev.cloud.scheduler.recurrence import Recurrence
from gizdev.cloud.scheduler.runner import next_due
from gizdev.cloud.storage import ScheduledCommand, ScheduleSpec, Storage
from gizdev.cloud.storage.schedules import MAX_MISSED_PER_SCHEDULE
from gizdev.schema.loader import parse_schema
from tests.cloud.scheduler.helpers import p0_write, utc
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA
from tests.guards import run

T = int(utc("2026-03-02T08:00:00").timestamp())
GRACE = 300
INTERVAL = 30


async def world(storage: Storage) -> tuple[str, list[str]]:
    await storage.add_app("app1", "secret", "test")
    parsed = parse_schema(TEMP_HUMI_SCHEMA)
    assert parsed.product_key is not None
    await storage.add_product(parsed.product_key, "0" * 32, parsed.name, parsed)
    user = await storage.create_user("app1", phone_id="p1")
    dids = []
    for index in range(2):
        did = (await storage.register_device(f"AABBCCDD{index:04X}", parsed.product_key, "PASS")).did
        await storage.bind(user.uid, did)
        dids.append(did)
    return user.uid, dids


def spec(dids: list[str], rule: Recurrence, *, retry_count: int = 0, temp: int = 1) -> ScheduleSpec:
    due = rule.next_after(dt.datetime.fromtimestamp(T - 60, dt.UTC))
    assert due is not None
    return ScheduleSpec(
        did=None,
        request={},
        rule=rule.to_json(),
        commands=tuple(ScheduledCommand(did, p0_write(temp, index)) for index, did in enumerate(dids)),
        retry_count=retry_count,
        retry_task="all",
        enabled=True,
        next_due_at=int(due.timestamp()),
    )


ONCE = Recurrence.once(dt.date(2026, 3, 2), dt.time(8, 0))


def with_storage(db_url: str, body: Callable[[Storage], Awaitable[None]]) -> None:
    async def go() -> None:
        storage = await Storage.open(db_url)
        try:
            await body(storage)
        finally:
            await storage.close()

    run(go(), 60)


def test_concurrent_workers_claim_each_run_once(db_url: str) -> None:
    async def body(storage: Storage) -> None:
        uid, dids = await world(storage)
        made = {(await storage.create_schedule(uid, spec(dids[:1], ONCE, temp=i % 100))).id for i in range(150)}
        other = await Storage.open(db_url)  # a second worker: its own engine and connections
        try:
            workers = {"w1": storage, "w2": other}

            async def materialize(who: Storage) -> None:
                while await who.materialize_due_runs(T, grace_s=GRACE, next_due=next_due, limit=7) == 7:
                    pass

            await asyncio.gather(*(materialize(who) for who in workers.values()))
            claims: dict[str, list[int]] = {name: [] for name in workers}

            async def claim(name: str) -> None:
                while got := await workers[name].claim_schedule_runs(
                    T, worker=name, lease_s=60, retry_interval_s=INTERVAL, limit=5
                ):
                    claims[name] += [c.run_id for c in got]
                    results = [(c, dict.fromkeys((cmd.did for cmd in c.commands), True)) for c in got]
                    assert await workers[name].finish_schedule_attempts(
                        results, T, worker=name, retry_interval_s=INTERVAL
                    ) == len(got)

            await asyncio.gather(*(claim(name) for name in workers))
        finally:
            await other.close()
        assert not set(claims["w1"]) & set(claims["w2"])
        assert len(claims["w1"]) + len(claims["w2"]) == 150
        for schedule_id in made:
            runs = await storage.list_schedule_runs(schedule_id)
            assert [(r.due_at, r.status, r.attempts) for r in runs] == [(T, "succeed", 1)]

    with_storage(db_url, body)


def test_a_lost_workers_claim_is_concluded_interrupted_after_its_lease(db_url: str) -> None:
    async def body(storage: Storage) -> None:
        uid, dids = await world(storage)
        no_retry = (await storage.create_schedule(uid, spec(dids, ONCE))).id
        one_retry = (await storage.create_schedule(uid, spec(dids, ONCE, retry_count=1, temp=2))).id
        assert await storage.materialize_due_runs(T, grace_s=GRACE, next_due=next_due) == 2
        held = await storage.claim_schedule_runs(T, worker="lost", lease_s=60, retry_interval_s=INTERVAL)
        assert len(held) == 2  # ... and the worker dies without reporting
        assert await storage.claim_schedule_runs(T + 59, worker="w2", lease_s=60, retry_interval_s=INTERVAL) == []
        assert await storage.claim_schedule_runs(T + 61, worker="w2", lease_s=60, retry_interval_s=INTERVAL) == []
        (failed,) = await storage.list_schedule_runs(no_retry)
        assert (failed.status, failed.detail) == ("failed", dict.fromkeys(dids, False))
        attempts = await storage.list_schedule_attempts(no_retry)
        assert [(a.worker, a.outcome, a.detail) for a in attempts] == [
            ("lost", "interrupted", dict.fromkeys(dids, False))
        ]
        # The lost worker's report, if it ever comes, changes nothing: the run is no longer its.
        late = [(claim, dict.fromkeys(dids, True)) for claim in held]
        assert await storage.finish_schedule_attempts(late, T + 62, worker="lost", retry_interval_s=INTERVAL) == 0
        assert (await storage.list_schedule_runs(no_retry))[0].status == "failed"
        # With a retry left, the interrupted attempt counts as a failed one: retried after the interval.
        assert (
            await storage.claim_schedule_runs(T + 61 + INTERVAL - 1, worker="w2", lease_s=60, retry_interval_s=INTERVAL)
            == []
        )
        (again,) = await storage.claim_schedule_runs(
            T + 61 + INTERVAL, worker="w2", lease_s=60, retry_interval_s=INTERVAL
        )
        assert (again.schedule_id, again.attempt, [c.did for c in again.commands]) == (one_retry, 2, dids)

    with_storage(db_url, body)


def test_a_device_unbound_or_disabled_since_is_not_controlled(db_url: str) -> None:
    async def body(storage: Storage) -> None:
        uid, dids = await world(storage)
        await storage.create_schedule(uid, spec(dids, ONCE))
        await storage.unbind(uid, dids[1])
        await storage.materialize_due_runs(T, grace_s=GRACE, next_due=next_due)
        (claim,) = await storage.claim_schedule_runs(T, worker="w", lease_s=60, retry_interval_s=INTERVAL)
        assert [c.did for c in claim.commands] == [dids[0]] and claim.refused == (dids[1],)
        await storage.create_schedule(uid, spec(dids[:1], Recurrence.once(dt.date(2026, 3, 2), dt.time(8, 1))))
        await storage.disable_device(dids[0])
        await storage.materialize_due_runs(T + 60, grace_s=GRACE, next_due=next_due)
        (claim,) = await storage.claim_schedule_runs(T + 60, worker="w", lease_s=60, retry_interval_s=INTERVAL)
        assert claim.commands == () and claim.refused == (dids[0],)

    with_storage(db_url, body)


def test_a_long_downtime_logs_a_bounded_number_of_missed_runs(db_url: str) -> None:
    async def body(storage: Storage) -> None:
        uid, dids = await world(storage)
        daily = Recurrence.weekly(frozenset(range(7)), dt.time(8, 0))
        schedule = await storage.create_schedule(uid, spec(dids, daily))
        two_years_later = T + 730 * 86_400 + 60
        await storage.materialize_due_runs(two_years_later, grace_s=GRACE, next_due=next_due)
        runs = await storage.list_schedule_runs(schedule.id, limit=1000)
        assert len(runs) == MAX_MISSED_PER_SCHEDULE and {run.status for run in runs} == {"missed"}
        assert runs[-1].due_at == T  # the oldest ones are logged; the rest of the two years is skipped
        # Today's (within the grace) is pending: the next claim takes it.
        (claim,) = await storage.claim_schedule_runs(two_years_later, worker="w", lease_s=60, retry_interval_s=30)
        assert claim.due_at == two_years_later - 60
        stored = await storage.get_schedule(uid, schedule.id, did=None)
        assert stored.next_due_at == two_years_later - 60 + 86_400

    with_storage(db_url, body)
