"""A small time-bounded cache for rows that are read on every request and (almost) never change.

The app of every Open API call, and a user's access to a device: database round trips on every request otherwise.
Entries live ``ttl_s`` (a change made by another process is seen within that time; one process sees its own
changes at once through :meth:`TtlCache.drop`). Size is bounded: when full, the oldest entries go first.

What must take effect at once is not cached: the token and the user behind it are looked up on every request
(``Storage.lookup_session``, one query), so that disabling a user from the admin CLI, which is another process
that cannot reach this cache, stops the user's next request rather than one up to ``ttl_s`` later.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float = 60.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, value = entry
        if self._clock() - stored_at > self.ttl_s:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    def drop_where(self, predicate: Callable[[K], bool]) -> None:
        """Forget every entry whose key matches (e.g. everything about one device)."""
        for key in [key for key in self._entries if predicate(key)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
