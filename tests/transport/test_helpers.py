"""The test helpers themselves: the leftover-task check must bite."""

from __future__ import annotations

import asyncio

import pytest

from tests.transport.helpers import run


def test_run_fails_on_leftover_tasks() -> None:
    async def leaves_a_task() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(5))

    with pytest.raises(AssertionError, match="tasks left running"):
        run(leaves_a_task())


def test_run_fails_on_timeout() -> None:
    with pytest.raises(TimeoutError):
        run(asyncio.sleep(5), timeout=0.05)
