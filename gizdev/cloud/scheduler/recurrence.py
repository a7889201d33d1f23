"""When a schedule falls due: one-off, weekly and monthly recurrences at a UTC time of day.

The Open API gives every time in UTC (open-api-seed "定时任务": ``time`` "HH:MM", "注意:该时间为 UTC 时间"), so
the recurrence works on aware UTC datetimes only and never consults a local zone: a weekly schedule for
"mon 23:30" runs on Monday in UTC, whatever day it is in Beijing.

* one-off (``repeat`` "none"): ``date`` + ``time``, once;
* weekly (``repeat`` "mon,tue,…"): every listed weekday at ``time``;
* monthly (per-device form, ``repeat`` "day" + ``days`` 1..31): every listed day of the month at ``time``; a month
  without that day (31 in April) is skipped, not moved;
* ``start_date`` / ``end_date`` (per-device form, inclusive) bound the repeating kinds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["WEEKDAYS", "Recurrence"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # Python's weekday() order
_SEARCH_DAYS = 4 * 366  # a monthly "31" finds a day within months; a bounded search guards against empty rules


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A rule for due times; build with :meth:`once`, :meth:`weekly` or :meth:`monthly`."""

    at: dt.time  # UTC, minute precision
    date: dt.date | None = None  # one-off
    weekdays: frozenset[int] = frozenset()  # 0 = Monday
    month_days: frozenset[int] = frozenset()  # 1..31
    start_date: dt.date | None = None
    end_date: dt.date | None = None

    def __post_init__(self) -> None:
        kinds = (self.date is not None) + bool(self.weekdays) + bool(self.month_days)
        if kinds != 1:
            raise ValueError("a recurrence is exactly one of: a date, weekdays, days of the month")
        if self.at.tzinfo is not None or self.at.second or self.at.microsecond:
            raise ValueError(f"the time of day is a naive UTC HH:MM, not {self.at!r}")
        if not all(0 <= day <= 6 for day in self.weekdays):
            raise ValueError(f"weekdays are 0..6: {sorted(self.weekdays)}")
        if not all(1 <= day <= 31 for day in self.month_days):
            raise ValueError(f"days of the month are 1..31: {sorted(self.month_days)}")
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError(f"end date {self.end_date} is before start date {self.start_date}")

    @classmethod
    def once(cls, date: dt.date, at: dt.time) -> Recurrence:
        return cls(at=at, date=date)

    @classmethod
    def weekly(
        cls, weekdays: frozenset[int], at: dt.time, start_date: dt.date | None = None, end_date: dt.date | None = None
    ) -> Recurrence:
        return cls(at=at, weekdays=weekdays, start_date=start_date, end_date=end_date)

    @classmethod
    def monthly(
        cls, month_days: frozenset[int], at: dt.time, start_date: dt.date | None = None, end_date: dt.date | None = None
    ) -> Recurrence:
        return cls(at=at, month_days=month_days, start_date=start_date, end_date=end_date)

    @property
    def repeats(self) -> bool:
        return self.date is None

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first due time strictly after ``after`` (an aware datetime), in UTC; None when none is left."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime (the schedule's times are UTC)")
        after = after.astimezone(dt.UTC)
        if self.date is not None:
            due = self._on(self.date)
            return due if due > after else None
        day = after.date()
        if self.start_date is not None and day < self.start_date:
            day = self.start_date
        for _ in range(_SEARCH_DAYS):
            if self.end_date is not None and day > self.end_date:
                return None
            if self._matches(day):
                due = self._on(day)
                if due > after:
                    return due
            day += dt.timedelta(days=1)
        return None

    def due_between(self, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
        """Every due time in (after, until], oldest first (what a cloud that was down missed)."""
        found: list[dt.datetime] = []
        cursor = after
        while (due := self.next_after(cursor)) is not None and due <= until:
            found.append(due)
            cursor = due
        return found

    def to_json(self) -> dict[str, Any]:
        """The rule as a JSON object (what the storage keeps); :meth:`from_json` reads it back."""
        rule: dict[str, Any] = {"at": f"{self.at:%H:%M}"}
        if self.date is not None:
            rule["date"] = self.date.isoformat()
        if self.weekdays:
            rule["weekdays"] = sorted(self.weekdays)
        if self.month_days:
            rule["month_days"] = sorted(self.month_days)
        if self.start_date is not None:
            rule["start_date"] = self.start_date.isoformat()
        if self.end_date is not None:
            rule["end_date"] = self.end_date.isoformat()
        return rule

    @classmethod
    def from_json(cls, rule: Mapping[str, Any]) -> Recurrence:
        def day(name: str) -> dt.date | None:
            return dt.date.fromisoformat(rule[name]) if rule.get(name) is not None else None

        return cls(
            at=dt.time.fromisoformat(rule["at"]),
            date=day("date"),
            weekdays=frozenset(rule.get("weekdays", ())),
            month_days=frozenset(rule.get("month_days", ())),
            start_date=day("start_date"),
            end_date=day("end_date"),
        )

    def _matches(self, day: dt.date) -> bool:
        if self.weekdays:
            return day.weekday() in self.weekdays
        return day.day in self.month_days

    def _on(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, self.at, tzinfo=dt.UTC)
