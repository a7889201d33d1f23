"""The cloud storage, every test on SQLite and on PostgreSQL (``db_url``, see conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gizdev.cloud.identifiers import token_digest
from gizdev.cloud.storage import (
    MIGRATIONS,
    AlreadyExists,
    DatabaseMissing,
    DeviceDisabled,
    EncryptionRequired,
    InvalidInput,
    Migration,
    MigrationError,
    NotFound,
    PasscodeMismatch,
    PresenceUpdate,
    SchemaTooNew,
    Storage,
    StorageError,
    StorageUnavailable,
    current_version,
    database_url,
    make_engine,
    migrate,
)
from gizdev.cloud.storage.tables import metadata, schema_version
from gizdev.errors import CloudError, GizdevError
from gizdev.errors import StorageError as RootStorageError
from gizdev.schema.loader import load_schema
from tests import guards
from tests.conftest import product_path
from tests.guards import run as guarded_run

APPID = "d8b4d2f0bce943ee9ecb4abfa01a2e55"
PK = "0123456789abcdef0123456789abcdef"
PK2 = "fedcba9876543210fedcba9876543210"
SECRET = "00112233445566778899aabbccddeeff"
MAC = "AABBCCDDEEFF"
T0 = 1_700_000_000
NEWEST = 7  # the schema version of this code (MIGRATIONS); pinned, so that adding a step is a visible change


class Clock:
    """A settable clock for Storage (Unix seconds)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


Body = Callable[[Storage, Clock], Awaitable[None]]


def run(db_url: str, body: Body, *, clock: Clock | None = None) -> None:
    """Open a Storage on ``db_url``, run ``body`` in a fresh event loop, close it."""

    async def main() -> None:
        the_clock = clock or Clock()
        storage = await Storage.open(db_url, clock=the_clock)
        try:
            await body(storage, the_clock)
        finally:
            await storage.close()

    guards.run(main())


def run_engine(db_url: str, body: Callable[[AsyncEngine], Awaitable[None]]) -> None:
    """Run ``body`` with a bare engine (no migration) on ``db_url``."""

    async def main() -> None:
        engine = make_engine(db_url)
        try:
            await body(engine)
        finally:
            await engine.dispose()

    guards.run(main())


async def counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows per table, for checking that a refused call left the database unchanged."""
    async with engine.connect() as conn:
        return {
            table.name: int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
            for table in metadata.sorted_tables
        }


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, for an exact before/after comparison."""
    async with engine.connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in (await conn.execute(sa.select(table))).all()), key=repr)
            for table in metadata.sorted_tables
        }


async def seed(storage: Storage) -> None:
    """An app and two products."""
    await storage.add_app(APPID, "appsecret0123", "test app")
    await storage.add_product(PK, SECRET, "GoKit", load_schema(product_path("gokit")))
    await storage.add_product(PK2, SECRET, "other")


def mac(n: int) -> str:
    return f"{n:012X}"


# --- errors ---------------------------------------------------------------------------------------------------------


def test_storage_errors_are_cloud_errors() -> None:
    assert StorageError is RootStorageError
    for error in (
        NotFound("device", "x"),
        AlreadyExists("user", "username", "bob"),
        InvalidInput("mac", "bad"),
        PasscodeMismatch("d"),
        DeviceDisabled("d"),
        EncryptionRequired("d"),
        SchemaTooNew(3, 1),
        MigrationError(2, "boom"),
        StorageUnavailable("gone"),
    ):
        assert isinstance(error, StorageError)
        assert isinstance(error, CloudError)
        assert isinstance(error, GizdevError)
        assert str(error)
    assert len(str(NotFound("user", "x" * 10_000))) < 100  # hostile keys do not blow up messages


# --- opening and migrations -----------------------------------------------------------------------------------------


def test_open_migrates_and_migrate_again_changes_nothing(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        engine = storage.engine
        assert await current_version(engine) == len(MIGRATIONS) == NEWEST
        async with engine.connect() as conn:
            names = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
        assert names == {table.name for table in metadata.sorted_tables}
        await seed(storage)
        before = await snapshot(engine)
        clock.now += 1000
        assert await migrate(engine, clock=clock) == NEWEST
        assert await migrate(engine, clock=clock) == NEWEST
        assert await snapshot(engine) == before  # same version rows (applied_at too) and same data

    run(db_url, body)
    run(db_url, _reopen_keeps_data)


async def _reopen_keeps_data(storage: Storage, _clock: Clock) -> None:
    assert (await storage.get_app(APPID)).name == "test app"
    assert await current_version(storage.engine) == NEWEST


def test_workers_migrating_an_empty_database_at_the_same_moment_all_succeed(db_url: str) -> None:
    """Several ``serve`` workers started together on one new database (PostgreSQL: creating schema_version itself
    raced, one worker failed on pg_type's unique index)."""

    async def scenario() -> None:
        engines = [make_engine(db_url) for _ in range(4)]
        try:
            assert await asyncio.gather(*(migrate(engine) for engine in engines)) == [NEWEST] * 4
            async with engines[0].connect() as conn:
                versions = (await conn.execute(sa.select(schema_version.c.version))).scalars().all()
            assert sorted(versions) == list(range(1, NEWEST + 1))  # each step applied once
        finally:
            for engine in engines:
                await engine.dispose()

    guards.run(scenario())


def test_newer_database_is_refused_untouched(db_url: str) -> None:
    async def make_newer(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        async with storage.engine.begin() as conn:
            await conn.execute(
                sa.insert(schema_version).values(version=NEWEST + 1, description="from the future", applied_at=1)
            )

    run(db_url, make_newer)

    async def check(engine: AsyncEngine) -> None:
        before = await snapshot(engine)
        with pytest.raises(SchemaTooNew) as caught:
            await migrate(engine)
        assert (caught.value.found, caught.value.supported) == (NEWEST + 1, NEWEST)
        assert "newer" in str(caught.value)
        assert await snapshot(engine) == before

    run_engine(db_url, check)

    async def open_it() -> None:
        with pytest.raises(SchemaTooNew):
            await Storage.open(db_url)

    guards.run(open_it())


def test_migration_steps_apply_in_order_and_a_failing_step_rolls_back(db_url: str) -> None:
    def create_extra(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE extra (id INTEGER PRIMARY KEY)"))

    def create_then_fail(conn: sa.Connection) -> None:
        create_extra(conn)
        conn.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))

    def add_column(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE extra ADD COLUMN note VARCHAR(10)"))

    async def tables(engine: AsyncEngine) -> set[str]:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))

    async def body(engine: AsyncEngine) -> None:
        n = NEWEST
        assert await current_version(engine) == 0
        assert await migrate(engine) == n
        with pytest.raises(MigrationError) as caught:
            await migrate(engine, steps=[*MIGRATIONS, Migration(n + 1, "bad", create_then_fail)])
        assert caught.value.version == n + 1
        assert await current_version(engine) == n
        assert "extra" not in await tables(engine)  # the step's DDL was rolled back with it
        steps = [*MIGRATIONS, Migration(n + 1, "extra", create_extra), Migration(n + 2, "note", add_column)]
        assert await migrate(engine, steps=steps) == n + 2
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(schema_version.c.version).order_by("version"))).scalars().all()
            columns = await conn.run_sync(lambda sync: [c["name"] for c in sa.inspect(sync).get_columns("extra")])
        assert rows == list(range(1, n + 3))
        assert columns == ["id", "note"]
        with pytest.raises(SchemaTooNew):
            await migrate(engine)  # this code only knows the steps up to n
        with pytest.raises(ValueError, match="numbered"):
            await migrate(engine, steps=[Migration(2, "gap", create_extra)])

    run_engine(db_url, body)


