"""The test guards: a test fails if it leaves asyncio tasks running, an error that asyncio only logs, or file
descriptors open.

- :func:`run` runs a test coroutine on a fresh loop with a timeout and fails on the tasks it left running and on
  the errors asyncio only logs (an exception in a callback, a task exception never retrieved);
  :func:`wind_down` is the task check for a loop that a test drives itself (``LoopThread.close`` runs it on its
  background loop before it stops it, and fails on the errors that loop reported too).
- :func:`fd_leak_guard` makes the autouse fixture that fails a test whose file descriptors outlive it. It
  snapshots the descriptors before the test's function-scoped fixtures are set up and compares after they are torn
  down, so a fixture's own cleanup is checked too. Descriptors that a broader-scoped fixture (the session's
  PostgreSQL, say) opens while a test first requests it belong to that fixture: :func:`pytest_fixture_setup`
  (imported into ``tests/conftest.py``) adds them to the snapshot.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

RUN_TIMEOUT_S = 30.0
# A closed transport calls connection_lost from call_soon and a cancelled task ends on its next turn: a close()
# that cancels without awaiting is done within a few turns. A task still pending after these is left behind.
SETTLE_TURNS = 10
# The kernel and other threads (a joined loop thread's sockets, a child's pipes) may release descriptors a moment
# after the test's last await; poll this long for them before calling a descriptor leaked.
FD_SETTLE_S = 1.0
_FD_POLL_S = 0.005


class LeftoverTasks(AssertionError):
    """Tasks still running on a loop when the code that owns them has finished."""

    def __init__(self, tasks: list[asyncio.Task[Any]], where: str = "the test's loop") -> None:
        self.tasks = tasks
        self.where = where
        super().__init__(f"tasks left running on {where}: " + "; ".join(map(repr, tasks)))


class LoopErrors(AssertionError):
    """Errors a loop reported to its exception handler (an exception in a callback, a task's exception never
    retrieved): asyncio only logs them, so the code that caused them carries on as if nothing happened."""

    def __init__(self, contexts: list[dict[str, Any]], where: str = "the test's loop") -> None:
        self.contexts = contexts
        self.where = where
        described = [f"{context.get('message')}: {context.get('exception')!r}" for context in contexts]
        super().__init__(f"errors reported on {where}: " + "; ".join(described))


class LeakedFds(AssertionError):
    """File descriptors open after the test that were not open before it (fd number -> what it refers to)."""

    def __init__(self, leaked: dict[int, str]) -> None:
        self.leaked = leaked
        super().__init__("file descriptors leaked: " + ", ".join(f"{fd} -> {what}" for fd, what in leaked.items()))


# ---- tasks --------------------------------------------------------------------------------------------------------


async def leftover_tasks(turns: int = SETTLE_TURNS) -> list[asyncio.Task[Any]]:
    """The running loop's tasks (other than the caller's) still pending after up to ``turns`` loop turns."""
    current = asyncio.current_task()
    for _ in range(turns):
        if all(task is current for task in asyncio.all_tasks()):
            return []
        await asyncio.sleep(0)
    return [task for task in asyncio.all_tasks() if task is not current]


async def wind_down(where: str) -> LeftoverTasks | None:
    """At the end of a loop's work: name the tasks left running, then cancel them and end async generators and
    the default executor, as ``asyncio.run`` does (run on the loop before stopping and closing it)."""
    current = asyncio.current_task()
    leftovers = await leftover_tasks()
    left = LeftoverTasks(leftovers, where) if leftovers else None  # named now: cancelling changes their repr
    for task in leftovers:
        task.cancel()
    if leftovers:
        await asyncio.wait(leftovers, timeout=5.0)
    # Anything started meanwhile by a cancelled task's cleanup is not waited for again; cancel it all the same.
    for task in asyncio.all_tasks():
        if task is not current:
            task.cancel()
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()
    return left


def record_loop_errors(loop: asyncio.AbstractEventLoop, into: list[dict[str, Any]]) -> None:
    """Append what ``loop`` reports to its exception handler to ``into`` (and log it as asyncio does)."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        into.append(context)
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def run(coro: Coroutine[Any, Any, T], timeout: float = RUN_TIMEOUT_S) -> T:
    """Run a test coroutine on a fresh loop; fail on timeout, on tasks it left running or on errors the loop
    reported to its exception handler (up to its close)."""
    reported: list[dict[str, Any]] = []

    async def guarded() -> T:
        record_loop_errors(asyncio.get_running_loop(), reported)
        try:
            async with asyncio.timeout(timeout):
                result = await coro
        except BaseException as exc:
            # The test already failed; name what it left (asyncio.run cancels it) without hiding the reason.
            current = asyncio.current_task()
            if leftovers := [task for task in asyncio.all_tasks() if task is not current]:
                exc.add_note(f"tasks left running: {leftovers}")
            raise
        if leftovers := await leftover_tasks():
            raise LeftoverTasks(leftovers)
        return result

    try:
        result = asyncio.run(guarded())
    except BaseException as exc:
        if reported:
            exc.add_note(str(LoopErrors(reported)))
        raise
    if reported:
        raise LoopErrors(reported)
    return result


# ---- file descriptors ---------------------------------------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each refers to (Linux ``/proc/self/fd``)."""
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the listing's own descriptor, or one closed meanwhile
            continue
    return fds


@dataclass
class FdWatch:
    """The descriptors open when a test started; a descriptor counts by number *and* target (numbers are reused)."""

    before: set[tuple[int, str]] = field(default_factory=lambda: set(open_fds().items()))

    def new(self) -> dict[int, str]:
        return {fd: what for fd, what in open_fds().items() if (fd, what) not in self.before}

    def leaked(self, settle_s: float = FD_SETTLE_S) -> dict[int, str]:
        """The new descriptors that stay open for ``settle_s`` (returns as soon as there are none)."""
        deadline = time.monotonic() + settle_s
        while (leaked := self.new()) and time.monotonic() < deadline:
            time.sleep(_FD_POLL_S)
        return leaked


_watches: list[FdWatch] = []  # the guards of the test being run (one, unless guards nest)


def fd_leak_guard(settle_s: float = FD_SETTLE_S) -> Callable[[], Iterator[None]]:
    """An autouse fixture failing a test whose file descriptors stay open (assign it in a conftest)."""

    @pytest.fixture(autouse=True)
    def no_fd_leak() -> Iterator[None]:
        watch = FdWatch()
        _watches.append(watch)
        try:
            yield
        finally:
            _watches.remove(watch)
        if leaked := watch.leaked(settle_s):
            raise LeakedFds(leaked)

    return no_fd_leak


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Descriptors a broader-scoped fixture opens during a test's setup are that fixture's, not the test's."""
    if not _watches or fixturedef.scope == "function":
        return (yield)
    before = set(open_fds().items())
    try:
        return (yield)
    finally:
        opened = set(open_fds().items()) - before
        for watch in _watches:
            watch.before |= opened
