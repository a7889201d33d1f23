"""The :class:`Storage` the HTTP handlers, the broker hooks and the CLI call.

Every public method is one transaction: it validates its arguments first (:class:`InvalidInput`, nothing touched),
then reads and writes inside a single ``BEGIN … COMMIT``; any error rolls the whole call back. SQLAlchemy and driver
exceptions never leave this module: a clash of unique keys becomes :class:`AlreadyExists`, anything else
:class:`StorageUnavailable`.

Device registration rule (``register_device``)
----------------------------------------------
Sources: cloud protocol §1.1 step 4 — "Optionally **disable** an old DID (HTTP DELETE) when the device re-registered
with a new passcode"; §1.2 — ``DELETE /dev/devices`` with body ``did=<old did>&passcode=<old passcode>``; GAgent
wire observations §2 (DELETE "is sent only when an old DID is stored") and §5 (the device's config file keeps
"DID, passcode, old DID"). The DELETE authenticates the *old* DID with the *old* passcode after the device has
registered again, so that registration must have produced a different DID and left the old one, with its old
passcode, in place. Hence, for a plain registration (``POST /dev/devices``) of ``(mac, product_key, passcode)``
among the devices with that MAC and product that are not disabled:

1. one of them has this passcode → that device's DID is returned, nothing changes (a retry, or a device that
   lost the 201 reply);
2. otherwise → a new DID is created; the older DIDs stay enabled, with their passcodes, bindings and data, until the
   device (or an admin) disables them through ``disable_device`` (the DELETE);
3. a disabled DID is never handed out again: registering after it was disabled creates a new DID.

Encrypted registration (§1.3, ``POST /dev/<product_key>/device``: "Once a device used this endpoint, its DID is
fixed, re-registration returns the same DID, and the plain register/provision/DELETE endpoints are refused for it"):

4. an enabled encrypted device with this MAC and product exists → its DID is returned; a new passcode replaces the
   stored one (the device is the one that knows its passcode), and so does the digest of the new MQTT password the
   cloud gave it in this registration's reply (``gizdev.cloud.http.device_api``);
5. otherwise an enabled plain device with this passcode is converted to encrypted and its DID returned; otherwise a
   new encrypted device is created;
6. a plain registration while an enabled encrypted device exists for the MAC and product is refused with
   :class:`EncryptionRequired` (9048).

Registrations of one product are serialised (PostgreSQL: ``SELECT … FOR UPDATE`` of the product row; SQLite: the
write lock), so two concurrent requests for the same device cannot both create a DID.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from gizdev.cloud.storage import validate as v
from gizdev.cloud.storage.engine import WRITE_OPTION, make_engine, make_inline_sqlite_engine
from gizdev.cloud.storage.errors import (
    AlreadyExists,
    DatabaseMissing,
    DeviceDisabled,
    EncryptionRequired,
    InvalidInput,
    NotFound,
    PasscodeMismatch,
    StorageError,
    StorageUnavailable,
)
from gizdev.cloud.storage.migrations import current_version, migrate
from gizdev.cloud.storage.models import (
    App,
    Binding,
    Device,
    LatestData,
    PresenceUpdate,
    Product,
    Registration,
    Token,
    User,
)
from gizdev.cloud.storage.schedules import ScheduleMethods
from gizdev.cloud.storage.tables import (
    app_products,
    app_tokens,
    apps,
    bindings,
    captcha_images,
    devices,
    latest_data,
    one_time_codes,
    products,
    throttle_hits,
    tokens,
    user_identities,
    users,
)
from gizdev.errors import SchemaError
from gizdev.protocol.identifiers import DID_LENGTH, new_did
from gizdev.schema.loader import parse_schema, schema_to_json
from gizdev.schema.model import ProductSchema

__all__ = ["DID_LEN", "MAX_PAGE", "Storage"]

DID_LEN = DID_LENGTH  # cloud protocol §1.1: "valid DID is 22 chars"
MAX_NAME_LEN = 128
MAX_REMARK_LEN = 1024
MAX_ALIAS_LEN = 128
MAX_USERNAME_LEN = 128
MAX_PHONE_ID_LEN = 128
MAX_PASSWORD_HASH_LEN = 512
MAX_EMAIL_LEN = 254
MAX_PHONE_LEN = 32
MAX_EXTERNAL_UID_LEN = 128  # a provider's id of a person (qq openid: 32 hex digits; baidu, sina: numbers)
#: The columns a user's account may change (update_user), with their length limits; the HTTP layer decides who may
#: change which, and normalises emails and phones before they get here.
USER_UPDATABLE: Mapping[str, int] = {
    "username": MAX_USERNAME_LEN,
    "password_hash": MAX_PASSWORD_HASH_LEN,
    "email": MAX_EMAIL_LEN,
    "phone": MAX_PHONE_LEN,
    "phone_id": MAX_PHONE_ID_LEN,
    "name": 128,
    "gender": 1,
    "birthday": 10,
    "address": 256,
    "lang": 16,
    "remark": 1024,
}
#: The columns that name an account (unique within an app): a user is found by any of them.
USER_KEYS = ("username", "email", "phone", "phone_id")
MAX_APPSECRET_LEN = 128
MAX_CLIENT_ID_LEN = 64
MAX_PEER_LEN = 128
MAX_PAGE = 1000  # largest limit a list call accepts
MAX_LABELS = 20  # dev_label entries per binding (PUT /app/bindings/{did})
MAX_LABEL_LEN = 64
MAX_PASSWORD_DIGEST_LEN = 256
DEVICE_TYPES = ("normal", "center_control")  # what the encrypted registration's `type` may say (§1.3)
# What a device reports as hard_version/soft_version in its OTA checks: GAgent sends 8 characters ("04020006",
# "000LINUX"); a little more is allowed, nothing that is not a plain identifier.
VERSION = (re.compile(r"[A-Za-z0-9._-]{1,16}"), "1-16 letters, digits, '.', '_' or '-'")
MAX_SKIP = 10**9


def _reason(exc: BaseException) -> str:
    # DBAPIError's str() carries the SQL and its parameters; the driver's own message is what explains the failure.
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


def _device(row: sa.Row[Any]) -> Device:
    m = row._mapping
    return Device(
        did=m["did"],
        mac=m["mac"],
        product_key=m["product_key"],
        passcode=m["passcode"],
        is_disabled=bool(m["is_disabled"]),
        encrypted=bool(m["encrypted"]),
        registered_at=int(m["registered_at"]),
        last_seen=None if m["last_seen"] is None else int(m["last_seen"]),
        is_online=bool(m["is_online"]),
        online_changed_at=None if m["online_changed_at"] is None else int(m["online_changed_at"]),
        broker_client_id=m["broker_client_id"],
        broker_peer=m["broker_peer"],
        device_type=m["device_type"],
        mqtt_password_hash=m["mqtt_password_hash"],
        wifi_hard_version=m["wifi_hard_version"],
        wifi_soft_version=m["wifi_soft_version"],
        mcu_hard_version=m["mcu_hard_version"],
        mcu_soft_version=m["mcu_soft_version"],
    )


def _user(row: sa.Row[Any]) -> User:
    m = row._mapping
    return User(
        uid=m["uid"],
        appid=m["appid"],
        username=m["username"],
        phone_id=m["phone_id"],
        password_hash=m["password_hash"],
        is_anonymous=bool(m["is_anonymous"]),
        created_at=int(m["created_at"]),
        is_disabled=bool(m["is_disabled"]),
        email=m["email"],
        phone=m["phone"],
        name=m["name"],
        gender=m["gender"],
        birthday=m["birthday"],
        address=m["address"],
        lang=m["lang"],
        remark=m["remark"],
    )


def _app(row: sa.Row[Any], product_keys: frozenset[str] = frozenset()) -> App:
    m = row._mapping
    return App(
        appid=m["appid"],
        appsecret=m["appsecret"],
        name=m["name"],
        created_at=int(m["created_at"]),
        product_keys=product_keys,
    )


def _product(row: sa.Row[Any]) -> Product:
    m = row._mapping
    schema: ProductSchema | None = None
    if m["schema_json"] is not None:
        try:
            schema = parse_schema(json.loads(m["schema_json"], parse_float=Decimal))
        except (ValueError, SchemaError) as exc:
            raise StorageError(f"the stored schema of product {m['product_key']} is unreadable: {exc}") from exc
    return Product(
        product_key=m["product_key"],
        product_secret=m["product_secret"],
        name=m["name"],
        schema=schema,
        created_at=int(m["created_at"]),
    )


def _token(row: sa.Row[Any]) -> Token:
    m = row._mapping
    return Token(
        token_hash=m["token_hash"],
        uid=m["uid"],
        appid=m["appid"],
        expire_at=int(m["expire_at"]),
        created_at=int(m["created_at"]),
    )


# The binding columns are labelled so that they do not collide with the device's own columns in one row.
_BINDING_SELECT = (
    sa.select(
        bindings.c.uid.label("b_uid"),
        bindings.c.remark.label("b_remark"),
        bindings.c.dev_alias.label("b_dev_alias"),
        bindings.c.is_disabled.label("b_is_disabled"),
        bindings.c.created_at.label("b_created_at"),
        bindings.c.role.label("b_role"),
        bindings.c.dev_label_json.label("b_dev_label_json"),
        products.c.name.label("product_name"),
        *devices.c,
    )
    .select_from(bindings)
    .join(devices, devices.c.did == bindings.c.did)
    .join(products, products.c.product_key == devices.c.product_key)
)


# Built once: lookup_session runs on every authenticated request, and building a SELECT costs more than SQLite's
# answer to it.
_SESSION_SELECT = (
    sa.select(
        tokens.c.token_hash,
        tokens.c.appid.label("t_appid"),
        tokens.c.expire_at,
        tokens.c.created_at.label("t_created_at"),
        *users.c,
    )
    .select_from(tokens)
    .join(users, users.c.uid == tokens.c.uid)
    .where(
        tokens.c.token_hash == sa.bindparam("token_hash"),
        tokens.c.expire_at > sa.bindparam("now"),
        users.c.is_disabled.is_(False),
    )
)


def _binding(row: sa.Row[Any]) -> Binding:
    m = row._mapping
    return Binding(
        uid=m["b_uid"],
        did=m["did"],
        remark=m["b_remark"],
        dev_alias=m["b_dev_alias"],
        is_disabled=bool(m["b_is_disabled"]),
        created_at=int(m["b_created_at"]),
        device=_device(row),
        product_name=m["product_name"],
        role=m["b_role"],
        dev_label=tuple(json.loads(m["b_dev_label_json"])),
    )


class _Conn(Protocol):
    """What a storage method uses of a connection inside its transaction."""

    @property
    def dialect(self) -> sa.Dialect: ...

    async def execute(
        self, statement: sa.Executable, parameters: Mapping[str, Any] | None = None
    ) -> sa.CursorResult[Any]: ...


class _InlineConnection:
    """A synchronous SQLite connection behind the async interface: each call runs at once on the caller's thread."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn

    @property
    def dialect(self) -> sa.Dialect:
        return self._conn.dialect

    async def execute(
        self, statement: sa.Executable, parameters: Mapping[str, Any] | None = None
    ) -> sa.CursorResult[Any]:
        return self._conn.execute(statement, parameters)