def test_migrated_schema_matches_tables(db_url: str, tmp_path: Path) -> None:
    """tables.py (what queries use) and the migration steps (what databases get) describe the same schema."""

    def describe(sync: sa.Connection, schema: str | None) -> dict[str, Any]:
        inspector = sa.inspect(sync)
        shape: dict[str, Any] = {}
        for name in sorted(inspector.get_table_names(schema=schema)):
            shape[name] = {
                "columns": [
                    (c["name"], c["nullable"], type(c["type"]).__name__)
                    for c in inspector.get_columns(name, schema=schema)
                ],
                "pk": inspector.get_pk_constraint(name, schema=schema)["constrained_columns"],
                "unique": sorted(
                    tuple(u["column_names"]) for u in inspector.get_unique_constraints(name, schema=schema)
                ),
                "indexes": sorted(
                    tuple(i["column_names"]) for i in inspector.get_indexes(name, schema=schema) if not i["unique"]
                ),
                "fks": sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                    for f in inspector.get_foreign_keys(name, schema=schema)
                ),
            }
        return shape

    async def body(migrated: AsyncEngine) -> None:
        await migrate(migrated)
        async with migrated.connect() as conn:
            got = await conn.run_sync(describe, None)
        if migrated.dialect.name == "postgresql":  # the reference goes into a second schema of the same database
            async with migrated.begin() as conn:
                await conn.execute(sa.text("CREATE SCHEMA reference"))
                await conn.run_sync(
                    lambda sync: metadata.create_all(sync.execution_options(schema_translate_map={None: "reference"}))
                )
                want = await conn.run_sync(describe, "reference")
        else:
            reference = make_engine(tmp_path / "reference.db")
            try:
                async with reference.begin() as conn:
                    await conn.run_sync(metadata.create_all)
                    want = await conn.run_sync(describe, None)
            finally:
                await reference.dispose()
        assert got == want

    run_engine(db_url, body)


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        async with storage.engine.connect() as conn:
            pragma = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000, "synchronous": 1}

    run(str(tmp_path / "plain-path.db"), body)  # a bare path means SQLite
    assert (tmp_path / "plain-path.db").exists()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("cloud.db", "sqlite+aiosqlite:///cloud.db"),
        ("sqlite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
        ("postgresql://u@h:5/db", "postgresql+asyncpg://u@h:5/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url(given: str, expected: str) -> None:
    assert database_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        ":memory:",
        "sqlite://",
        "sqlite:///:memory:",
        "mysql://u@h/db",
        "postgresql+psycopg2://h/db",
        "no such scheme://x",
    ],
)
def test_database_url_refused(given: str) -> None:
    with pytest.raises(StorageError):
        database_url(given)


