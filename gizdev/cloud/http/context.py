"""What every handler needs, built once by the server and stored on the aiohttp application."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from gizdev.cloud.background import Background
from gizdev.cloud.broker.access import BrokerAccess
from gizdev.cloud.cache import TtlCache
from gizdev.cloud.codes import CodeBook, CodeSettings
from gizdev.cloud.devicebus import DeviceBus
from gizdev.cloud.messages import Sender
from gizdev.cloud.products import ProductCache
from gizdev.cloud.realtime import RealtimeHub, RealtimeSettings
from gizdev.cloud.security import (
    DEFAULT_PASSWORD_POLICY,
    KDF_DEFAULT,
    USER_TOKEN_LIFETIME_S,
    KdfParams,
    PasswordPolicy,
)
from gizdev.cloud.storage import App, Device, Storage, User
from gizdev.cloud.throttle import AbuseLimits, Throttle

__all__ = ["CONTEXT", "BindingEvents", "BrokerAccounts", "CloudContext", "HttpSettings", "NoBindingEvents"]

SESSION_CACHE_S = 1.0  # how long a token's lookup is trusted: a query per request cost a third of the throughput

MAX_BODY_BYTES = 64 * 1024  # the largest request body: a control with every binary point of a big product fits


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What the HTTP side tells devices and apps about the cloud, and its security knobs."""

    mqtt_host: str = "127.0.0.1"  # what provisioning hands to devices (where they can reach the broker)
    mqtt_port: int = 1883
    # What GET /app/bindings tells apps besides host/port (§3.9): the broker's TLS port (``port_s``), and the
    # realtime API's ports, plain (this HTTP server's own port, where /ws/app/v1 is served) and TLS. 0: none (this
    # cloud listens for TLS nowhere itself; a TLS proxy in front of it is announced with the serve options).
    mqtt_tls_port: int = 0
    ws_port: int = 0
    wss_port: int = 0
    # `gizdev cloud serve --refuse-plain-registration`: POST /dev/devices answers 9048, so that every new device
    # gets an MQTT password of its own through the encrypted API (device_api.py).
    refuse_plain_registration: bool = False
    # GET /console/api/apps lists the app ids and names to pick from at the console's sign-in (console.py says why
    # it can be switched off); the server turns it on only for a loopback listener.
    console_app_list: bool = False
    password_policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY
    kdf: KdfParams = KDF_DEFAULT
    token_lifetime_s: int = USER_TOKEN_LIFETIME_S
    max_body_bytes: int = MAX_BODY_BYTES
    hash_concurrency: int = 2  # password hashes at once: each takes the KDF's memory (64 MiB by default)
    limits: AbuseLimits = field(default_factory=AbuseLimits)  # 9041: logins, sign-ups, registrations
    # Third-party sign-up (§3.2 authData): the token-check URL of each provider offered (baidu, sina, qq), called
    # the way the provider's own API is (gizdev.cloud.oauth); a src not listed here is refused.
    oauth_endpoints: Mapping[str, str] = field(default_factory=dict)
    oauth_timeout_s: float = 5.0  # the whole provider call, connect to last byte
    codes: CodeSettings = field(default_factory=CodeSettings)  # app tokens, captchas, SMS codes, reset links
    # The address apps and mail readers reach this cloud at ("https://cloud.example.org"): the base of captcha
    # URLs and reset links. None: captcha URLs from the request's Host, reset links to the listener's address
    # (never the Host header: a forged one would send the victim's link to the forger's server).
    public_url: str | None = None
    broker_access: BrokerAccess | None = None  # answer an external broker's HTTP auth (http/broker_auth.py)


class BrokerAccounts(Protocol):
    """Where device MQTT logins are kept: the managed Mosquitto (an external broker's operator does this)."""

    async def add_device(self, did: str, password: str, product_key: str, *, hashed: bool = False) -> None: ...

    async def remove_device(self, did: str) -> bool: ...


class BindingEvents(Protocol):
    """Told by the bindings handlers when a user binds or unbinds a device (the realtime hub's
    ``s2c_binding_changed``); called on the handler's task, so it must return at once."""

    def binding_changed(self, uid: str, did: str, bound: bool) -> None: ...


class NoBindingEvents:
    """Nobody listens (an HTTP application without the realtime API)."""

    def binding_changed(self, uid: str, did: str, bound: bool) -> None:
        return None


@dataclass
class CloudContext:
    storage: Storage
    bus: DeviceBus
    products: ProductCache
    # Where SMS codes and mails go (gizdev.cloud.messages): the server gives the outbox unless SMTP or an SMS
    # webhook is configured. None: this context sends nothing, and what would send answers 9037.
    messages: Sender | None = None
    accounts: BrokerAccounts | None = None
    settings: HttpSettings = field(default_factory=HttpSettings)
    clock: Callable[[], float] = time.time
    binding_events: BindingEvents = field(default_factory=NoBindingEvents)
    realtime: RealtimeHub | None = None  # the WebSocket API's clients; None: no /ws/app/v1
    realtime_settings: RealtimeSettings = field(default_factory=RealtimeSettings)
    hashing: asyncio.Semaphore = field(init=False)  # settings.hash_concurrency password hashes at once
    codes: CodeBook = field(init=False)  # one-time codes in the storage
    throttle: Throttle = field(init=False)  # abuse counters in the storage
    background: Background = field(default_factory=Background)  # mails sent after the answer (reset links)
    origin: str = "http://127.0.0.1"  # the listener's own URL; the server sets it once it is bound
    apps: TtlCache[str, App] = field(default_factory=TtlCache)
    # token digest -> (appid, user), for SESSION_CACHE_S only: a disable from another process (`gizdev cloud user
    # disable`) is refused within that second, while a burst of requests with one token costs one query.
    sessions: TtlCache[str, tuple[str, User]] = field(default_factory=lambda: TtlCache(ttl_s=SESSION_CACHE_S))
    # (uid, did) -> (device row, bound?) for controls: the binding and disabling handlers of this process drop
    # their entries at once, so only another process's change (a second server on the same database) can take
    # up to the TTL to be seen. Presence is never cached (the device bus has it).
    device_access: TtlCache[tuple[str, str], tuple[Device, bool]] = field(default_factory=lambda: TtlCache(ttl_s=60.0))

    def __post_init__(self) -> None:
        self.hashing = asyncio.Semaphore(self.settings.hash_concurrency)
        self.codes = CodeBook(self.storage)
        self.throttle = Throttle(self.storage, self.now)

    def now(self) -> int:
        return int(self.clock())


CONTEXT = web.AppKey("gizdev_cloud_context", CloudContext)


def context_of(request: web.Request) -> CloudContext:
    return request.app[CONTEXT]