async def _require_existing(engine: AsyncEngine) -> None:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        where = str(url.database)
        if not Path(where).is_file():  # before any connection: connecting would create the file
            raise DatabaseMissing(where)
    else:
        where = url.render_as_string(hide_password=True)
    if await current_version(engine) == 0:  # an empty file, or a PostgreSQL database without our tables
        raise DatabaseMissing(where)


class Storage(ScheduleMethods):
    """The local cloud's persistent state; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        """Wrap an engine made by ``make_engine`` whose database is migrated; prefer :meth:`open`."""
        self._engine = engine
        self._clock = clock
        self._inline = make_inline_sqlite_engine(engine)

    @classmethod
    async def open(
        cls, database: str | Path, *, clock: Callable[[], float] = time.time, create: bool = True
    ) -> Storage:
        """Connect to ``database`` (SQLite path/URL or ``postgresql://`` URL) and migrate it to the newest schema.

        ``create=False`` (the admin commands) refuses a database that does not exist yet with
        :class:`DatabaseMissing` and creates nothing: a mistyped path must not become a new, empty cloud.
        """
        engine = make_engine(database)
        try:
            if not create:
                await _require_existing(engine)
            await migrate(engine, clock=clock)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, clock=clock)

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._inline is not None:
            self._inline.dispose()
        await self._engine.dispose()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine (for tools and tests; handlers use the methods)."""
        return self._engine

    def _now(self) -> int:
        return int(self._clock())

    @contextlib.asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[_Conn]:
        if self._inline is not None:
            # SQLite: the whole transaction on this thread (make_inline_sqlite_engine says why). Nothing inside a
            # transaction suspends, so this process's transactions never interleave and its writers need no queue;
            # SQLite's busy timeout still covers other processes.
            try:
                with self._inline.connect() as sync_conn:
                    if write:
                        sync_conn.execution_options(**{WRITE_OPTION: True})  # in place, as on the async side
                    with sync_conn.begin():
                        yield _InlineConnection(sync_conn)
            except (SQLAlchemyError, OSError) as exc:
                raise StorageUnavailable(_reason(exc)) from exc
            return
        try:
            async with self._engine.connect() as conn:
                if write:
                    await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn
        except (SQLAlchemyError, OSError) as exc:  # our own StorageErrors pass through untouched
            raise StorageUnavailable(_reason(exc)) from exc

    @staticmethod
    async def _insert(conn: _Conn, stmt: sa.Insert, clash: AlreadyExists) -> None:
        try:
            await conn.execute(stmt)
        except IntegrityError as exc:  # a concurrent insert won the race the pre-check could not see
            raise clash from exc

    # --- apps ------------------------------------------------------------------------------------------------------

    async def add_app(self, appid: str, appsecret: str, name: str = "", product_keys: Iterable[str] = ()) -> App:
        """Create an application (the ``X-Gizwits-Application-Id`` an app sends) serving ``product_keys``."""
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        appsecret = v.text("appsecret", appsecret, max_len=MAX_APPSECRET_LEN, pattern=v.PRINTABLE)
        name = v.text("name", name, max_len=MAX_NAME_LEN, min_len=0)
        if isinstance(product_keys, str):
            raise InvalidInput("product_keys", "must be a collection of product keys, not one string")
        keys = frozenset(v.text("product_key", key, max_len=32, pattern=v.PRODUCT_KEY) for key in product_keys)
        now = self._now()
        async with self._transaction(write=True) as conn:
            if (await conn.execute(sa.select(apps.c.appid).where(apps.c.appid == appid))).first() is not None:
                raise AlreadyExists("app", "appid", appid)
            stmt = sa.insert(apps).values(appid=appid, appsecret=appsecret, name=name, created_at=now)
            await self._insert(conn, stmt, AlreadyExists("app", "appid", appid))
            for key in sorted(keys):
                await self._link_in(conn, appid, key, now)
        return App(appid=appid, appsecret=appsecret, name=name, created_at=now, product_keys=keys)

    @staticmethod
    async def _product_keys_in(conn: _Conn, appid: str) -> frozenset[str]:
        query = sa.select(app_products.c.product_key).where(app_products.c.appid == appid)
        return frozenset(row[0] for row in (await conn.execute(query)).all())

    @staticmethod
    async def _link_in(conn: _Conn, appid: str, product_key: str, now: int) -> bool:
        query = sa.select(products.c.product_key).where(products.c.product_key == product_key)
        if (await conn.execute(query)).first() is None:
            raise NotFound("product", product_key)
        linked = sa.select(app_products.c.appid).where(
            app_products.c.appid == appid, app_products.c.product_key == product_key
        )
        if (await conn.execute(linked)).first() is not None:
            return False
        await conn.execute(sa.insert(app_products).values(appid=appid, product_key=product_key, created_at=now))
        return True

    async def _app_in(self, conn: _Conn, appid: str) -> App:
        row = (await conn.execute(sa.select(apps).where(apps.c.appid == appid))).first()
        if row is None:
            raise NotFound("app", appid)
        return _app(row, await self._product_keys_in(conn, appid))

    async def get_app(self, appid: str) -> App:
        """The application ``appid`` with the products it serves; :class:`NotFound` if there is none."""
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        async with self._transaction(write=False) as conn:
            return await self._app_in(conn, appid)

    async def list_apps(self) -> list[App]:
        """Every application with the products it serves, oldest first."""
        async with self._transaction(write=False) as conn:
            rows = (await conn.execute(sa.select(apps).order_by(apps.c.created_at, apps.c.appid))).all()
            links = (await conn.execute(sa.select(app_products.c.appid, app_products.c.product_key))).all()
        served: dict[str, set[str]] = {}
        for link in links:
            served.setdefault(link.appid, set()).add(link.product_key)
        return [_app(row, frozenset(served.get(row._mapping["appid"], ()))) for row in rows]

    async def link_app_product(self, appid: str, product_key: str, *, linked: bool = True) -> App:
        """Let app ``appid`` reach the devices of ``product_key`` (``linked=False``: no longer); the app after it.

        Linking a linked product or unlinking an unlinked one changes nothing. :class:`NotFound` for an unknown app
        or (when linking) product.
        """
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        product_key = v.text("product_key", product_key, max_len=32, pattern=v.PRODUCT_KEY)
        linked = v.flag("linked", linked)
        async with self._transaction(write=True) as conn:
            await self._app_in(conn, appid)
            if linked:
                await self._link_in(conn, appid, product_key, self._now())
            else:
                await conn.execute(
                    sa.delete(app_products).where(
                        app_products.c.appid == appid, app_products.c.product_key == product_key
                    )
                )
            return await self._app_in(conn, appid)

    # --- products --------------------------------------------------------------------------------------------------

    async def add_product(
        self, product_key: str, product_secret: str, name: str, schema: ProductSchema | None = None
    ) -> Product:
        """Create a product; ``schema`` (if any) is kept in the console export format."""
        product_key = v.text("product_key", product_key, max_len=32, pattern=v.PRODUCT_KEY)
        product_secret = v.text("product_secret", product_secret, max_len=32, pattern=v.SECRET32)
        name = v.text("name", name, max_len=MAX_NAME_LEN, min_len=0)
        schema_json: str | None = None
        if schema is not None:
            if not isinstance(schema, ProductSchema):
                raise InvalidInput("schema", f"must be a ProductSchema or None, not {type(schema).__name__}")
            if schema.product_key is not None and schema.product_key != product_key:
                raise InvalidInput("schema", f"belongs to product {schema.product_key}, not {product_key}")
            schema_json = v.json_document("schema", schema_to_json(schema))
        product = Product(product_key, product_secret, name, schema, self._now())
        async with self._transaction(write=True) as conn:
            query = sa.select(products.c.product_key).where(products.c.product_key == product_key)
            if (await conn.execute(query)).first() is not None:
                raise AlreadyExists("product", "product_key", product_key)
            stmt = sa.insert(products).values(
                product_key=product_key,
                product_secret=product_secret,
                name=name,
                schema_json=schema_json,
                created_at=product.created_at,
            )
            await self._insert(conn, stmt, AlreadyExists("product", "product_key", product_key))
        return product

    async def get_product(self, product_key: str) -> Product:
        """The product ``product_key``; :class:`NotFound` if there is none."""
        product_key = v.text("product_key", product_key, max_len=32, pattern=v.PRODUCT_KEY)
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(sa.select(products).where(products.c.product_key == product_key))).first()
        if row is None:
            raise NotFound("product", product_key)
        return _product(row)

    async def list_products(self) -> list[Product]:
        """Every product, oldest first."""
        async with self._transaction(write=False) as conn:
            rows = (
                await conn.execute(sa.select(products).order_by(products.c.created_at, products.c.product_key))
            ).all()
        return [_product(row) for row in rows]

    # --- devices ---------------------------------------------------------------------------------------------------

    async def register_device(
        self,
        mac: str,
        product_key: str,
        passcode: str,
        *,
        encrypted: bool = False,
        device_type: str = "normal",
        mqtt_password_hash: str | None = None,
    ) -> Registration:
        """Register a device (``POST /dev/devices``, or §1.3 when ``encrypted``); see the module docstring's rule.

        ``mqtt_password_hash`` (encrypted registrations only) is the broker's digest of the MQTT password the cloud
        hands the device in its reply; it replaces the device's earlier one. None: the passcode is the password.
        """
        mac = v.text("mac", mac, max_len=12, pattern=v.MAC).upper()
        product_key = v.text("product_key", product_key, max_len=32, pattern=v.PRODUCT_KEY)
        passcode = v.text("passcode", passcode, max_len=16, pattern=v.PASSCODE)
        encrypted = v.flag("encrypted", encrypted)
        if device_type not in DEVICE_TYPES:
            raise InvalidInput("device_type", f"must be one of {', '.join(DEVICE_TYPES)}")
        if mqtt_password_hash is not None:
            mqtt_password_hash = v.text(
                "mqtt_password_hash", mqtt_password_hash, max_len=MAX_PASSWORD_DIGEST_LEN, pattern=v.PRINTABLE
            )
            if not encrypted:
                raise InvalidInput("mqtt_password_hash", "only an encrypted registration gets its own MQTT password")
        now = self._now()
        async with self._transaction(write=True) as conn:
            lock_product = (
                sa.select(products.c.product_key).where(products.c.product_key == product_key).with_for_update()
            )
            if (await conn.execute(lock_product)).first() is None:
                raise NotFound("product", product_key)
            query = (
                sa.select(devices)
                .where(devices.c.mac == mac, devices.c.product_key == product_key, devices.c.is_disabled.is_(False))
                .order_by(devices.c.registered_at.desc(), devices.c.did)
            )
            candidates = [_device(row) for row in (await conn.execute(query)).all()]
            sealed = next((device for device in candidates if device.encrypted), None)
            same = next((d for d in candidates if secrets.compare_digest(d.passcode, passcode)), None)
            if not encrypted:
                if sealed is not None:
                    raise EncryptionRequired(sealed.did)  # rule 6
                if same is not None:
                    return Registration(same, created=False)  # rule 1
            else:
                keep = sealed or same  # rule 4, then rule 5
                if keep is not None:
                    await conn.execute(
                        sa.update(devices)
                        .where(devices.c.did == keep.did)
                        .values(
                            passcode=passcode,
                            encrypted=True,
                            device_type=device_type,
                            mqtt_password_hash=mqtt_password_hash,
                        )
                    )
                    return Registration(await self._device_in(conn, keep.did), created=False)
            did = new_did()  # rules 2, 3 and the rest of 5
            await conn.execute(
                sa.insert(devices).values(
                    did=did,
                    mac=mac,
                    product_key=product_key,
                    passcode=passcode,
                    is_disabled=False,
                    encrypted=encrypted,
                    registered_at=now,
                    last_seen=None,
                    is_online=False,
                    online_changed_at=None,
                    broker_client_id=None,
                    broker_peer=None,
                    device_type=device_type,
                    mqtt_password_hash=mqtt_password_hash,
                )
            )
            return Registration(await self._device_in(conn, did), created=True)

    @staticmethod
    async def _device_in(conn: _Conn, did: str, *, for_update: bool = False) -> Device:
        query = sa.select(devices).where(devices.c.did == did)
        if for_update:
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound("device", did)
        return _device(row)

    async def get_device(self, did: str) -> Device:
        """The device ``did`` (disabled ones included); :class:`NotFound` if there is none."""
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        async with self._transaction(write=False) as conn:
            return await self._device_in(conn, did)

    async def list_devices(
        self,
        *,
        product_key: str | None = None,
        mac: str | None = None,
        include_disabled: bool = True,
        limit: int = 100,
        skip: int = 0,
    ) -> list[Device]:
        """Devices, oldest registration first (same second: DID order), optionally of one product and/or MAC."""
        query = sa.select(devices)
        if product_key is not None:
            product_key = v.text("product_key", product_key, max_len=32, pattern=v.PRODUCT_KEY)
            query = query.where(devices.c.product_key == product_key)
        if mac is not None:
            mac = v.text("mac", mac, max_len=12, pattern=v.MAC).upper()
            query = query.where(devices.c.mac == mac)
        if not v.flag("include_disabled", include_disabled):
            query = query.where(devices.c.is_disabled.is_(False))
        limit = v.count("limit", limit, low=1, high=MAX_PAGE)
        skip = v.count("skip", skip, low=0, high=MAX_SKIP)
        query = query.order_by(devices.c.registered_at, devices.c.did).limit(limit).offset(skip)
        async with self._transaction(write=False) as conn:
            return [_device(row) for row in (await conn.execute(query)).all()]

    async def disable_device(self, did: str, *, passcode: str | None = None) -> Device:
        """Disable (de-register) a device and its bindings; with ``passcode``, only if it matches (§1.2 DELETE).

        Disabling a disabled device changes nothing and succeeds, so a repeated DELETE is harmless.
        """
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        if passcode is not None:
            passcode = v.text("passcode", passcode, max_len=16, pattern=v.PASSCODE)
        async with self._transaction(write=True) as conn:
            device = await self._device_in(conn, did, for_update=True)
            if passcode is not None and not secrets.compare_digest(device.passcode, passcode):
                raise PasscodeMismatch(did)
            if device.is_disabled:
                return device
            await conn.execute(sa.update(devices).where(devices.c.did == did).values(is_disabled=True))
            await conn.execute(sa.update(bindings).where(bindings.c.did == did).values(is_disabled=True))
            return await self._device_in(conn, did)

    async def record_versions(self, did: str, *, mcu: bool, hard_version: str, soft_version: str) -> Device:
        """Keep the versions a device reported in an OTA check: the MCU's (``mcu``) or its module's; the device."""
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        mcu = v.flag("mcu", mcu)
        hard_version = v.text("hard_version", hard_version, max_len=16, pattern=VERSION)
        soft_version = v.text("soft_version", soft_version, max_len=16, pattern=VERSION)
        part = "mcu" if mcu else "wifi"
        async with self._transaction(write=True) as conn:
            result = await conn.execute(
                sa.update(devices)
                .where(devices.c.did == did)
                .values({f"{part}_hard_version": hard_version, f"{part}_soft_version": soft_version})
            )
            if result.rowcount == 0:
                raise NotFound("device", did)
            return await self._device_in(conn, did)

    async def set_online(
        self, did: str, online: bool, when: int, *, client_id: str | None = None, peer: str | None = None
    ) -> bool:
        """Record a broker connect (``online``) or disconnect at ``when``; False if it is older than the last one.

        Broker events may arrive out of order (a reconnect reported before the old session's drop); an event older
        than the last recorded change is ignored. ``client_id`` and ``peer`` (``host:port``) are kept from the last
        connect, also while offline, for diagnostics.
        """
        update = _checked_presence(PresenceUpdate(did, online, client_id, peer))
        when = v.timestamp("when", when)
        async with self._transaction(write=True) as conn:
            return await self._set_online_in(conn, update, when)

    async def set_online_many(self, updates: Sequence[PresenceUpdate], when: int) -> list[bool | None]:
        """:meth:`set_online` for each update in order, in one transaction (a burst of connects is one commit, not
        one per device); per update True (recorded), False (older than the last change) or None (not a device:
        an unknown or malformed DID, a tool's login)."""
        when = v.timestamp("when", when)
        results: list[bool | None] = [None] * len(updates)
        # Rows locked in DID order (stable: one device's events keep theirs): two workers storing the same burst
        # (RabbitMQ's events reach every worker) then never wait for each other in a cycle.
        order = sorted(range(len(updates)), key=lambda index: updates[index].did)
        async with self._transaction(write=True) as conn:
            for index in order:
                with contextlib.suppress(InvalidInput, NotFound):
                    results[index] = await self._set_online_in(conn, _checked_presence(updates[index]), when)
        return results

    async def _set_online_in(self, conn: _Conn, update: PresenceUpdate, when: int) -> bool:
        device = await self._device_in(conn, update.did, for_update=True)
        if device.online_changed_at is not None and when < device.online_changed_at:
            return False
        values: dict[str, Any] = {
            "is_online": update.online,
            "online_changed_at": when,
            "last_seen": when if device.last_seen is None else max(device.last_seen, when),
        }
        if update.online:
            values.update(broker_client_id=update.client_id, broker_peer=update.peer)
        await conn.execute(sa.update(devices).where(devices.c.did == update.did).values(**values))
        return True

    async def mark_all_offline(self, when: int) -> int:
        """Every online device goes offline at ``when`` (the broker restarted, or the cloud did); returns how many."""
        when = v.timestamp("when", when)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(
                sa.update(devices).where(devices.c.is_online.is_(True)).values(is_online=False, online_changed_at=when)
            )
            return int(result.rowcount)

    async def touch(self, did: str, when: int) -> None:
        """Note that the device was heard from at ``when`` (``last_seen`` only moves forward)."""
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        when = v.timestamp("when", when)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(
                sa.update(devices)
                .where(devices.c.did == did, sa.or_(devices.c.last_seen.is_(None), devices.c.last_seen < when))
                .values(last_seen=when)
            )
            if result.rowcount == 0:
                await self._device_in(conn, did)  # NotFound if it does not exist; else last_seen was newer

    # --- users -----------------------------------------------------------------------------------------------------

    async def create_user(
        self,
        appid: str,
        *,
        phone_id: str | None = None,
        username: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        password_hash: str | None = None,
    ) -> User:
        """Create an anonymous user (``phone_id`` only) or a named one: ``username`` or ``email`` with a
        ``password_hash``, or ``phone`` with or without one (a phone user may log in with SMS codes alone, §3.2).

        The password arrives hashed (the security module hashes it) and is stored as given.
        """
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        names = {"username": username, "email": email, "phone": phone}
        given = {field: value for field, value in names.items() if value is not None}
        if phone_id is not None and not given and password_hash is None:
            phone_id = v.text("phone_id", phone_id, max_len=MAX_PHONE_ID_LEN)
            keys = {"phone_id": phone_id}
        elif phone_id is None and len(given) == 1 and (password_hash is not None or phone is not None):
            keys = {field: v.text(field, value, max_len=USER_UPDATABLE[field]) for field, value in given.items()}
            if password_hash is not None:
                password_hash = v.text("password_hash", password_hash, max_len=MAX_PASSWORD_HASH_LEN)
        else:
            raise InvalidInput(
                "user", "give phone_id alone, or one of username, email, phone with a password_hash (phone: optional)"
            )
        user = User(
            uid=secrets.token_hex(16),
            appid=appid,
            username=keys.get("username"),
            phone_id=keys.get("phone_id"),
            password_hash=password_hash,
            is_anonymous=phone_id is not None,
            created_at=self._now(),
            email=keys.get("email"),
            phone=keys.get("phone"),
        )
        ((field, key),) = keys.items()
        async with self._transaction(write=True) as conn:
            if (await conn.execute(sa.select(apps.c.appid).where(apps.c.appid == appid))).first() is None:
                raise NotFound("app", appid)
            clash = sa.select(users.c.uid).where(users.c.appid == appid, users.c[field] == key)
            if (await conn.execute(clash)).first() is not None:
                raise AlreadyExists("user", field, key)
            stmt = sa.insert(users).values(
                uid=user.uid,
                appid=appid,
                username=user.username,
                phone_id=user.phone_id,
                email=user.email,
                phone=user.phone,
                password_hash=password_hash,
                is_anonymous=user.is_anonymous,
                created_at=user.created_at,
                is_disabled=False,
            )
            await self._insert(conn, stmt, AlreadyExists("user", field, key))
        return user

    async def _get_user(self, *conditions: sa.ColumnElement[bool], key: str) -> User:
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(sa.select(users).where(*conditions))).first()
        if row is None:
            raise NotFound("user", key)
        return _user(row)

    async def get_user_by_username(self, appid: str, username: str) -> User:
        """The user of app ``appid`` named ``username``; :class:`NotFound` if none."""
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        username = v.text("username", username, max_len=MAX_USERNAME_LEN)
        return await self._get_user(users.c.appid == appid, users.c.username == username, key=username)

    async def get_user_by_phone(self, appid: str, phone_id: str) -> User:
        """The anonymous user of app ``appid`` with ``phone_id``; :class:`NotFound` if none."""
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        phone_id = v.text("phone_id", phone_id, max_len=MAX_PHONE_ID_LEN)
        return await self._get_user(users.c.appid == appid, users.c.phone_id == phone_id, key=phone_id)

    async def find_user(self, appid: str, field: str, value: str) -> User:
        """The user of app ``appid`` whose ``field`` (one of USER_KEYS) is ``value``; :class:`NotFound` if none."""
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        if field not in USER_KEYS:
            raise InvalidInput("field", f"must be one of {', '.join(USER_KEYS)}")
        value = v.text(field, value, max_len=USER_UPDATABLE[field])
        return await self._get_user(users.c.appid == appid, users.c[field] == value, key=value)

    async def update_user(self, uid: str, *, is_anonymous: bool | None = None, **changes: str | None) -> User:
        """Change the account fields ``changes`` (names of USER_UPDATABLE; None clears a key such as ``phone_id``)
        of user ``uid`` in one transaction; :class:`AlreadyExists` if a new username, email or phone is another
        user's of the same app, :class:`NotFound` if there is no such user. Returns the user as stored now."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        values: dict[str, Any] = {}
        for field, value in changes.items():
            if field not in USER_UPDATABLE:
                raise InvalidInput(field, "is not a field of a user that can be changed")
            values[field] = None if value is None else v.text(field, value, max_len=USER_UPDATABLE[field], min_len=0)
        if is_anonymous is not None:
            values["is_anonymous"] = v.flag("is_anonymous", is_anonymous)
        if not values:
            raise InvalidInput("user", "nothing to change")
        async with self._transaction(write=True) as conn:
            row = (await conn.execute(sa.select(users.c.appid).where(users.c.uid == uid))).first()
            if row is None:
                raise NotFound("user", uid)
            for field in USER_KEYS:
                if values.get(field) is None:
                    continue
                clash = sa.select(users.c.uid).where(
                    users.c.appid == row.appid, users.c[field] == values[field], users.c.uid != uid
                )
                if (await conn.execute(clash)).first() is not None:
                    raise AlreadyExists("user", field, values[field])
            try:
                await conn.execute(sa.update(users).where(users.c.uid == uid).values(**values))
            except IntegrityError as exc:  # a concurrent change took the name first
                raise AlreadyExists("user", "key", uid) from exc
            return _user((await conn.execute(sa.select(users).where(users.c.uid == uid))).one())

    async def delete_tokens(self, uid: str, *, keep: str | None = None) -> int:
        """Revoke every token of user ``uid`` except the one stored under digest ``keep``; returns how many."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        condition = tokens.c.uid == uid
        if keep is not None:
            keep = v.text("keep", keep, max_len=64, pattern=v.TOKEN_HASH)
            condition = sa.and_(condition, tokens.c.token_hash != keep)
        async with self._transaction(write=True) as conn:
            return int((await conn.execute(sa.delete(tokens).where(condition))).rowcount)

    # --- third-party identities (authData sign-up, §3.2) -------------------------------------------------------------

    async def find_identity_user(self, appid: str, src: str, external_uid: str) -> User:
        """The user of app ``appid`` signed up through provider ``src`` as ``external_uid``; :class:`NotFound`."""
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        src = v.text("src", src, max_len=16, pattern=v.PRINTABLE)
        external_uid = v.text("external_uid", external_uid, max_len=MAX_EXTERNAL_UID_LEN)
        query = (
            sa.select(users)
            .select_from(user_identities)
            .join(users, users.c.uid == user_identities.c.uid)
            .where(
                user_identities.c.appid == appid,
                user_identities.c.src == src,
                user_identities.c.external_uid == external_uid,
            )
        )
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound("user", f"{src}:{external_uid}")
        return _user(row)

    async def create_identity_user(self, appid: str, src: str, external_uid: str) -> User:
        """A new user of app ``appid`` (no name, no password, not anonymous) and its identity ``src`` +
        ``external_uid``, in one transaction; :class:`AlreadyExists` if that identity is someone's already."""
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        src = v.text("src", src, max_len=16, pattern=v.PRINTABLE)
        external_uid = v.text("external_uid", external_uid, max_len=MAX_EXTERNAL_UID_LEN)
        user = User(
            uid=secrets.token_hex(16),
            appid=appid,
            username=None,
            phone_id=None,
            password_hash=None,
            is_anonymous=False,
            created_at=self._now(),
        )
        clash = AlreadyExists("user", src, external_uid)
        async with self._transaction(write=True) as conn:
            if (await conn.execute(sa.select(apps.c.appid).where(apps.c.appid == appid))).first() is None:
                raise NotFound("app", appid)
            taken = sa.select(user_identities.c.uid).where(
                user_identities.c.appid == appid,
                user_identities.c.src == src,
                user_identities.c.external_uid == external_uid,
            )
            if (await conn.execute(taken)).first() is not None:
                raise clash
            await conn.execute(
                sa.insert(users).values(
                    uid=user.uid,
                    appid=appid,
                    password_hash=None,
                    is_anonymous=False,
                    created_at=user.created_at,
                    is_disabled=False,
                )
            )
            stmt = sa.insert(user_identities).values(
                appid=appid, src=src, external_uid=external_uid, uid=user.uid, created_at=user.created_at
            )
            await self._insert(conn, stmt, clash)
        return user

    async def ping(self) -> bool:
        """Whether the database answers a query now (``GET /status``); never raises."""
        try:
            async with self._transaction(write=False) as conn:
                await conn.execute(sa.select(sa.literal(1)))
        except StorageError:
            return False
        return True

    # --- one-time codes (SMS codes, captcha answers, reset links: codes.CodeBook) -----------------------------------

    async def add_code(self, purpose: str, subject: str, code_hash: str, *, expires_at: int) -> None:
        """Keep a one-time code's digest for ``subject``; earlier live codes of the same purpose and subject stay
        valid until they expire or one of them is used (an SMS may arrive late)."""
        purpose = v.text("purpose", purpose, max_len=32, pattern=v.PRINTABLE)
        subject = v.text("subject", subject, max_len=MAX_EMAIL_LEN)
        code_hash = v.text("code_hash", code_hash, max_len=64, pattern=v.TOKEN_HASH)
        expires_at = v.timestamp("expires_at", expires_at)
        async with self._transaction(write=True) as conn:
            await conn.execute(
                sa.insert(one_time_codes).values(
                    purpose=purpose,
                    subject=subject,
                    code_hash=code_hash,
                    created_at=self._now(),
                    expires_at=expires_at,
                    used_at=None,
                    failures=0,
                )
            )

    async def use_code(self, purpose: str, subject: str, code_hash: str, *, max_failures: int) -> str:
        """Use a code once: "ok" (now spent, with every other code of the purpose and subject), "expired", or
        "invalid" (no such live code; the wrong guess counts against the subject's live codes, which are spent
        after ``max_failures`` of them so that a 6-digit code cannot be guessed)."""
        purpose = v.text("purpose", purpose, max_len=32, pattern=v.PRINTABLE)
        subject = v.text("subject", subject, max_len=MAX_EMAIL_LEN)
        code_hash = v.text("code_hash", code_hash, max_len=64, pattern=v.TOKEN_HASH)
        now = self._now()
        mine = sa.and_(
            one_time_codes.c.purpose == purpose,
            one_time_codes.c.subject == subject,
            one_time_codes.c.used_at.is_(None),
        )
        async with self._transaction(write=True) as conn:
            row = (
                await conn.execute(sa.select(one_time_codes).where(mine, one_time_codes.c.code_hash == code_hash))
            ).first()
            if row is not None and row.expires_at > now:
                await conn.execute(sa.update(one_time_codes).where(mine).values(used_at=now))
                return "ok"
            if row is not None:
                return "expired"
            live = sa.and_(mine, one_time_codes.c.expires_at > now)
            await conn.execute(sa.update(one_time_codes).where(live).values(failures=one_time_codes.c.failures + 1))
            await conn.execute(
                sa.update(one_time_codes).where(live, one_time_codes.c.failures >= max_failures).values(used_at=now)
            )
            return "invalid"

    async def peek_code(self, purpose: str, subject: str, code_hash: str) -> str:
        """What :meth:`use_code` would say, without using the code or counting a failure: "ok", "expired", "used"
        or "invalid" (a reset page shows its form, or why not, before anything is spent)."""
        purpose = v.text("purpose", purpose, max_len=32, pattern=v.PRINTABLE)
        subject = v.text("subject", subject, max_len=MAX_EMAIL_LEN)
        code_hash = v.text("code_hash", code_hash, max_len=64, pattern=v.TOKEN_HASH)
        query = sa.select(one_time_codes.c.expires_at, one_time_codes.c.used_at).where(
            one_time_codes.c.purpose == purpose,
            one_time_codes.c.subject == subject,
            one_time_codes.c.code_hash == code_hash,
        )
        async with self._transaction(write=False) as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return "invalid"
        if any(row.used_at is None and row.expires_at > self._now() for row in rows):
            return "ok"
        return "expired" if any(row.used_at is None for row in rows) else "used"

    async def discard_code(self, purpose: str, subject: str, code_hash: str) -> None:
        """Forget one unused code (it was never delivered); the subject's other codes stay as they are."""
        purpose = v.text("purpose", purpose, max_len=32, pattern=v.PRINTABLE)
        subject = v.text("subject", subject, max_len=MAX_EMAIL_LEN)
        code_hash = v.text("code_hash", code_hash, max_len=64, pattern=v.TOKEN_HASH)
        async with self._transaction(write=True) as conn:
            await conn.execute(
                sa.delete(one_time_codes).where(
                    one_time_codes.c.purpose == purpose,
                    one_time_codes.c.subject == subject,
                    one_time_codes.c.code_hash == code_hash,
                    one_time_codes.c.used_at.is_(None),
                )
            )

    # --- application tokens (/app/request_token) and captcha pictures ------------------------------------------------

    async def store_app_token(self, token_hash: str, appid: str, expire_at: int) -> None:
        """Keep an application token by its digest; :class:`NotFound` if there is no such app."""
        token_hash = v.text("token_hash", token_hash, max_len=64, pattern=v.TOKEN_HASH)
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        expire_at = v.timestamp("expire_at", expire_at)
        async with self._transaction(write=True) as conn:
            if (await conn.execute(sa.select(apps.c.appid).where(apps.c.appid == appid))).first() is None:
                raise NotFound("app", appid)
            stmt = sa.insert(app_tokens).values(
                token_hash=token_hash, appid=appid, expire_at=expire_at, created_at=self._now()
            )
            await self._insert(conn, stmt, AlreadyExists("app token", "token_hash", token_hash))

    async def app_of_token(self, token_hash: str, *, now: int) -> str | None:
        """The appid of the application token stored under ``token_hash`` if it has not expired at ``now``."""
        token_hash = v.text("token_hash", token_hash, max_len=64, pattern=v.TOKEN_HASH)
        now = v.timestamp("now", now)
        query = sa.select(app_tokens.c.appid).where(app_tokens.c.token_hash == token_hash, app_tokens.c.expire_at > now)
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else str(row.appid)

    async def put_captcha_image(self, captcha_id: str, png: bytes, *, expires_at: int) -> None:
        captcha_id = v.text("captcha_id", captcha_id, max_len=64, pattern=v.PRINTABLE)
        expires_at = v.timestamp("expires_at", expires_at)
        if not isinstance(png, bytes) or not png:
            raise InvalidInput("png", "must be the bytes of an image")
        async with self._transaction(write=True) as conn:
            stmt = sa.insert(captcha_images).values(captcha_id=captcha_id, png=png, expires_at=expires_at)
            await self._insert(conn, stmt, AlreadyExists("captcha", "captcha_id", captcha_id))

    async def get_captcha_image(self, captcha_id: str, *, now: int) -> bytes | None:
        """The picture of captcha ``captcha_id`` while it has not expired at ``now``, else None."""
        captcha_id = v.text("captcha_id", captcha_id, max_len=64, pattern=v.PRINTABLE)
        now = v.timestamp("now", now)
        query = sa.select(captcha_images.c.png).where(
            captcha_images.c.captcha_id == captcha_id, captcha_images.c.expires_at > now
        )
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else bytes(row.png)

    async def delete_captcha_image(self, captcha_id: str) -> None:
        captcha_id = v.text("captcha_id", captcha_id, max_len=64, pattern=v.PRINTABLE)
        async with self._transaction(write=True) as conn:
            await conn.execute(sa.delete(captcha_images).where(captcha_images.c.captcha_id == captcha_id))

    # --- throttling (throttle.Throttle) ------------------------------------------------------------------------------

    async def add_hit(self, key: str, at: int) -> None:
        """Count one event under ``key`` at ``at``."""
        key = v.text("key", key, max_len=200)
        at = v.timestamp("at", at)
        async with self._transaction(write=True) as conn:
            await conn.execute(sa.insert(throttle_hits).values(key=key, at=at))

    async def hits_since(self, key: str, since: int) -> tuple[int, int | None]:
        """How many events ``key`` has had at or after ``since``, and the time of the oldest of them."""
        key = v.text("key", key, max_len=200)
        since = v.timestamp("since", since)
        query = sa.select(sa.func.count().label("count_1"), sa.func.min(throttle_hits.c.at).label("min_1")).where(
            throttle_hits.c.key == key, throttle_hits.c.at >= since
        )
        async with self._transaction(write=False) as conn:
            found = (await conn.execute(query)).one()._mapping
        count, oldest = found["count_1"], found["min_1"]
        return int(count), None if oldest is None else int(oldest)

    async def clear_hits(self, key: str) -> None:
        """Forget ``key``'s events (a successful login clears its failures)."""
        key = v.text("key", key, max_len=200)
        async with self._transaction(write=True) as conn:
            await conn.execute(sa.delete(throttle_hits).where(throttle_hits.c.key == key))

    async def prune(self, before: int) -> int:
        """Delete throttle events, one-time codes, application tokens and captcha pictures older than ``before``
        (housekeeping); returns rows deleted."""
        before = v.timestamp("before", before)
        async with self._transaction(write=True) as conn:
            hits = await conn.execute(sa.delete(throttle_hits).where(throttle_hits.c.at < before))
            codes = await conn.execute(sa.delete(one_time_codes).where(one_time_codes.c.expires_at < before))
            tokens_gone = await conn.execute(sa.delete(app_tokens).where(app_tokens.c.expire_at < before))
            images = await conn.execute(sa.delete(captcha_images).where(captcha_images.c.expires_at < before))
            return sum(int(result.rowcount) for result in (hits, codes, tokens_gone, images))

    async def get_user_by_uid(self, uid: str) -> User:
        """The user ``uid``; :class:`NotFound` if none."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        return await self._get_user(users.c.uid == uid, key=uid)

    async def list_users(self, *, appid: str | None = None, limit: int = 100, skip: int = 0) -> list[User]:
        """Users, oldest first (same second: uid order), optionally of one application."""
        query = sa.select(users)
        if appid is not None:
            appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
            query = query.where(users.c.appid == appid)
        limit = v.count("limit", limit, low=1, high=MAX_PAGE)
        skip = v.count("skip", skip, low=0, high=MAX_SKIP)
        query = query.order_by(users.c.created_at, users.c.uid).limit(limit).offset(skip)
        async with self._transaction(write=False) as conn:
            return [_user(row) for row in (await conn.execute(query)).all()]

    async def set_user_disabled(self, uid: str, disabled: bool) -> User:
        """Disable (or enable again) the user ``uid``; :class:`NotFound` if none.

        Disabling also deletes the user's tokens, so that enabling later does not bring an old (perhaps leaked)
        token back: the user logs in again. Bindings stay.
        """
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        disabled = v.flag("disabled", disabled)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(sa.update(users).where(users.c.uid == uid).values(is_disabled=disabled))
            if result.rowcount == 0:
                raise NotFound("user", uid)
            if disabled:
                await conn.execute(sa.delete(tokens).where(tokens.c.uid == uid))
            row = (await conn.execute(sa.select(users).where(users.c.uid == uid))).one()
        return _user(row)

    # --- tokens ----------------------------------------------------------------------------------------------------

    async def store_token(self, token_hash: str, uid: str, appid: str, expire_at: int) -> Token:
        """Keep a user token by its digest (``identifiers.token_digest``); the user must belong to ``appid``."""
        token_hash = v.text("token_hash", token_hash, max_len=64, pattern=v.TOKEN_HASH)
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        appid = v.text("appid", appid, max_len=64, pattern=v.APPID)
        expire_at = v.timestamp("expire_at", expire_at)
        token = Token(token_hash, uid, appid, expire_at, self._now())
        async with self._transaction(write=True) as conn:
            owner = sa.select(users.c.uid).where(users.c.uid == uid, users.c.appid == appid)
            if (await conn.execute(owner)).first() is None:
                raise NotFound("user", uid)
            query = sa.select(tokens.c.token_hash).where(tokens.c.token_hash == token_hash)
            if (await conn.execute(query)).first() is not None:
                raise AlreadyExists("token", "token_hash", token_hash)
            stmt = sa.insert(tokens).values(
                token_hash=token_hash, uid=uid, appid=appid, expire_at=expire_at, created_at=token.created_at
            )
            await self._insert(conn, stmt, AlreadyExists("token", "token_hash", token_hash))
        return token

    async def lookup_token(self, token_hash: str, *, now: int | None = None) -> Token | None:
        """The token stored under ``token_hash`` if it has not expired at ``now`` (default: the clock), else None."""
        token_hash = v.text("token_hash", token_hash, max_len=64, pattern=v.TOKEN_HASH)
        now = self._now() if now is None else v.timestamp("now", now)
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(sa.select(tokens).where(tokens.c.token_hash == token_hash))).first()
        if row is None:
            return None
        token = _token(row)
        return token if token.expire_at > now else None

    async def lookup_session(self, token_hash: str, *, now: int | None = None) -> tuple[Token, User] | None:
        """The unexpired token stored under ``token_hash`` and its user, if that user is not disabled; else None.

        One query for what every authenticated request needs, so that the server can afford to ask the database
        each time: a user disabled by another process (the admin CLI) is refused at its next request.
        """
        token_hash = v.text("token_hash", token_hash, max_len=64, pattern=v.TOKEN_HASH)
        now = self._now() if now is None else v.timestamp("now", now)
        async with self._transaction(write=False) as conn:
            row = (await conn.execute(_SESSION_SELECT, {"token_hash": token_hash, "now": now})).first()
        if row is None:
            return None
        m = row._mapping
        token = Token(m["token_hash"], m["uid"], m["t_appid"], int(m["expire_at"]), int(m["t_created_at"]))
        return token, _user(row)

    async def delete_token(self, token_hash: str) -> bool:
        """Forget a token (logout); False if there was none."""
        token_hash = v.text("token_hash", token_hash, max_len=64, pattern=v.TOKEN_HASH)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(sa.delete(tokens).where(tokens.c.token_hash == token_hash))
            return bool(result.rowcount)

    async def purge_expired_tokens(self, *, now: int | None = None) -> int:
        """Delete the tokens expired at ``now`` (default: the clock); returns how many."""
        now = self._now() if now is None else v.timestamp("now", now)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(sa.delete(tokens).where(tokens.c.expire_at <= now))
            return int(result.rowcount)

    # --- bindings --------------------------------------------------------------------------------------------------

    async def bind(
        self, uid: str, did: str, remark: str | None = None, *, dev_alias: str | None = None, rebind: bool = False
    ) -> Binding:
        """Bind device ``did`` to user ``uid`` (no remark or alias: empty); :class:`DeviceDisabled` if disabled.

        Bound already: :class:`AlreadyExists`, or with ``rebind`` (``POST /app/bindings`` again) the given
        ``remark`` and ``dev_alias`` replace the binding's (None keeps one) and the binding is returned.
        """
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        changes: dict[str, str] = {}
        if remark is not None:
            changes["remark"] = v.text("remark", remark, max_len=MAX_REMARK_LEN, min_len=0)
        if dev_alias is not None:
            changes["dev_alias"] = v.text("dev_alias", dev_alias, max_len=MAX_ALIAS_LEN, min_len=0)
        rebind = v.flag("rebind", rebind)
        now = self._now()
        async with self._transaction(write=True) as conn:
            if (await conn.execute(sa.select(users.c.uid).where(users.c.uid == uid))).first() is None:
                raise NotFound("user", uid)
            device = await self._device_in(conn, did)
            if device.is_disabled:
                raise DeviceDisabled(did)
            bound = sa.select(bindings.c.id).where(bindings.c.uid == uid, bindings.c.did == did)
            if (await conn.execute(bound)).first() is not None:
                if not rebind:
                    raise AlreadyExists("binding", "did", did)
                if changes:
                    await conn.execute(
                        sa.update(bindings).where(bindings.c.uid == uid, bindings.c.did == did).values(**changes)
                    )
                return await self._binding_in(conn, uid, did)
            special = sa.select(bindings.c.id).where(
                bindings.c.did == did, bindings.c.role == "special", bindings.c.is_disabled.is_(False)
            )
            stmt = sa.insert(bindings).values(
                uid=uid,
                did=did,
                remark=changes.get("remark", ""),
                dev_alias=changes.get("dev_alias", ""),
                is_disabled=False,
                created_at=now,
                # §3.9 Roles: the first binder is "special", later ones "normal"; when the special binder has
                # gone, the next one to bind takes its place.
                role="normal" if (await conn.execute(special)).first() is not None else "special",
                dev_label_json="[]",
            )
            await self._insert(conn, stmt, AlreadyExists("binding", "did", did))
            return await self._binding_in(conn, uid, did)

    @staticmethod
    async def _binding_in(conn: _Conn, uid: str, did: str) -> Binding:
        query = _BINDING_SELECT.where(bindings.c.uid == uid, bindings.c.did == did)
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound("binding", did)
        return _binding(row)

    async def update_binding(
        self,
        uid: str,
        did: str,
        *,
        remark: str | None = None,
        dev_alias: str | None = None,
        dev_label: Sequence[str] | None = None,
    ) -> Binding:
        """Change a binding's remark, alias and/or labels (``PUT /app/bindings/{did}``); :class:`NotFound` if not
        bound (or only through a disabled binding)."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        values: dict[str, str] = {}
        if remark is not None:
            values["remark"] = v.text("remark", remark, max_len=MAX_REMARK_LEN, min_len=0)
        if dev_alias is not None:
            values["dev_alias"] = v.text("dev_alias", dev_alias, max_len=MAX_ALIAS_LEN, min_len=0)
        if dev_label is not None:
            if isinstance(dev_label, str) or not isinstance(dev_label, Sequence):
                raise InvalidInput("dev_label", "must be a list of strings")
            if len(dev_label) > MAX_LABELS:
                raise InvalidInput("dev_label", f"at most {MAX_LABELS} labels")
            labels = [v.text("dev_label", label, max_len=MAX_LABEL_LEN) for label in dev_label]
            values["dev_label_json"] = json.dumps(labels, ensure_ascii=False)
        if not values:
            raise InvalidInput("binding", "give remark, dev_alias and/or dev_label")
        async with self._transaction(write=True) as conn:
            result = await conn.execute(
                sa.update(bindings)
                .where(bindings.c.uid == uid, bindings.c.did == did, bindings.c.is_disabled.is_(False))
                .values(**values)
            )
            if result.rowcount == 0:
                raise NotFound("binding", did)
            return await self._binding_in(conn, uid, did)

    async def unbind(self, uid: str, did: str) -> None:
        """Remove the binding of ``did`` to ``uid``; :class:`NotFound` if there is none."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        async with self._transaction(write=True) as conn:
            result = await conn.execute(sa.delete(bindings).where(bindings.c.uid == uid, bindings.c.did == did))
            if result.rowcount == 0:
                raise NotFound("binding", did)

    async def list_bindings(
        self,
        uid: str,
        *,
        limit: int = 20,
        skip: int = 0,
        show_disabled: bool = False,
        product_keys: Iterable[str] | None = None,
    ) -> list[Binding]:
        """A user's bindings, newest first (§3.9 defaults: 20 from 0; disabled devices hidden unless asked), of
        devices of ``product_keys`` only when given (the products the calling app serves)."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        limit = v.count("limit", limit, low=1, high=MAX_PAGE)
        skip = v.count("skip", skip, low=0, high=MAX_SKIP)
        show_disabled = v.flag("show_disabled", show_disabled)
        query = _BINDING_SELECT.where(bindings.c.uid == uid)
        if product_keys is not None:
            keys = [v.text("product_key", key, max_len=32, pattern=v.PRODUCT_KEY) for key in product_keys]
            query = query.where(devices.c.product_key.in_(keys))
        if not show_disabled:
            query = query.where(bindings.c.is_disabled.is_(False))
        query = query.order_by(bindings.c.created_at.desc(), bindings.c.id.desc()).limit(limit).offset(skip)
        async with self._transaction(write=False) as conn:
            return [_binding(row) for row in (await conn.execute(query)).all()]

    async def device_for_user(self, uid: str, did: str) -> tuple[Device, bool]:
        """The device ``did`` and whether ``uid`` has an enabled binding to it, in one transaction."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        bound = sa.select(bindings.c.id).where(
            bindings.c.uid == uid, bindings.c.did == did, bindings.c.is_disabled.is_(False)
        )
        async with self._transaction(write=False) as conn:
            device = await self._device_in(conn, did)
            return device, (await conn.execute(bound)).first() is not None

    async def is_bound(self, uid: str, did: str) -> bool:
        """Whether ``uid`` has an enabled binding to ``did``."""
        uid = v.text("uid", uid, max_len=32, pattern=v.UID)
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        query = sa.select(bindings.c.id).where(
            bindings.c.uid == uid, bindings.c.did == did, bindings.c.is_disabled.is_(False)
        )
        async with self._transaction(write=False) as conn:
            return (await conn.execute(query)).first() is not None

    # --- latest data -----------------------------------------------------------------------------------------------

    async def put_latest(self, did: str, attrs: Mapping[str, Any], updated_at: int) -> None:
        """Keep ``attrs`` (data point name → JSON value) as the device's latest data; an older report never wins."""
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        encoded = v.attrs_json("attrs", attrs)
        updated_at = v.timestamp("updated_at", updated_at)
        async with self._transaction(write=True) as conn:
            await self._device_in(conn, did)
            values = {"did": did, "attrs_json": encoded, "updated_at": updated_at}
            if conn.dialect.name == "postgresql":
                pg = pg_dialect.insert(latest_data).values(**values)
                stmt: sa.Executable = pg.on_conflict_do_update(
                    index_elements=[latest_data.c.did],
                    set_={"attrs_json": pg.excluded.attrs_json, "updated_at": pg.excluded.updated_at},
                    where=latest_data.c.updated_at <= pg.excluded.updated_at,
                )
            else:
                lite = sqlite_dialect.insert(latest_data).values(**values)
                stmt = lite.on_conflict_do_update(
                    index_elements=[latest_data.c.did],
                    set_={"attrs_json": lite.excluded.attrs_json, "updated_at": lite.excluded.updated_at},
                    where=latest_data.c.updated_at <= lite.excluded.updated_at,
                )
            await conn.execute(stmt)

    async def get_latest(self, did: str) -> LatestData | None:
        """The device's latest data, None if it never reported; :class:`NotFound` if the device does not exist."""
        did = v.text("did", did, max_len=DID_LEN, pattern=v.DID)
        async with self._transaction(write=False) as conn:
            await self._device_in(conn, did)
            row = (await conn.execute(sa.select(latest_data).where(latest_data.c.did == did))).first()
        if row is None:
            return None
        m = row._mapping
        return LatestData(did=m["did"], attrs=json.loads(m["attrs_json"]), updated_at=int(m["updated_at"]))


def _checked_presence(update: PresenceUpdate) -> PresenceUpdate:
    return PresenceUpdate(
        did=v.text("did", update.did, max_len=DID_LEN, pattern=v.DID),
        online=v.flag("online", update.online),
        client_id=None
        if update.client_id is None
        else v.text("client_id", update.client_id, max_len=MAX_CLIENT_ID_LEN, pattern=v.PRINTABLE),
        peer=None if update.peer is None else v.text("peer", update.peer, max_len=MAX_PEER_LEN, pattern=v.PRINTABLE),
    )
