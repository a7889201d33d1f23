"""The scheduler's runner: every tick, due schedules become runs, and runs are claimed, sent and recorded.

One runner per cloud worker (``CloudServer`` starts it once the device bus is up). The database decides who runs
what (:mod:`gizdev.cloud.storage.schedules`: claims with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single
writer on SQLite), so any number of workers on one database run each due time once.

An attempt delivers a command when the device is online (as this worker's device bus holds it) and the command
was published (``DeviceBus.send_control``); a run succeeds when every command was delivered, else it is retried
``retry_count`` times, ``retry_interval_s`` apart, with all commands or only the failed ones (``retry_task``).

Time: the runner reads its clock (injectable: tests move it) and works in whole Unix seconds. A run due while no
worker was up is made on the first tick after start if it is at most ``grace_s`` late, else it is logged
``missed`` (the first tick waits ``start_delay_s``, for the devices to reconnect). ``tick_s`` None leaves ticking
to the caller (:meth:`SchedulerRunner.tick`), for tests that step the clock by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gizdev.cloud.devicebus import DeviceBus
from gizdev.cloud.scheduler.recurrence import Recurrence
from gizdev.cloud.storage import ClaimedRun, Storage, StorageError
from gizdev.errors import BrokerError

__all__ = ["SchedulerRunner", "SchedulerSettings", "TickReport", "next_due"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    retry_interval_s: int = 30  # between the attempts of a failed run
    grace_s: int = 300  # how late a run may start (a cloud that was down) before it is logged "missed"
    tick_s: float | None = 1.0  # how often the runner looks for due work; None: only when tick() is called
    lease_s: int = 60  # how long a claim holds before another worker concludes it as interrupted
    batch: int = 100  # runs claimed per transaction
    # The first tick waits this long after start: a managed broker restarted with the cloud, so its devices are
    # reconnecting, and a run that fell due while the cloud was down would otherwise find them all offline.
    start_delay_s: float = 10.0


@dataclass(frozen=True, slots=True)
class TickReport:
    schedules: int = 0  # schedules whose due times became runs
    attempts: int = 0  # attempts made and recorded
    delivered: int = 0  # commands delivered


def next_due(rule: Mapping[str, Any], after: int) -> int | None:
    """The stored rule's first due time after Unix time ``after`` (the storage's ``NextDue``)."""
    due = Recurrence.from_json(rule).next_after(dt.datetime.fromtimestamp(after, dt.UTC))
    return None if due is None else int(due.timestamp())


def _worker_name() -> str:
    host = re.sub(r"[^!-~]", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class SchedulerRunner:
    """Runs the stored schedules through ``bus`` (module docstring); ``start``/``stop``, or ``tick`` by hand."""

    def __init__(
        self,
        storage: Storage,
        bus: DeviceBus,
        settings: SchedulerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        worker: str | None = None,
    ) -> None:
        self.storage = storage
        self.bus = bus
        self.settings = settings or SchedulerSettings()
        self.worker = worker or _worker_name()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one tick at a time in this worker (the timer's and a test's)

    async def start(self) -> None:
        if self.settings.tick_s is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(self.settings.tick_s), name="scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, tick_s: float) -> None:
        await asyncio.sleep(self.settings.start_delay_s)
        while True:
            try:
                await self.tick()
            except StorageError as exc:
                _LOGGER.warning("scheduler: tick failed, trying again in %.1f s: %s", tick_s, exc)
            except Exception:
                _LOGGER.exception("scheduler: tick failed")
            await asyncio.sleep(tick_s)

    async def tick(self) -> TickReport:
        """Make the runs now due, then claim, send and record attempts until none is due."""
        settings = self.settings
        async with self._lock:
            schedules = attempts = delivered = 0
            while True:
                handled = await self.storage.materialize_due_runs(
                    self._now(), grace_s=settings.grace_s, next_due=next_due, limit=settings.batch
                )
                schedules += handled
                if handled < settings.batch:
                    break
            while True:
                claims = await self.storage.claim_schedule_runs(
                    self._now(),
                    worker=self.worker,
                    lease_s=settings.lease_s,
                    retry_interval_s=settings.retry_interval_s,
                    limit=settings.batch,
                )
                results = [(claim, await self._attempt(claim)) for claim in claims]
                await self.storage.finish_schedule_attempts(
                    results, self._now(), worker=self.worker, retry_interval_s=settings.retry_interval_s
                )
                attempts += len(results)
                delivered += sum(sum(detail.values()) for _, detail in results)
                if len(claims) < settings.batch:
                    break
        if attempts:
            _LOGGER.info("scheduler: %d attempt(s), %d command(s) delivered", attempts, delivered)
        return TickReport(schedules, attempts, delivered)

    async def _attempt(self, claim: ClaimedRun) -> dict[str, bool]:
        """Send the claimed run's commands: {did: delivered}."""
        detail = dict.fromkeys(claim.refused, False)
        for command in claim.commands:
            if not self.bus.is_online(command.did):
                detail[command.did] = False
                continue
            try:
                await self.bus.send_control(command.did, command.p0)
            except BrokerError as exc:
                _LOGGER.info("scheduler: run %d: %s not sent: %s", claim.run_id, command.did, exc)
                detail[command.did] = False
            else:
                detail[command.did] = True
        return detail

    def _now(self) -> int:
        return int(self._clock())