def test_unreachable_databases_raise_storage_errors(tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(StorageUnavailable, match="does not exist"):
            await Storage.open(tmp_path / "no-such-dir" / "cloud.db")
        with pytest.raises(StorageUnavailable, match="not a file"):
            await Storage.open(tmp_path)
        with pytest.raises(StorageUnavailable):
            await Storage.open("postgresql://nobody@127.0.0.1:1/nothing")

    guards.run(body())


# --- apps and products ----------------------------------------------------------------------------------------------


def test_apps(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        app = await storage.add_app(APPID, "s3cret!", "My app")
        assert (app.appid, app.appsecret, app.name, app.created_at) == (APPID, "s3cret!", "My app", T0)
        assert await storage.get_app(APPID) == app
        with pytest.raises(AlreadyExists) as caught:
            await storage.add_app(APPID, "other", "")
        assert (caught.value.entity, caught.value.field) == ("app", "appid")
        with pytest.raises(NotFound):
            await storage.get_app("0" * 32)

    run(db_url, body)


def test_products(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        schema = load_schema(product_path("gokit"))
        product = await storage.add_product(PK, SECRET, "GoKit 智能", schema)
        fetched = await storage.get_product(PK)
        assert fetched == product
        assert fetched.schema == schema  # through schema_to_json and back, ratios exact
        bare = await storage.add_product(PK2, SECRET, "")
        assert bare.schema is None
        assert [p.product_key for p in await storage.list_products()] == [PK, PK2]
        with pytest.raises(AlreadyExists):
            await storage.add_product(PK, SECRET, "again")
        with pytest.raises(NotFound):
            await storage.get_product("f" * 32)
        with pytest.raises(InvalidInput, match="belongs to product"):
            await storage.add_product("a" * 32, SECRET, "x", schema)  # the schema names another product key

    run(db_url, body)


# --- devices and the registration rule ------------------------------------------------------------------------------


def test_register_same_passcode_returns_the_same_did(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await seed(storage)
        first = await storage.register_device(MAC, PK, "HKIPANQEYX")
        assert first.created
        assert len(first.did) == 22
        device = first.device
        assert (device.mac, device.product_key, device.passcode, device.registered_at) == (MAC, PK, "HKIPANQEYX", T0)
        assert not (device.is_disabled or device.encrypted or device.is_online)
        clock.now += 60
        again = await storage.register_device(MAC.lower(), PK, "HKIPANQEYX")  # MACs compare case-insensitively
        assert (again.did, again.created) == (first.did, False)
        assert again.device == device
        other_product = await storage.register_device(MAC, PK2, "HKIPANQEYX")
        assert other_product.created
        assert other_product.did != first.did
        assert len(await storage.list_devices()) == 2

    run(db_url, body)


def test_register_new_passcode_gets_new_did_and_old_one_waits_for_delete(db_url: str) -> None:
    """Cloud protocol §1.1 step 4 and §1.2: the old DID stays, with its old passcode, for DELETE."""

    async def body(storage: Storage, clock: Clock) -> None:
        await seed(storage)
        old = await storage.register_device(MAC, PK, "OLDPASSCOD")
        clock.now += 10
        new = await storage.register_device(MAC, PK, "NEWPASSCOD")
        assert new.created
        assert new.did != old.did
        kept = await storage.get_device(old.did)
        assert (kept.passcode, kept.is_disabled) == ("OLDPASSCOD", False)
        with pytest.raises(PasscodeMismatch):
            await storage.disable_device(old.did, passcode="NEWPASSCOD")
        assert not (await storage.get_device(old.did)).is_disabled
        gone = await storage.disable_device(old.did, passcode="OLDPASSCOD")
        assert gone.is_disabled
        assert (await storage.disable_device(old.did, passcode="OLDPASSCOD")).is_disabled  # repeated DELETE: fine
        assert not (await storage.get_device(new.did)).is_disabled
        # Retrying the new registration still finds the new DID; the old passcode now gets a fresh DID (rule 3).
        assert (await storage.register_device(MAC, PK, "NEWPASSCOD")).did == new.did
        clock.now += 10
        third = await storage.register_device(MAC, PK, "OLDPASSCOD")
        assert third.created
        assert third.did not in (old.did, new.did)
        listed = await storage.list_devices(mac=MAC, product_key=PK)
        assert [d.did for d in listed] == [old.did, new.did, third.did]
        enabled = await storage.list_devices(mac=MAC.lower(), include_disabled=False)
        assert {d.did for d in enabled} == {new.did, third.did}

    run(db_url, body)


def test_register_encrypted(db_url: str) -> None:
    """§1.3: once encrypted, the DID is fixed and the plain API is refused."""

    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        plain = await storage.register_device(MAC, PK, "PASSCODEAA")
        converted = await storage.register_device(MAC, PK, "PASSCODEAA", encrypted=True)
        assert (converted.did, converted.created, converted.device.encrypted) == (plain.did, False, True)
        renewed = await storage.register_device(MAC, PK, "PASSCODEBB", encrypted=True)
        assert (renewed.did, renewed.created) == (plain.did, False)
        assert renewed.device.passcode == "PASSCODEBB"
        with pytest.raises(EncryptionRequired):
            await storage.register_device(MAC, PK, "PASSCODEBB")
        with pytest.raises(EncryptionRequired):
            await storage.register_device(MAC, PK, "PASSCODECC")
        fresh = await storage.register_device(mac(7), PK, "PASSCODEAA", encrypted=True)
        assert fresh.created
        assert fresh.device.encrypted
        assert len(await storage.list_devices()) == 2

    run(db_url, body)


def test_register_unknown_product(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        with pytest.raises(NotFound) as caught:
            await storage.register_device(MAC, "9" * 32, "HKIPANQEYX")
        assert caught.value.entity == "product"
        assert await storage.list_devices() == []

    run(db_url, body)


def test_devices_online_touch_and_listing(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await seed(storage)
        dids = []
        for n in range(5):
            clock.now += 1
            dids.append((await storage.register_device(mac(n), PK if n % 2 == 0 else PK2, "PASS")).did)
        assert [d.did for d in await storage.list_devices(limit=2, skip=1)] == dids[1:3]
        assert [d.did for d in await storage.list_devices(product_key=PK2)] == [dids[1], dids[3]]
        did = dids[0]
        assert await storage.set_online(did, True, T0 + 100, client_id=did, peer="127.0.0.1:40000")
        device = await storage.get_device(did)
        assert (device.is_online, device.online_changed_at, device.last_seen) == (True, T0 + 100, T0 + 100)
        assert (device.broker_client_id, device.broker_peer) == (did, "127.0.0.1:40000")
        assert not await storage.set_online(did, False, T0 + 99)  # an older event does not undo a newer one
        assert (await storage.get_device(did)).is_online
        assert await storage.set_online(did, False, T0 + 200)
        device = await storage.get_device(did)
        assert (device.is_online, device.last_seen, device.broker_peer) == (False, T0 + 200, "127.0.0.1:40000")
        await storage.touch(did, T0 + 300)
        await storage.touch(did, T0 + 250)  # last_seen never goes back
        assert (await storage.get_device(did)).last_seen == T0 + 300
        missing = "x" * 22
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: storage.get_device(missing),
            lambda: storage.touch(missing, T0),
            lambda: storage.set_online(missing, True, T0),
            lambda: storage.disable_device(missing),
        ]
        for call in calls:
            with pytest.raises(NotFound):
                await call()

    run(db_url, body)


def test_a_burst_of_connection_events_is_stored_in_one_call(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await seed(storage)
        dids = []
        for n in range(3):
            clock.now += 1
            dids.append((await storage.register_device(mac(n), PK, "PASS")).did)
        a, b, c = dids
        assert await storage.set_online(c, True, T0 + 500)  # a newer change than the burst's
        updates = [
            PresenceUpdate(b, True, client_id=b, peer="127.0.0.1:1"),
            PresenceUpdate("x" * 22, True),  # no such device
            PresenceUpdate(a, True, client_id=a),
            PresenceUpdate("bad did!", True),  # malformed: not a device either, and nothing else fails
            PresenceUpdate(a, False),  # the same device again: applied after its connect, in order
            PresenceUpdate(c, False),  # older than its last change
            PresenceUpdate(b, True, client_id=b, peer="x" * 10_000),  # a hostile peer: refused alone
        ]
        assert await storage.set_online_many(updates, T0 + 100) == [True, None, True, None, True, False, None]
        states = {d.did: (d.is_online, d.broker_peer) for d in await storage.list_devices()}
        assert states == {a: (False, None), b: (True, "127.0.0.1:1"), c: (True, None)}
        assert await storage.set_online_many([], T0 + 100) == []

    run(db_url, body)


# --- users and tokens -----------------------------------------------------------------------------------------------


def test_users(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        other_app = "0" * 32
        await storage.add_app(other_app, "secret", "other")
        anon = await storage.create_user(APPID, phone_id="wx-openid-Ω")
        assert (anon.is_anonymous, anon.username, anon.password_hash, anon.created_at) == (True, None, None, T0)
        assert len(anon.uid) == 32
        named = await storage.create_user(APPID, username="alice", password_hash="$argon2id$v=19$m=65536$abc")
        assert not named.is_anonymous
        assert named.password_hash == "$argon2id$v=19$m=65536$abc"  # stored as given, not hashed again
        assert await storage.get_user_by_phone(APPID, "wx-openid-Ω") == anon
        assert await storage.get_user_by_username(APPID, "alice") == named
        assert await storage.get_user_by_uid(named.uid) == named
        with pytest.raises(AlreadyExists) as caught:
            await storage.create_user(APPID, username="alice", password_hash="h")
        assert caught.value.field == "username"
        with pytest.raises(AlreadyExists) as caught:
            await storage.create_user(APPID, phone_id="wx-openid-Ω")
        assert caught.value.field == "phone_id"
        # Unique per app, not globally; and many users without a username/phone_id coexist (NULLs never clash).
        await storage.create_user(other_app, username="alice", password_hash="h")
        await storage.create_user(APPID, phone_id="second")
        await storage.create_user(APPID, username="bob", password_hash="h")
        assert (await counts(storage.engine))["users"] == 5
        with pytest.raises(NotFound):
            await storage.get_user_by_username(APPID, "ALICE")  # usernames are case-sensitive
        with pytest.raises(NotFound):
            await storage.get_user_by_phone(other_app, "wx-openid-Ω")
        with pytest.raises(NotFound):
            await storage.get_user_by_uid("f" * 32)
        with pytest.raises(NotFound) as not_found:
            await storage.create_user("1" * 32, phone_id="p")
        assert not_found.value.entity == "app"

    run(db_url, body)


def test_tokens_and_expiry(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await seed(storage)
        user = await storage.create_user(APPID, phone_id="p")
        digest = token_digest("0b5fdc3a4f6f4d6b9f1c8a1e2d3c4b5a")
        assert len(digest) == 64
        token = await storage.store_token(digest, user.uid, APPID, T0 + 3600)
        assert await storage.lookup_token(digest) == token
        assert await storage.lookup_token(digest, now=T0 + 3599) == token
        assert await storage.lookup_token(digest, now=T0 + 3600) is None  # expire_at is the first invalid second
        clock.now = T0 + 7200
        assert await storage.lookup_token(digest) is None
        assert await storage.lookup_token("0" * 64) is None
        with pytest.raises(AlreadyExists):
            await storage.store_token(digest, user.uid, APPID, T0 + 9999)
        with pytest.raises(NotFound):  # the user belongs to APPID, not to this app
            await storage.store_token(token_digest("x"), user.uid, "0" * 32, T0 + 9999)
        with pytest.raises(InvalidInput, match="SHA-256"):
            await storage.store_token("0b5fdc3a4f6f4d6b9f1c8a1e2d3c4b5a", user.uid, APPID, T0 + 9999)
        fresh = token_digest("fresh")
        await storage.store_token(fresh, user.uid, APPID, T0 + 10_000)
        assert await storage.purge_expired_tokens() == 1
        assert await storage.lookup_token(fresh) is not None
        assert await storage.delete_token(fresh)
        assert not await storage.delete_token(fresh)
        assert (await counts(storage.engine))["tokens"] == 0

    run(db_url, body)


# --- bindings -------------------------------------------------------------------------------------------------------


def test_bindings(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await seed(storage)
        user = await storage.create_user(APPID, phone_id="p")
        other = await storage.create_user(APPID, phone_id="q")
        dids = []
        for n in range(25):
            dids.append((await storage.register_device(mac(n), PK, "PASS")).did)
        for n, did in enumerate(dids):
            if n % 5 == 0:
                clock.now += 1  # several bindings share a second: the order must still be stable
            binding = await storage.bind(user.uid, did, f"remark {n}", dev_alias=f"alias {n}")
            assert (binding.uid, binding.did, binding.remark, binding.dev_alias) == (
                user.uid,
                did,
                f"remark {n}",
                f"alias {n}",
            )
            assert (binding.product_name, binding.device.did, binding.is_disabled) == ("GoKit", did, False)
            if n == 0:
                first = binding
        newest_first = list(reversed(dids))
        assert [b.did for b in await storage.list_bindings(user.uid)] == newest_first[:20]  # §3.9 default limit 20
        pages = [await storage.list_bindings(user.uid, limit=10, skip=skip) for skip in (0, 10, 20, 30)]
        assert [[b.did for b in page] for page in pages] == [
            newest_first[:10],
            newest_first[10:20],
            newest_first[20:],
            [],
        ]
        assert await storage.is_bound(user.uid, dids[0])
        assert not await storage.is_bound(other.uid, dids[0])
        with pytest.raises(AlreadyExists):
            await storage.bind(user.uid, dids[0])
        # Bound again with rebind: what is given replaces, what is not (None) stays; the binding keeps its age.
        again = await storage.bind(user.uid, dids[0], "new remark", rebind=True)
        assert (again.remark, again.dev_alias, again.created_at) == ("new remark", "alias 0", first.created_at)
        again = await storage.bind(user.uid, dids[0], dev_alias="new alias", rebind=True)
        assert (again.remark, again.dev_alias) == ("new remark", "new alias")
        await storage.bind(other.uid, dids[0])  # a device may have several users

        await storage.disable_device(dids[3])
        assert not await storage.is_bound(user.uid, dids[3])
        visible = [b.did for b in await storage.list_bindings(user.uid, limit=100)]
        assert dids[3] not in visible
        assert len(visible) == 24
        everything = await storage.list_bindings(user.uid, limit=100, show_disabled=True)
        assert len(everything) == 25
        disabled = next(b for b in everything if b.did == dids[3])
        assert disabled.is_disabled
        assert disabled.device.is_disabled
        with pytest.raises(DeviceDisabled):
            await storage.bind(other.uid, dids[3])

        updated = await storage.update_binding(user.uid, dids[1], dev_alias="kitchen")
        assert (updated.remark, updated.dev_alias) == ("remark 1", "kitchen")
        await storage.unbind(user.uid, dids[1])
        assert not await storage.is_bound(user.uid, dids[1])
        with pytest.raises(NotFound):
            await storage.unbind(user.uid, dids[1])
        with pytest.raises(NotFound):
            await storage.update_binding(user.uid, dids[1], remark="x")
        with pytest.raises(NotFound):
            await storage.bind("f" * 32, dids[0])
        with pytest.raises(NotFound):
            await storage.bind(user.uid, "Z" * 22)
        assert await storage.list_bindings("f" * 32) == []

    run(db_url, body)


# --- latest data ----------------------------------------------------------------------------------------------------


def test_latest_data_round_trip(db_url: str) -> None:
    attrs: dict[str, Any] = {
        "LED_OnOff": True,
        "LED_Color": "自定义",
        "Temperature": -12.5,
        "Infrared": 0,
        "Alert_1": False,
        "nested": {"emoji": "🌡️", "list": [1, 2.25, None, "ß", {"deep": ["x"]}], "empty": {}},
        "Motor_Speed": 2**40,
        "quote": "'; DROP TABLE latest_data; --",
    }

    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        did = (await storage.register_device(MAC, PK, "PASS")).did
        assert await storage.get_latest(did) is None
        await storage.put_latest(did, attrs, T0 + 5)
        latest = await storage.get_latest(did)
        assert latest is not None
        assert (latest.did, latest.attrs, latest.updated_at) == (did, attrs, T0 + 5)
        await storage.put_latest(did, {"LED_OnOff": False}, T0 + 4)  # an older report does not win
        assert (await storage.get_latest(did)) == latest
        await storage.put_latest(did, {"LED_OnOff": False}, T0 + 6)
        newest = await storage.get_latest(did)
        assert newest is not None
        assert (newest.attrs, newest.updated_at) == ({"LED_OnOff": False}, T0 + 6)
        with pytest.raises(NotFound):
            await storage.put_latest("Z" * 22, attrs, T0)
        with pytest.raises(NotFound):
            await storage.get_latest("Z" * 22)

    run(db_url, body)


# --- hostile input --------------------------------------------------------------------------------------------------

SQLISH = "x'); DROP TABLE users; --"


def test_sql_like_text_is_stored_verbatim(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await storage.add_app(APPID, "s'ecret\"--", SQLISH)
        await storage.add_product(PK, SECRET, SQLISH)
        user = await storage.create_user(APPID, username=SQLISH, password_hash=SQLISH)
        anon = await storage.create_user(APPID, phone_id="1 OR 1=1")
        did = (await storage.register_device(MAC, PK, "PASS")).did
        binding = await storage.bind(user.uid, did, SQLISH + " 🙂", dev_alias="%_\\")
        assert (await storage.get_app(APPID)).name == SQLISH
        assert (await storage.get_app(APPID)).appsecret == "s'ecret\"--"
        assert (await storage.get_product(PK)).name == SQLISH
        assert await storage.get_user_by_username(APPID, SQLISH) == user
        assert await storage.get_user_by_phone(APPID, "1 OR 1=1") == anon
        with pytest.raises(NotFound):  # no LIKE semantics anywhere
            await storage.get_user_by_username(APPID, "%")
        assert (await storage.list_bindings(user.uid))[0] == binding
        assert binding.remark == SQLISH + " 🙂"
        assert binding.dev_alias == "%_\\"
        assert (await counts(storage.engine))["users"] == 2

    run(db_url, body)


def _hostile_calls(did: str, uid: str) -> list[tuple[str, Callable[[Storage], Awaitable[object]]]]:
    long = "a" * 100_000
    return [
        ("appid too long", lambda s: s.add_app("a" * 65, "secret", "")),
        ("appid with quote", lambda s: s.add_app("a'; --", "secret", "")),
        ("appid not str", lambda s: s.add_app(123, "secret", "")),
        ("name too long", lambda s: s.add_app("b" * 32, "secret", long)),
        ("name with NUL", lambda s: s.add_app("b" * 32, "secret", "a\x00b")),
        ("name with lone surrogate", lambda s: s.add_app("b" * 32, "secret", "a\ud800")),
        ("secret with space", lambda s: s.add_app("b" * 32, "sec ret", "")),
        ("product key short", lambda s: s.add_product("abc", SECRET, "n")),
        ("product secret not hex", lambda s: s.add_product("e" * 32, "z" * 32, "n")),
        ("schema wrong type", lambda s: s.add_product("e" * 32, SECRET, "n", {"a": 1})),
        ("mac with colons", lambda s: s.register_device("AA:BB:CC:DD:EE:FF", PK, "PASS")),
        ("mac bytes", lambda s: s.register_device(b"AABBCCDDEEFF", PK, "PASS")),
        ("mac with newline", lambda s: s.register_device(MAC + "\n", PK, "PASS")),
        ("passcode too long", lambda s: s.register_device(mac(99), PK, "P" * 17)),
        ("passcode empty", lambda s: s.register_device(mac(99), PK, "")),
        ("passcode with ampersand", lambda s: s.register_device(mac(99), PK, "AB&did=x")),
        ("encrypted not bool", lambda s: s.register_device(mac(99), PK, "PASS", encrypted=1)),
        ("did short", lambda s: s.get_device("abc")),
        ("did sql", lambda s: s.disable_device("' OR '1'='1' --xxxxxxxx")),
        ("did None", lambda s: s.touch(None, T0)),
        ("when float", lambda s: s.touch(did, 1.5)),
        ("when bool", lambda s: s.set_online(did, True, True)),
        ("when negative", lambda s: s.touch(did, -1)),
        ("when huge", lambda s: s.touch(did, 2**70)),
        ("online int", lambda s: s.set_online(did, 1, T0)),
        ("peer with space", lambda s: s.set_online(did, True, T0, peer="1.2.3.4 5")),
        ("user both kinds", lambda s: s.create_user(APPID, phone_id="p2", username="u", password_hash="h")),
        ("user no kind", lambda s: s.create_user(APPID)),
        ("user no hash", lambda s: s.create_user(APPID, username="carol")),
        ("username too long", lambda s: s.create_user(APPID, username=long, password_hash="h")),
        ("username empty", lambda s: s.create_user(APPID, username="", password_hash="h")),
        ("phone_id dict", lambda s: s.create_user(APPID, phone_id={"$ne": 1})),
        ("uid upper", lambda s: s.get_user_by_uid(uid.upper())),
        ("token raw", lambda s: s.store_token("not-a-hash", uid, APPID, T0 + 1)),
        ("expire_at str", lambda s: s.store_token("1" * 64, uid, APPID, "tomorrow")),
        ("remark too long", lambda s: s.bind(uid, did, "r" * 1025)),
        ("alias not str", lambda s: s.bind(uid, did, "", dev_alias=5)),
        ("limit zero", lambda s: s.list_bindings(uid, limit=0)),
        ("limit huge", lambda s: s.list_bindings(uid, limit=10**6)),
        ("skip negative", lambda s: s.list_bindings(uid, skip=-1)),
        ("show_disabled str", lambda s: s.list_bindings(uid, show_disabled="yes")),
        ("update nothing", lambda s: s.update_binding(uid, did)),
        ("labels a string", lambda s: s.update_binding(uid, did, dev_label="kitchen")),
        ("label with NUL", lambda s: s.update_binding(uid, did, dev_label=["a\x00"])),
        ("link bad key", lambda s: s.link_app_product(APPID, "' OR 1=1 --")),
        ("link bad appid", lambda s: s.link_app_product("a'; --", PK)),
        ("linked str", lambda s: s.link_app_product(APPID, PK2, linked="no")),
        ("app products one string", lambda s: s.add_app("c" * 32, "secret", "", PK)),
        ("listing bad key", lambda s: s.list_bindings(uid, product_keys=["nope"])),
        ("version with space", lambda s: s.record_versions(did, mcu=True, hard_version="a b", soft_version="1")),
        ("version too long", lambda s: s.record_versions(did, mcu=False, hard_version="1", soft_version="9" * 17)),
        ("mcu not bool", lambda s: s.record_versions(did, mcu="yes", hard_version="1", soft_version="1")),
        ("device type", lambda s: s.register_device(mac(99), PK, "PASS", encrypted=True, device_type="sub_dev")),
        ("digest with space", lambda s: s.register_device(mac(99), PK, "P", encrypted=True, mqtt_password_hash="a b")),
        ("attrs list", lambda s: s.put_latest(did, [1, 2], T0)),
        ("attrs int key", lambda s: s.put_latest(did, {1: 2}, T0)),
        ("attrs nan", lambda s: s.put_latest(did, {"t": float("nan")}, T0)),
        ("attrs bytes", lambda s: s.put_latest(did, {"b": b"\x00"}, T0)),
        ("attrs set", lambda s: s.put_latest(did, {"s": {1, 2}}, T0)),
        ("attrs too big", lambda s: s.put_latest(did, {"b": "x" * 70_000}, T0)),
        ("attrs too deep", lambda s: s.put_latest(did, _deep(100), T0)),
        ("attrs lone surrogate", lambda s: s.put_latest(did, {"s": "\udc80"}, T0)),
        ("updated_at str", lambda s: s.put_latest(did, {}, "now")),
    ]


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"d": value}
    return value


def test_hostile_inputs_raise_invalid_input_and_change_nothing(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        user = await storage.create_user(APPID, phone_id="p")
        did = (await storage.register_device(MAC, PK, "PASS")).did
        await storage.bind(user.uid, did)
        await storage.put_latest(did, {"a": 1}, T0)
        before = await snapshot(storage.engine)
        for label, call in _hostile_calls(did, user.uid):
            with pytest.raises(InvalidInput) as caught:
                await call(storage)
            assert caught.value.field, label
            assert len(str(caught.value)) < 300, label  # messages stay short whatever was sent
        assert await snapshot(storage.engine) == before

    run(db_url, body)


def test_refused_writes_roll_back_completely(db_url: str) -> None:
    """Errors found after the transaction began (clashes, missing rows, passcodes) leave no partial writes."""

    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        user = await storage.create_user(APPID, username="alice", password_hash="h")
        did = (await storage.register_device(MAC, PK, "PASS")).did
        await storage.bind(user.uid, did)
        before = await counts(storage.engine)
        refusals: list[tuple[type[StorageError], Callable[[], Awaitable[object]]]] = [
            (AlreadyExists, lambda: storage.add_app(APPID, "x", "")),
            (AlreadyExists, lambda: storage.add_product(PK, SECRET, "")),
            (AlreadyExists, lambda: storage.create_user(APPID, username="alice", password_hash="h2")),
            (AlreadyExists, lambda: storage.bind(user.uid, did)),
            (NotFound, lambda: storage.create_user("9" * 32, username="x", password_hash="h")),
            (NotFound, lambda: storage.register_device(mac(5), "9" * 32, "PASS")),
            (NotFound, lambda: storage.store_token("2" * 64, "f" * 32, APPID, T0 + 1)),
            (NotFound, lambda: storage.put_latest("Q" * 22, {"a": 1}, T0)),
            (PasscodeMismatch, lambda: storage.disable_device(did, passcode="WRONG")),
        ]
        for error, call in refusals:
            with pytest.raises(error):
                await call()
        assert await counts(storage.engine) == before
        assert not (await storage.get_device(did)).is_disabled

    run(db_url, body)


# --- concurrency ----------------------------------------------------------------------------------------------------


def test_concurrent_registrations(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        results = await asyncio.gather(*(storage.register_device(mac(n), PK, "PASSCODE") for n in range(50)))
        dids = [result.did for result in results]
        assert all(result.created for result in results)
        assert len(set(dids)) == 50
        assert all(len(did) == 22 for did in dids)
        assert (await counts(storage.engine))["devices"] == 50
        # The same device registering ten times at once gets one DID, not ten.
        same = await asyncio.gather(*(storage.register_device(mac(1000), PK, "SAMEPASS") for _ in range(10)))
        assert len({result.did for result in same}) == 1
        assert sum(result.created for result in same) == 1
        assert (await counts(storage.engine))["devices"] == 51

    run(db_url, body)


def test_concurrent_unique_inserts_report_already_exists(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        outcomes = await asyncio.gather(
            *(storage.create_user(APPID, username="race", password_hash="h") for _ in range(10)),
            return_exceptions=True,
        )
        assert sum(not isinstance(outcome, BaseException) for outcome in outcomes) == 1
        assert all(isinstance(o, AlreadyExists) for o in outcomes if isinstance(o, BaseException))

    run(db_url, body)


# --- admin: apps and users listed, users disabled ---------------------------------------------------------------------


def test_list_apps_and_users_and_disable_a_user(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await seed(storage)
        clock.now += 1
        other = await storage.add_app("0" * 32, "secret-other", "other")
        assert [(a.appid, a.name) for a in await storage.list_apps()] == [(APPID, "test app"), (other.appid, "other")]
        named = await storage.create_user(APPID, username="bob", password_hash="h")
        anonymous = await storage.create_user(APPID, phone_id="p")
        clock.now += 1
        stranger = await storage.create_user(other.appid, phone_id="p")
        assert not named.is_disabled
        assert {u.uid for u in await storage.list_users(appid=APPID)} == {named.uid, anonymous.uid}
        assert [u.uid for u in await storage.list_users()][-1] == stranger.uid  # oldest first
        assert [u.uid for u in await storage.list_users(limit=1, skip=2)] == [stranger.uid]

        digest, expire = "a" * 64, T0 + 3600
        await storage.store_token(digest, named.uid, APPID, expire)
        session = await storage.lookup_session(digest)
        assert session is not None and session[0].uid == named.uid and session[1] == named
        assert await storage.lookup_session(digest, now=expire) is None  # expire_at is the first invalid second

        off = await storage.set_user_disabled(named.uid, True)
        assert off.is_disabled and (await storage.get_user_by_uid(named.uid)).is_disabled
        assert await storage.lookup_session(digest) is None
        assert await storage.lookup_token(digest) is None  # its tokens are gone, not only refused
        # A token stored after the disable (a login racing it) does not open a session either.
        await storage.store_token("b" * 64, named.uid, APPID, expire)
        assert await storage.lookup_session("b" * 64) is None
        on = await storage.set_user_disabled(named.uid, False)
        assert not on.is_disabled
        assert await storage.lookup_session("b" * 64) is not None
        assert await storage.lookup_session(digest) is None  # the token from before the disable stays dead
        with pytest.raises(NotFound):
            await storage.set_user_disabled("f" * 32, True)
        with pytest.raises(InvalidInput):
            await storage.set_user_disabled("not a uid", True)

    run(db_url, body)


def test_open_without_create_refuses_a_missing_database(db_url: str, tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(DatabaseMissing):  # an empty PostgreSQL database, or no SQLite file yet
            await Storage.open(db_url, create=False)
        if db_url.startswith("sqlite"):
            assert list(tmp_path.iterdir()) == []  # nothing created
            empty = tmp_path / "empty.db"
            empty.touch()
            with pytest.raises(DatabaseMissing, match=r"empty\.db"):
                await Storage.open(empty, create=False)
        await (await Storage.open(db_url)).close()  # the server creates it
        await (await Storage.open(db_url, create=False)).close()  # then the admin commands find it

    guarded_run(body())


def test_users_of_a_version_1_database_stay_enabled(db_url: str) -> None:
    async def body(engine: AsyncEngine) -> None:
        assert await migrate(engine, steps=MIGRATIONS[:1]) == 1
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("INSERT INTO apps (appid, appsecret, name, created_at) VALUES (:a, 's', 'n', 1)"), {"a": APPID}
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO users (uid, appid, username, phone_id, password_hash, is_anonymous, created_at)"
                    " VALUES (:u, :a, NULL, 'p', NULL, :t, 1)"
                ),
                {"u": "e" * 32, "a": APPID, "t": True},
            )
        assert await migrate(engine) == NEWEST
        storage = Storage(engine)
        try:
            assert not (await storage.get_user_by_uid("e" * 32)).is_disabled
        finally:
            await storage.close()

    run_engine(db_url, body)


# --- schema version 4: apps and their products, device facts, binding roles and labels ----------------------------


def test_apps_reach_the_products_they_are_linked_to(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        assert (await storage.get_app(APPID)).product_keys == frozenset()  # seed() links nothing
        other = await storage.add_app("other-app", "secret", "other", [PK, PK2, PK])  # a key twice is one link
        assert other.product_keys == {PK, PK2}
        assert (await storage.get_app("other-app")).product_keys == {PK, PK2}
        assert (await storage.link_app_product(APPID, PK)).product_keys == {PK}
        assert (await storage.link_app_product(APPID, PK)).product_keys == {PK}  # linked already: unchanged
        assert (await storage.link_app_product("other-app", PK2, linked=False)).product_keys == {PK}
        assert (await storage.link_app_product("other-app", PK2, linked=False)).product_keys == {PK}
        assert {app.appid: app.product_keys for app in await storage.list_apps()} == {
            APPID: {PK},
            "other-app": {PK},
        }
        with pytest.raises(NotFound):
            await storage.link_app_product(APPID, "ab" * 16)  # no such product
        with pytest.raises(NotFound):
            await storage.link_app_product("nobody", PK)
        with pytest.raises(NotFound):  # an unknown product leaves no app behind
            await storage.add_app("third", "secret", "", ["ab" * 16])
        with pytest.raises(NotFound):
            await storage.get_app("third")
        for bad in ("not hex", PK[:-1], "' OR 1=1 --"):
            with pytest.raises(InvalidInput):
                await storage.link_app_product(APPID, bad)
        with pytest.raises(InvalidInput):
            await storage.add_app("fourth", "secret", "", PK)  # one string is not a list of keys

        # The bindings list keeps to the products it is given (the calling app's).
        user = await storage.create_user(APPID, phone_id="p")
        gokit = (await storage.register_device(mac(1), PK, "PASS")).did
        plain = (await storage.register_device(mac(2), PK2, "PASS")).did
        await storage.bind(user.uid, gokit)
        await storage.bind(user.uid, plain)
        assert [b.did for b in await storage.list_bindings(user.uid, product_keys={PK})] == [gokit]
        assert [b.did for b in await storage.list_bindings(user.uid, product_keys=set())] == []
        assert {b.did for b in await storage.list_bindings(user.uid)} == {gokit, plain}

    run(db_url, body)


def test_device_facts_roles_and_labels(db_url: str) -> None:
    async def body(storage: Storage, _clock: Clock) -> None:
        await seed(storage)
        plain = await storage.register_device(MAC, PK, "PASSCODEAA")
        assert (plain.device.device_type, plain.device.mqtt_password_hash) == ("normal", None)
        with pytest.raises(InvalidInput):  # only the encrypted API gives a password of its own
            await storage.register_device(mac(5), PK, "PASSCODEAA", mqtt_password_hash="$7$101$a$b")
        with pytest.raises(InvalidInput):
            await storage.register_device(mac(5), PK, "PASSCODEAA", encrypted=True, device_type="sub_dev")
        sealed = await storage.register_device(
            mac(6), PK, "SEALED", encrypted=True, device_type="center_control", mqtt_password_hash="$7$101$a$b"
        )
        assert (sealed.device.device_type, sealed.device.mqtt_password_hash) == ("center_control", "$7$101$a$b")
        again = await storage.register_device(mac(6), PK, "SEALED", encrypted=True, mqtt_password_hash="$7$101$c$d")
        assert (again.did, again.device.mqtt_password_hash, again.device.device_type) == (
            sealed.did,
            "$7$101$c$d",
            "normal",
        )
        # A plain device that registers encrypted gets the password (rule 5 keeps its DID).
        converted = await storage.register_device(MAC, PK, "PASSCODEAA", encrypted=True, mqtt_password_hash="$7$x")
        assert (converted.did, converted.device.mqtt_password_hash) == (plain.did, "$7$x")

        device = await storage.record_versions(plain.did, mcu=True, hard_version="03010100", soft_version="03030000")
        assert (device.mcu_hard_version, device.mcu_soft_version, device.wifi_soft_version) == (
            "03010100",
            "03030000",
            "",
        )
        device = await storage.record_versions(plain.did, mcu=False, hard_version="000LINUX", soft_version="04020006")
        assert (device.wifi_hard_version, device.wifi_soft_version, device.mcu_soft_version) == (
            "000LINUX",
            "04020006",
            "03030000",
        )
        assert (await storage.get_device(plain.did)).wifi_soft_version == "04020006"
        with pytest.raises(NotFound):
            await storage.record_versions("Q" * 22, mcu=True, hard_version="1", soft_version="1")
        for bad in ("", "x" * 17, "a b", "a&b", "0301\x00"):
            with pytest.raises(InvalidInput):
                await storage.record_versions(plain.did, mcu=True, hard_version=bad, soft_version="1")

        # Roles: the first binder is special, later ones normal; when the special one goes, the next is special.
        alice, bob, carol = [await storage.create_user(APPID, phone_id=name) for name in ("a", "b", "c")]
        assert (await storage.bind(alice.uid, plain.did)).role == "special"
        assert (await storage.bind(bob.uid, plain.did)).role == "normal"
        assert (await storage.bind(alice.uid, plain.did, "x", rebind=True)).role == "special"
        await storage.unbind(alice.uid, plain.did)
        assert (await storage.bind(carol.uid, plain.did)).role == "special"
        assert [b.role for b in await storage.list_bindings(bob.uid)] == ["normal"]

        labelled = await storage.update_binding(bob.uid, plain.did, dev_label=["kitchen", "Küche", "'; DROP --"])
        assert labelled.dev_label == ("kitchen", "Küche", "'; DROP --")
        assert (labelled.remark, labelled.dev_alias) == ("", "")
        assert (await storage.list_bindings(bob.uid))[0].dev_label == ("kitchen", "Küche", "'; DROP --")
        assert (await storage.update_binding(bob.uid, plain.did, dev_label=[])).dev_label == ()
        for labels in ("kitchen", ["x"] * 21, ["x" * 65], [""], [1], ["a\x00"]):
            with pytest.raises(InvalidInput):
                await storage.update_binding(bob.uid, plain.did, dev_label=labels)  # type: ignore[arg-type]

    run(db_url, body)


def test_a_version_3_database_keeps_its_apps_working(db_url: str) -> None:
    """Migration 4 links every existing app to every existing product (what they reached before), keeps existing
    devices on their passcode, and makes each device's oldest binding its special one."""

    async def body(engine: AsyncEngine) -> None:
        assert await migrate(engine, steps=MIGRATIONS[:3]) == 3
        async with engine.begin() as conn:
            for appid in (APPID, "second-app"):
                await conn.execute(
                    sa.text("INSERT INTO apps (appid, appsecret, name, created_at) VALUES (:a, 's', 'n', 1)"),
                    {"a": appid},
                )
            for key in (PK, PK2):
                await conn.execute(
                    sa.text(
                        "INSERT INTO products (product_key, product_secret, name, schema_json, created_at)"
                        " VALUES (:k, :s, 'p', NULL, 1)"
                    ),
                    {"k": key, "s": SECRET},
                )
            await conn.execute(
                sa.text(
                    "INSERT INTO devices (did, mac, product_key, passcode, is_disabled, encrypted, registered_at,"
                    " last_seen, is_online, online_changed_at, broker_client_id, broker_peer)"
                    " VALUES (:d, :m, :k, 'PASS', :f, :t, 1, NULL, :f, NULL, NULL, NULL)"
                ),
                {"d": "D" * 22, "m": MAC, "k": PK, "f": False, "t": True},
            )
            for uid, phone in (("a" * 32, "p1"), ("b" * 32, "p2")):
                await conn.execute(
                    sa.text(
                        "INSERT INTO users (uid, appid, username, phone_id, password_hash, is_anonymous, created_at,"
                        " is_disabled) VALUES (:u, :a, NULL, :p, NULL, :t, 1, :f)"
                    ),
                    {"u": uid, "a": APPID, "p": phone, "t": True, "f": False},
                )
            for uid, remark in (("b" * 32, "second"), ("a" * 32, "first")):  # b binds first (lower id)
                await conn.execute(
                    sa.text(
                        "INSERT INTO bindings (uid, did, remark, dev_alias, is_disabled, created_at)"
                        " VALUES (:u, :d, :r, '', :f, 5)"
                    ),
                    {"u": uid, "d": "D" * 22, "r": remark, "f": False},
                )
        assert await migrate(engine) == NEWEST
        storage = Storage(engine)
        try:
            for appid in (APPID, "second-app"):
                assert (await storage.get_app(appid)).product_keys == {PK, PK2}
            device = await storage.get_device("D" * 22)
            assert (device.device_type, device.mqtt_password_hash, device.mcu_soft_version) == ("normal", None, "")
            assert device.encrypted  # still its passcode as MQTT password until it registers again
            roles = {b.uid: (b.role, b.dev_label) for b in await storage.list_bindings("a" * 32)}
            roles |= {b.uid: (b.role, b.dev_label) for b in await storage.list_bindings("b" * 32)}
            assert roles == {"b" * 32: ("special", ()), "a" * 32: ("normal", ())}
            # A product added after the migration is not linked to anyone: that is the admin's choice now.
            await storage.add_product("ab" * 16, SECRET, "new")
            assert "ab" * 16 not in (await storage.get_app(APPID)).product_keys
        finally:
            await storage.close()

    run_engine(db_url, body)
