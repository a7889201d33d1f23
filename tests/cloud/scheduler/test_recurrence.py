"""Due times of one-off, weekly and monthly schedules, all in UTC whatever the caller's zone."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gizdev.cloud.scheduler import Recurrence

UTC = dt.UTC
BEIJING = dt.timezone(dt.timedelta(hours=8))


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_one_off_is_due_once_then_never() -> None:
    rule = Recurrence.once(dt.date(2026, 12, 3), dt.time(12, 0))
    assert rule.next_after(at("2026-12-02T08:00")) == at("2026-12-03T12:00")
    assert rule.next_after(at("2026-12-03T11:59:59")) == at("2026-12-03T12:00")
    assert rule.next_after(at("2026-12-03T12:00")) is None  # strictly after
    assert not rule.repeats


def test_weekly_runs_on_the_utc_weekday_across_the_day_boundary() -> None:
    # "mon 23:30" UTC is Tuesday 07:30 in Beijing: the weekday is UTC's.
    rule = Recurrence.weekly(frozenset({0}), dt.time(23, 30))
    tuesday_morning_in_beijing = dt.datetime(2026, 12, 8, 7, 0, tzinfo=BEIJING)  # Monday 23:00 UTC
    assert rule.next_after(tuesday_morning_in_beijing) == at("2026-12-07T23:30")
    assert rule.next_after(at("2026-12-07T23:30")) == at("2026-12-14T23:30")
    assert rule.next_after(at("2026-12-07T23:30")).weekday() == 0  # type: ignore[union-attr]


def test_weekday_list() -> None:
    rule = Recurrence.weekly(frozenset({0, 2, 4}), dt.time(6, 0))  # mon, wed, fri
    runs = rule.due_between(at("2026-11-30T00:00"), at("2026-12-07T23:59"))  # Monday 30 Nov .. Monday 7 Dec
    assert runs == [at(f"2026-{d}T06:00") for d in ("11-30", "12-02", "12-04", "12-07")]


def test_monthly_skips_months_without_the_day() -> None:
    rule = Recurrence.monthly(frozenset({31}), dt.time(0, 0))
    runs = rule.due_between(at("2027-01-01T00:00"), at("2027-06-30T00:00"))
    assert runs == [at(f"2027-{m}-31T00:00") for m in ("01", "03", "05")]


def test_bounds_are_inclusive() -> None:
    rule = Recurrence.weekly(
        frozenset(range(7)), dt.time(9, 15), start_date=dt.date(2026, 12, 10), end_date=dt.date(2026, 12, 12)
    )
    assert rule.due_between(at("2026-12-01T00:00"), at("2027-01-01T00:00")) == [
        at("2026-12-10T09:15"),
        at("2026-12-11T09:15"),
        at("2026-12-12T09:15"),
    ]
    assert rule.next_after(at("2026-12-12T09:15")) is None


def test_missed_runs_of_a_downtime_are_listed_oldest_first() -> None:
    rule = Recurrence.weekly(frozenset(range(7)), dt.time(12, 0))
    assert rule.due_between(at("2026-12-01T13:00"), at("2026-12-03T12:00")) == [
        at("2026-12-02T12:00"),
        at("2026-12-03T12:00"),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"at": dt.time(1, 0)},  # no kind
        {"at": dt.time(1, 0), "date": dt.date(2026, 1, 1), "weekdays": frozenset({1})},  # two kinds
        {"at": dt.time(1, 0, 30), "weekdays": frozenset({1})},  # seconds
        {"at": dt.time(1, 0, tzinfo=BEIJING), "weekdays": frozenset({1})},  # a zone
        {"at": dt.time(1, 0), "weekdays": frozenset({7})},
        {"at": dt.time(1, 0), "month_days": frozenset({0})},
        {"at": dt.time(1, 0), "month_days": frozenset({32})},
        {
            "at": dt.time(1, 0),
            "weekdays": frozenset({1}),
            "start_date": dt.date(2026, 2, 1),
            "end_date": dt.date(2026, 1, 1),
        },
    ],
)
def test_impossible_rules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Recurrence(**kwargs)  # type: ignore[arg-type]


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        Recurrence.once(dt.date(2026, 1, 1), dt.time(0, 0)).next_after(dt.datetime(2025, 1, 1))


@given(
    weekdays=st.frozensets(st.integers(0, 6), min_size=1),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    after=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_weekly_next_is_the_first_matching_minute_after(
    weekdays: frozenset[int], hour: int, minute: int, after: dt.datetime
) -> None:
    rule = Recurrence.weekly(weekdays, dt.time(hour, minute))
    due = rule.next_after(after)
    assert due is not None and due > after and due - after <= dt.timedelta(days=7)
    assert due.weekday() in weekdays and (due.hour, due.minute, due.second) == (hour, minute, 0)
    # Nothing matched in between: every earlier day's time at that hour is not after `after`, or not a listed day.
    day = after.date()
    while (candidate := dt.datetime.combine(day, dt.time(hour, minute), tzinfo=UTC)) < due:
        assert candidate <= after or candidate.weekday() not in weekdays
        day += dt.timedelta(days=1)


@given(
    days=st.frozensets(st.integers(1, 31), min_size=1),
    after=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_monthly_next_is_a_listed_day(days: frozenset[int], after: dt.datetime) -> None:
    due = Recurrence.monthly(days, dt.time(3, 4)).next_after(after)
    assert due is not None and due > after and due.day in days
    assert due - after <= dt.timedelta(days=62 + 31 * (min(days) > 28) * 2)


def test_a_rule_survives_its_json_form() -> None:
    """What the storage keeps (schedules.rule_json) gives back the same rule."""
    rules = [
        Recurrence.once(dt.date(2026, 12, 3), dt.time(12, 0)),
        Recurrence.weekly(frozenset({0, 6}), dt.time(23, 59), dt.date(2026, 1, 1), dt.date(2026, 6, 30)),
        Recurrence.monthly(frozenset({1, 31}), dt.time(0, 0)),
    ]
    for rule in rules:
        stored = json.loads(json.dumps(rule.to_json()))
        assert Recurrence.from_json(stored) == rule
    assert rules[1].to_json() == {
        "at": "23:59",
        "weekdays": [0, 6],
        "start_date": "2026-01-01",
        "end_date": "2026-06-30",
    }
