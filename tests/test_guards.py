"""The test guards themselves: a task or a file descriptor a test leaves behind must fail it."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import threading

import pytest

from tests.conftest import REPO_ROOT
from tests.guards import FdWatch, LeakedFds, LeftoverTasks, LoopErrors, run
from tests.loop_thread import LoopThread

# ---- run() ----------------------------------------------------------------------------------------------------


def test_run_fails_on_a_leftover_task_and_names_it() -> None:
    async def leaves_a_task() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(5), name="the-forgotten-one")

    with pytest.raises(LeftoverTasks, match="the-forgotten-one") as info:
        run(leaves_a_task())
    assert [task.get_name() for task in info.value.tasks] == ["the-forgotten-one"]


def test_run_fails_on_timeout() -> None:
    with pytest.raises(TimeoutError):
        run(asyncio.sleep(5), timeout=0.05)


def test_run_accepts_a_task_cancelled_without_awaiting_it() -> None:
    # What a close() that cancels its task and returns does: the task ends on the loop's next turns.
    async def cancels_and_returns() -> int:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(5))
        await asyncio.sleep(0)
        task.cancel()
        return 7

    assert run(cancels_and_returns()) == 7


def test_run_keeps_the_test_failure_and_notes_the_leftovers() -> None:
    async def fails_with_a_task_running() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(5), name="still-here")
        raise ValueError("the test's own failure")

    with pytest.raises(ValueError, match="the test's own failure") as info:
        run(fails_with_a_task_running())
    assert any("still-here" in note for note in info.value.__notes__)


def test_run_fails_on_an_error_asyncio_only_logs() -> None:
    def broken_callback() -> None:
        raise KeyError("lost in a callback")

    async def schedules_a_broken_callback() -> None:
        asyncio.get_running_loop().call_soon(broken_callback)
        await asyncio.sleep(0)

    with pytest.raises(LoopErrors, match=r"Exception in callback.*lost in a callback") as info:
        run(schedules_a_broken_callback())
    assert [type(context["exception"]) for context in info.value.contexts] == [KeyError]


# ---- LoopThread -----------------------------------------------------------------------------------------------


def test_loop_thread_close_fails_on_a_task_its_stop_left_and_still_ends_the_loop() -> None:
    async def start() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(30), name="server-housekeeping")

    async def stop() -> None:  # forgets the task
        pass

    thread = LoopThread("guarded-loop", start, stop)
    thread.start()
    with pytest.raises(LeftoverTasks, match=r"guarded-loop's loop.*server-housekeeping"):
        thread.close()
    assert not thread._thread.is_alive()
    assert thread._loop.is_closed()


def test_loop_thread_close_fails_on_an_error_its_loop_only_logged() -> None:
    def broken_callback() -> None:
        raise KeyError("lost on the server's loop")

    async def start() -> None:
        asyncio.get_running_loop().call_soon(broken_callback)

    async def stop() -> None:
        pass

    thread = LoopThread("noisy-loop", start, stop)
    thread.start()
    with pytest.raises(LoopErrors, match=r"noisy-loop's loop.*lost on the server's loop"):
        thread.close()
    assert thread._loop.is_closed()


def test_loop_thread_close_passes_when_stop_ends_what_start_began() -> None:
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.get_running_loop().create_task(asyncio.sleep(30)))

    async def stop() -> None:
        tasks[0].cancel()

    thread = LoopThread("tidy-loop", start, stop)
    thread.start()
    thread.close()
    assert tasks[0].cancelled()


# ---- file descriptors -----------------------------------------------------------------------------------------


def test_fd_watch_names_a_socket_left_open_and_not_one_closed() -> None:
    watch = FdWatch()
    kept, closed = socket.socketpair()
    closed.close()
    try:
        leaked = watch.leaked(settle_s=0.05)
        assert list(leaked) == [kept.fileno()]
        assert leaked[kept.fileno()].startswith("socket:[")
        assert f"{kept.fileno()} -> socket:[" in str(LeakedFds(leaked))
    finally:
        kept.close()
    assert watch.leaked(settle_s=0) == {}


def test_fd_watch_waits_for_a_descriptor_another_thread_closes_a_moment_later() -> None:
    watch = FdWatch()
    left, right = socket.socketpair()

    def close_both() -> None:
        left.close()
        right.close()

    closer = threading.Timer(0.05, close_both)
    closer.start()
    try:
        assert watch.leaked(settle_s=2.0) == {}
    finally:
        closer.join()


def test_fd_watch_counts_a_reused_number_with_another_target_as_new() -> None:
    first, peer = socket.socketpair()
    number = first.fileno()
    watch = FdWatch()
    first.close()
    replacement = open("/dev/null")  # noqa: SIM115 - the kernel hands out the lowest free number: ``number``
    try:
        if replacement.fileno() != number:
            pytest.skip("the kernel did not reuse the number")
        assert watch.leaked(settle_s=0) == {number: "/dev/null"}
    finally:
        replacement.close()
        peer.close()


GUARDS_CONFTEST = """
    from tests.guards import fd_leak_guard, pytest_fixture_setup  # noqa: F401

    no_fd_leak = fd_leak_guard(settle_s=0.2)
"""

GUARDED_TESTS = """
    import socket
    import pytest

    KEPT = []


    @pytest.fixture(scope="session")
    def session_socket():
        pair = socket.socketpair()  # open for the whole session, first requested from inside a test's fixture
        yield pair
        for sock in pair:
            sock.close()


    @pytest.fixture
    def lazy(request):
        return request.getfixturevalue("session_socket")


    @pytest.fixture
    def leaky_fixture():
        KEPT.append(socket.socket())  # its teardown forgets to close it
        yield


    def test_leaks_a_socket():
        KEPT.append(socket.socket())


    def test_closes_its_socket():
        socket.socket().close()


    def test_session_fixture_keeps_its_sockets(lazy):
        assert lazy[0].fileno() > 0


    def test_a_fixture_teardown_leaks(leaky_fixture):
        pass
"""


def test_fd_leak_fixture_fails_a_leaking_test_or_fixture_but_not_a_session_fixture(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makeconftest(textwrap.dedent(GUARDS_CONFTEST))
    pytester.makepyfile(test_inner=textwrap.dedent(GUARDED_TESTS))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=4, errors=2)  # every test body passes; the guard errors at teardown
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_socket*",
            "E * tests.guards.LeakedFds: file descriptors leaked: * -> socket:*",
            "*ERROR at teardown of test_a_fixture_teardown_leaks*",
            "E * tests.guards.LeakedFds: file descriptors leaked: * -> socket:*",
        ]
    )
    errored = [line for line in result.stdout.lines if line.startswith("ERROR test_inner.py::")]
    assert [line.split()[1] for line in errored] == [
        "test_inner.py::test_leaks_a_socket",
        "test_inner.py::test_a_fixture_teardown_leaks",
    ]
