"""The values the storage hands back: frozen, slotted dataclasses; timestamps are Unix seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gizdev.schema.model import ProductSchema

__all__ = [
    "App",
    "Binding",
    "ClaimedRun",
    "Device",
    "LatestData",
    "PresenceUpdate",
    "Product",
    "Registration",
    "Schedule",
    "ScheduleAttempt",
    "ScheduleRun",
    "ScheduleSpec",
    "ScheduledCommand",
    "Token",
    "User",
]


@dataclass(frozen=True, slots=True)
class App:
    appid: str
    appsecret: str
    name: str
    created_at: int
    # The products whose devices this app may reach (schema version 4; `gizdev cloud app link`).
    product_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Product:
    product_key: str
    product_secret: str
    name: str
    schema: ProductSchema | None  # None: the product has no data points yet (Open API 9029)
    created_at: int


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """A broker connect (``online``) or disconnect of one device, for :meth:`Storage.set_online_many`."""

    did: str
    online: bool
    client_id: str | None = None  # kept from the last connect
    peer: str | None = None  # host:port


@dataclass(frozen=True, slots=True)
class Device:
    did: str
    mac: str  # 12 upper-case hex digits
    product_key: str
    passcode: str
    is_disabled: bool
    encrypted: bool  # registered through the encrypted device API (cloud protocol §1.3)
    registered_at: int
    last_seen: int | None
    is_online: bool
    online_changed_at: int | None
    broker_client_id: str | None
    broker_peer: str | None
    device_type: str = "normal"  # or "center_control" (the encrypted registration's `type`)
    # The broker's digest of the MQTT password the cloud gave the device at its encrypted registration; None: the
    # MQTT password is the passcode (the plain API's rule, cloud protocol §1.4).
    mqtt_password_hash: str | None = None
    wifi_hard_version: str = ""  # reported in the OTA checks (type 1: the module, type 2: the MCU); "" until then
    wifi_soft_version: str = ""
    mcu_hard_version: str = ""
    mcu_soft_version: str = ""


@dataclass(frozen=True, slots=True)
class Registration:
    """The answer to a device registration: the device, and whether this call created it."""

    device: Device
    created: bool

    @property
    def did(self) -> str:
        return self.device.did


@dataclass(frozen=True, slots=True)
class User:
    uid: str
    appid: str
    username: str | None
    phone_id: str | None
    password_hash: str | None
    is_anonymous: bool
    created_at: int
    is_disabled: bool = False  # by an admin: its tokens do not work, it cannot log in
    email: str | None = None  # folded (trimmed, NFKC, case-folded); unique within the app
    phone: str | None = None
    name: str = ""
    gender: str = "N"  # M | F | N
    birthday: str = ""  # YYYY-MM-DD or MM-DD
    address: str = ""
    lang: str = "en"
    remark: str = ""


@dataclass(frozen=True, slots=True)
class Token:
    token_hash: str
    uid: str
    appid: str
    expire_at: int
    created_at: int


@dataclass(frozen=True, slots=True)
class Binding:
    """A user's binding with the bound device (and its product's name), as GET /app/bindings lists them."""

    uid: str
    did: str
    remark: str
    dev_alias: str
    is_disabled: bool
    created_at: int
    device: Device
    product_name: str
    role: str = "normal"  # "special" for the device's first binder (Open API §3.9 Roles)
    dev_label: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LatestData:
    did: str
    attrs: dict[str, Any]
    updated_at: int


@dataclass(frozen=True, slots=True)
class ScheduledCommand:
    """One command of a schedule: the P0 for ``did``, encoded (and checked by the codec) when it was created."""

    did: str
    p0: bytes


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a schedule is made of, as the handlers hand it to the storage (create and replace)."""

    did: str | None  # the per-device form's device; None for the multi-device form
    request: dict[str, Any]  # the request as the list endpoints echo it
    rule: dict[str, Any]  # Recurrence.to_json
    commands: tuple[ScheduledCommand, ...]
    retry_count: int
    retry_task: str  # "all" or "failed"
    enabled: bool
    next_due_at: int | None  # None: no run left


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    uid: str
    did: str | None  # the per-device form's device; None for the multi-device form
    request: dict[str, Any]  # the request as the list endpoints echo it
    rule: dict[str, Any]  # Recurrence.to_json
    commands: tuple[ScheduledCommand, ...]
    retry_count: int
    retry_task: str  # "all" or "failed"
    enabled: bool
    created_at: int
    next_due_at: int | None  # None: no run left


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """One due time of a schedule: ``status`` pending, running, succeed, failed or missed."""

    id: int
    schedule_id: str
    due_at: int
    status: str
    attempts: int
    detail: dict[str, bool]  # did -> delivered, as of the last attempt
    finished_at: int | None


@dataclass(frozen=True, slots=True)
class ScheduleAttempt:
    run_id: int
    attempt: int  # 1 = the first
    worker: str
    started_at: int
    finished_at: int
    outcome: str  # delivered, failed, interrupted
    detail: dict[str, bool]


@dataclass(frozen=True, slots=True)
class ClaimedRun:
    """An attempt a worker claimed: send ``commands`` and report what was delivered before ``lease_until``."""

    run_id: int
    schedule_id: str
    due_at: int
    attempt: int  # the number of this attempt (1 = the first)
    commands: tuple[ScheduledCommand, ...]
    refused: tuple[str, ...]  # devices no longer bound to the schedule's user (or disabled): not delivered
    lease_until: int
