"""Counting abuse: failed logins, codes sent, anonymous sign-ups, device registrations (9041, HTTP 429).

Counts live in the database (``throttle_hits``), so every cloud worker behind a load balancer sees the same ones.
A :class:`Limit` is "at most ``count`` events per ``window_s`` seconds"; :meth:`Throttle.check` refuses once a key
is at its limit, with ``Retry-After`` saying when the oldest counted event leaves the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.storage import Storage

__all__ = ["AbuseLimits", "Limit", "Throttle", "Throttled"]


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window_s: int


@dataclass(frozen=True, slots=True)
class AbuseLimits:
    """The limits of the accounts and device endpoints (settings; tests that create hundreds raise them).

    Failed logins are counted per account and per client address; a success clears the account's failures, never
    the address's (one good account must not reset an address that guesses at others). Anonymous sign-ups count
    only when they create an account (the same ``phone_id`` again is a login), device registrations every
    well-formed attempt. The defaults leave a household or an office behind one address room to spare.
    """

    login_per_account: Limit = Limit(5, 15 * 60)
    login_per_address: Limit = Limit(20, 15 * 60)
    anonymous_sign_ups_per_address: Limit = Limit(30, 3600)
    device_registrations_per_address: Limit = Limit(100, 3600)
    # Wrong MQTT passwords per device, asked by a broker's HTTP auth (GAgent retries every few seconds).
    mqtt_logins_per_device: Limit = Limit(10, 5 * 60)


class Throttled(ApiError):
    """9041 "request was throttled", with the seconds until the key may try again."""

    def __init__(self, retry_after_s: int, detail: str) -> None:
        super().__init__(Code.REQUEST_THROTTLED, detail)
        self.retry_after_s = max(1, retry_after_s)


@dataclass(frozen=True, slots=True)
class Throttle:
    storage: Storage
    clock: Callable[[], int]

    async def check(self, key: str, limit: Limit, what: str) -> None:
        """Raise :class:`Throttled` if ``key`` already had ``limit.count`` events within the window."""
        now = self.clock()
        count, oldest = await self.storage.hits_since(key, now - limit.window_s + 1)
        if count >= limit.count:
            wait = (oldest if oldest is not None else now) + limit.window_s - now
            raise Throttled(wait, f"too many {what}; try again in {max(1, wait)} s")

    async def record(self, key: str) -> None:
        await self.storage.add_hit(key, self.clock())

    async def take(self, key: str, limit: Limit, what: str) -> None:
        """Check, then count this event (for rate limits where every attempt counts, such as codes sent)."""
        await self.check(key, limit, what)
        await self.record(key)

    async def clear(self, key: str) -> None:
        await self.storage.clear_hits(key)
