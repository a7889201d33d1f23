"""The scheduler's runner: every tick, due schedules become runs, and runs are claimed, sent and recorded.

One runner per cloud worker (``CloudServer`` starts it once the device bus is up). The database decides who runs
what (:mod:`gizdev.cloud.storage.schedules`: claims with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single
writer on SQLite), so any number of workers on one database run each due time once.

An attempt delivers a command when the device is online (``DeviceBus.reachable``) and answered it:
the command goes out as a 0x0093 and the device's 0x0094 with the same sn comes back within ``ack_timeout_s``
(``DeviceBus.deliver``; GAgent answers once the MCU took it, and so does our bridge). A run succeeds when every
command was delivered, else it is retried ``retry_count`` times, ``retry_interval_s`` apart, with all commands or
only the failed ones (``retry_task``).

Runs are claimed ``batch`` at a time, their commands sent together, and the batch recorded before the next claim:
a worker killed mid-batch leaves at most ``batch`` runs whose delivery nobody knows (concluded ``interrupted``
once their lease is over, see :mod:`gizdev.cloud.storage.schedules`); every other run it had not claimed yet is
run by another worker.

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
from gizdev.cloud.storage import ClaimedRun, ScheduledCommand, Storage, StorageError
from gizdev.errors import BrokerError, ConfigError

__all__ = ["SchedulerRunner", "SchedulerSettings", "TickReport", "next_due"]

_LOGGER = logging.getLogger(__name__)


MAX_ACK_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    retry_interval_s: int = 30  # between the attempts of a failed run
    grace_s: int = 300  # how late a run may start (a cloud that was down) before it is logged "missed"
    tick_s: float | None = 1.0  # how often the runner looks for due work; None: only when tick() is called
    lease_s: int = 60  # how long a claim holds before another worker concludes it as interrupted
    batch: int = 10  # runs claimed, sent and recorded together (at most this many are lost with a killed worker)
    ack_timeout_s: float = 5.0  # how long a device has to answer a command (0x0094) before it counts as failed
    # The first tick waits this long after start: a managed broker restarted with the cloud, so its devices are
    # reconnecting, and a run that fell due while the cloud was down would otherwise find them all offline.
    start_delay_s: float = 10.0

    def __post_init__(self) -> None:
        # A batch's commands wait for their answers while its claims hold: a lease shorter than that would let
        # another worker conclude runs whose commands this one is still sending.
        if not 0 < self.ack_timeout_s <= MAX_ACK_TIMEOUT_S:
            raise ConfigError(f"scheduler ack timeout {self.ack_timeout_s:g} s: between 0 and {MAX_ACK_TIMEOUT_S} s")
        if self.lease_s < 2 * self.ack_timeout_s:
            raise ConfigError(f"scheduler lease {self.lease_s} s: at least twice the ack timeout")


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
                details = await asyncio.gather(*(self._attempt(claim) for claim in claims))
                results = list(zip(claims, details, strict=True))
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
        """Send the claimed run's commands, all at once: {did: delivered}."""
        detail = dict.fromkeys(claim.refused, False)
        delivered = await asyncio.gather(*(self._deliver(claim.run_id, command) for command in claim.commands))
        for command, ok in zip(claim.commands, delivered, strict=True):
            detail[command.did] = ok
        return detail

    async def _deliver(self, run_id: int, command: ScheduledCommand) -> bool:
        try:
            if not await self.bus.reachable(command.did):
                return False
            if await self.bus.deliver(command.did, command.p0, timeout_s=self.settings.ack_timeout_s):
                return True
            _LOGGER.info("scheduler: run %d: %s did not answer its command", run_id, command.did)
        except (BrokerError, StorageError) as exc:
            _LOGGER.info("scheduler: run %d: %s not sent: %s", run_id, command.did, exc)
        return False

    def _now(self) -> int:
        return int(self._clock())
