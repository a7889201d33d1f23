"""The shared reconnect delays: doubling to a ceiling, reset, early wake-up, refused settings."""

from __future__ import annotations

import asyncio
import time

import pytest

from gizdev.backoff import Backoff
from tests.guards import run


def test_delays_double_up_to_the_ceiling_and_start_over_after_reset() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.step() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.delay == 1.0
    backoff.reset()
    assert backoff.step() == 0.1


def test_a_ceiling_below_the_first_delay_caps_it() -> None:
    backoff = Backoff(0.1, 0.05)
    assert [backoff.step() for _ in range(3)] == [0.05, 0.05, 0.05]


def test_another_factor() -> None:
    backoff = Backoff(1.0, 30.0, factor=3)
    assert [backoff.step() for _ in range(5)] == [1.0, 3.0, 9.0, 27.0, 30.0]


def test_wait_sleeps_the_delay_then_grows_it() -> None:
    backoff = Backoff(0.05, 1.0)
    started = time.monotonic()
    run(backoff.wait())
    assert time.monotonic() - started >= 0.045
    assert backoff.delay == pytest.approx(0.1)


def test_wait_ends_early_when_interrupted() -> None:
    async def scenario() -> float:
        backoff = Backoff(5.0, 10.0)
        interrupt = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, interrupt.set)
        started = time.monotonic()
        await backoff.wait(interrupt)
        assert backoff.delay == 10.0  # an interrupted wait still counts as a failure
        return time.monotonic() - started

    assert run(scenario()) < 2.0


@pytest.mark.parametrize(
    ("initial", "maximum", "factor"),
    [(0, 1, 2), (-1, 1, 2), (float("nan"), 1, 2), (1, 0, 2), (1, float("inf"), 2), (1, 2, 0.5)],
)
def test_bad_settings_are_refused(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum, factor)
