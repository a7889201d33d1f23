"""Schema migrations: numbered steps, applied in order, each in its own transaction, recorded in ``schema_version``.

How it works:

* ``schema_version`` holds one row per applied step (version, description, applied_at). The database's version is
  the highest row; an empty or missing table is version 0.
* :func:`migrate` creates ``schema_version`` if needed, then for each step newer than the database runs the step and
  inserts its row *in one transaction*, so a failing step leaves no half-made tables and the version unchanged
  (both databases have transactional DDL; SQLite gets it through the engine's own ``BEGIN``, see ``engine.py``).
* Every step's transaction first takes the migration lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE
  schema_version``) and re-reads the version, so two processes starting at once apply each step exactly once.
* Running it again finds nothing newer and changes nothing. A database whose version is above the newest step this
  code knows is refused with :class:`SchemaTooNew` before anything is touched.

Rules for adding a step: append ``Migration(n + 1, …)``; never edit a released step (databases in the field have run
it). A step is a plain function of a synchronous SQLAlchemy ``Connection`` (``run_sync``), so it can use
``MetaData.create_all``, ``sa.schema.CreateIndex``/``DropIndex``, or ``conn.execute(sa.text("ALTER TABLE …"))`` for
whatever both dialects accept. Update ``tables.py`` to the new shape in the same change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gizdev.cloud.storage.engine import WRITE_OPTION
from gizdev.cloud.storage.errors import MigrationError, SchemaTooNew, StorageUnavailable
from gizdev.cloud.storage.tables import NAMING_CONVENTION, schema_version

__all__ = ["MIGRATIONS", "Migration", "current_version", "migrate"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema step; ``apply`` runs inside the step's transaction."""

    version: int
    description: str
    apply: Callable[[sa.Connection], None]


# --- step 1: the initial tables, frozen as released (tables.py may move on; this must not) --------------------------


def _v1_metadata() -> sa.MetaData:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "apps",
        md,
        sa.Column("appid", sa.String(64), primary_key=True),
        sa.Column("appsecret", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "products",
        md,
        sa.Column("product_key", sa.String(32), primary_key=True),
        sa.Column("product_secret", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("schema_json", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "devices",
        md,
        sa.Column("did", sa.String(22), primary_key=True),
        sa.Column("mac", sa.String(12), nullable=False),
        sa.Column("product_key", sa.String(32), sa.ForeignKey("products.product_key"), nullable=False),
        sa.Column("passcode", sa.String(16), nullable=False),
        sa.Column("is_disabled", sa.Boolean, nullable=False),
        sa.Column("encrypted", sa.Boolean, nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=True),
        sa.Column("is_online", sa.Boolean, nullable=False),
        sa.Column("online_changed_at", sa.BigInteger, nullable=True),
        sa.Column("broker_client_id", sa.String(64), nullable=True),
        sa.Column("broker_peer", sa.String(128), nullable=True),
        sa.Index(None, "mac", "product_key"),
        sa.Index(None, "product_key"),
    )
    sa.Table(
        "users",
        md,
        sa.Column("uid", sa.String(32), primary_key=True),
        sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid"), nullable=False),
        sa.Column("username", sa.String(128), nullable=True),
        sa.Column("phone_id", sa.String(128), nullable=True),
        sa.Column("password_hash", sa.String(512), nullable=True),
        sa.Column("is_anonymous", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("appid", "username"),
        sa.UniqueConstraint("appid", "phone_id"),
    )
    sa.Table(
        "tokens",
        md,
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("uid", sa.String(32), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid"), nullable=False),
        sa.Column("expire_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Index(None, "uid"),
        sa.Index(None, "expire_at"),
    )
    sa.Table(
        "bindings",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(32), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("did", sa.String(22), sa.ForeignKey("devices.did"), nullable=False),
        sa.Column("remark", sa.String(1024), nullable=False),
        sa.Column("dev_alias", sa.String(128), nullable=False),
        sa.Column("is_disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("uid", "did"),
        sa.Index(None, "did"),
    )
    sa.Table(
        "latest_data",
        md,
        sa.Column("did", sa.String(22), sa.ForeignKey("devices.did"), primary_key=True),
        sa.Column("attrs_json", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    return md


def _initial_tables(conn: sa.Connection) -> None:
    _v1_metadata().create_all(conn, checkfirst=False)


# --- step 2: users can be disabled by an admin -----------------------------------------------------------------------


def _users_is_disabled(conn: sa.Connection) -> None:
    # Both dialects take ADD COLUMN with a constant default (existing users: enabled); only the literal differs.
    false = "FALSE" if conn.dialect.name == "postgresql" else "0"
    conn.execute(sa.text(f"ALTER TABLE users ADD COLUMN is_disabled BOOLEAN NOT NULL DEFAULT {false}"))


# --- step 3: accounts (contact points, profile), one-time codes, throttling ------------------------------------------


def _accounts(conn: sa.Connection) -> None:
    for column in (
        "email VARCHAR(254)",
        "phone VARCHAR(32)",
        "name VARCHAR(128) NOT NULL DEFAULT ''",
        "gender VARCHAR(1) NOT NULL DEFAULT 'N'",
        "birthday VARCHAR(10) NOT NULL DEFAULT ''",
        "address VARCHAR(256) NOT NULL DEFAULT ''",
        "lang VARCHAR(16) NOT NULL DEFAULT 'en'",
        "remark VARCHAR(1024) NOT NULL DEFAULT ''",
    ):
        conn.execute(sa.text(f"ALTER TABLE users ADD COLUMN {column}"))
    # Unique indexes, not constraints: SQLite cannot add a constraint to an existing table.
    conn.execute(sa.text("CREATE UNIQUE INDEX ix_users_appid_email ON users (appid, email)"))
    conn.execute(sa.text("CREATE UNIQUE INDEX ix_users_appid_phone ON users (appid, phone)"))
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "one_time_codes",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(254), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("used_at", sa.BigInteger, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Index(None, "purpose", "subject"),
        sa.Index(None, "expires_at"),
    )
    sa.Table(
        "throttle_hits",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Index(None, "key", "at"),
    )
    md.create_all(conn, checkfirst=False)


# --- step 4: who may reach a device, and what the bindings list tells about it ---------------------------------------


def _access_and_device_facts(conn: sa.Connection) -> None:
    """Apps are linked to the products they serve; devices keep their type, MQTT password digest and versions;
    bindings their role and labels.

    Existing apps keep working: every app is linked to every product that exists at migration, which is what they
    could reach before (any app id reached any device). An operator narrows that afterwards with
    ``gizdev cloud app unlink``. Existing devices keep their passcode as MQTT password (``mqtt_password_hash`` NULL)
    until they register through the encrypted API again. The first binding of each device (lowest id, i.e. the
    oldest) becomes its ``special`` binder, the others ``normal``.
    """
    for table, column, kind, default in (
        ("devices", "device_type", "VARCHAR(16)", "'normal'"),
        ("devices", "mqtt_password_hash", "VARCHAR(256)", None),
        ("devices", "wifi_hard_version", "VARCHAR(16)", "''"),
        ("devices", "wifi_soft_version", "VARCHAR(16)", "''"),
        ("devices", "mcu_hard_version", "VARCHAR(16)", "''"),
        ("devices", "mcu_soft_version", "VARCHAR(16)", "''"),
        ("bindings", "role", "VARCHAR(16)", "'normal'"),
        ("bindings", "dev_label_json", "TEXT", "'[]'"),
    ):
        rest = "" if default is None else f" NOT NULL DEFAULT {default}"
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}{rest}"))
    conn.execute(
        sa.text("UPDATE bindings SET role = 'special' WHERE id IN (SELECT MIN(id) FROM bindings GROUP BY did)")
    )
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table("apps", md, sa.Column("appid", sa.String(64), primary_key=True))
    sa.Table("products", md, sa.Column("product_key", sa.String(32), primary_key=True))
    links = sa.Table(
        "app_products",
        md,
        sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
        sa.Column("product_key", sa.String(32), sa.ForeignKey("products.product_key"), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Index(None, "product_key"),
    )
    links.create(conn)
    conn.execute(
        sa.text(
            "INSERT INTO app_products (appid, product_key, created_at)"
            " SELECT apps.appid, products.product_key, :now FROM apps CROSS JOIN products"
        ),
        {"now": int(time.time())},
    )


# --- step 5: third-party identities (authData sign-up, §3.2) --------------------------------------------------


def _identities(conn: sa.Connection) -> None:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table("apps", md, sa.Column("appid", sa.String(64), primary_key=True))
    sa.Table("users", md, sa.Column("uid", sa.String(32), primary_key=True))
    sa.Table(
        "user_identities",
        md,
        sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid"), primary_key=True),
        sa.Column("src", sa.String(16), primary_key=True),
        sa.Column("external_uid", sa.String(128), primary_key=True),
        sa.Column("uid", sa.String(32), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Index(None, "uid"),
    )
    md.tables["user_identities"].create(conn)


# --- step 6: application tokens, captcha pictures -----------------------------------------------------------------


def _app_tokens_and_captchas(conn: sa.Connection) -> None:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table("apps", md, sa.Column("appid", sa.String(64), primary_key=True))  # for the foreign key only
    sa.Table(
        "app_tokens",
        md,
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
        sa.Column("expire_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Index(None, "expire_at"),
    )
    sa.Table(
        "captcha_images",
        md,
        sa.Column("captcha_id", sa.String(64), primary_key=True),
        sa.Column("png", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Index(None, "expires_at"),
    )
    md.create_all(conn, tables=[md.tables["app_tokens"], md.tables["captcha_images"]], checkfirst=False)


# --- step 7: the scheduler's schedules, runs and attempts --------------------------------------------------------


def _v7_metadata() -> sa.MetaData:
    md = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table("users", md, sa.Column("uid", sa.String(32), primary_key=True))  # referenced only; exists already
    sa.Table(
        "schedules",
        md,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("uid", sa.String(32), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
        sa.Column("did", sa.String(22), nullable=True),
        sa.Column("request_json", sa.Text, nullable=False),
        sa.Column("rule_json", sa.Text, nullable=False),
        sa.Column("tasks_json", sa.Text, nullable=False),
        sa.Column("retry_count", sa.Integer, nullable=False),
        sa.Column("retry_task", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("next_due_at", sa.BigInteger, nullable=True),
        sa.Index(None, "uid"),
        sa.Index(None, "next_due_at"),
    )
    sa.Table(
        "schedule_runs",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("schedule_id", sa.String(32), sa.ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=True),
        sa.Column("lease_until", sa.BigInteger, nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("targets_json", sa.Text, nullable=False),
        sa.Column("detail_json", sa.Text, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("schedule_id", "due_at"),
        sa.Index(None, "status", "next_attempt_at"),
    )
    sa.Table(
        "schedule_attempts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("schedule_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail_json", sa.Text, nullable=False),
        sa.Index(None, "run_id"),
    )
    return md


def _scheduler_tables(conn: sa.Connection) -> None:
    md = _v7_metadata()
    md.create_all(conn, tables=[md.tables[name] for name in ("schedules", "schedule_runs", "schedule_attempts")])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables: apps, products, devices, users, tokens, bindings, latest_data", _initial_tables),
    Migration(2, "users.is_disabled", _users_is_disabled),
    Migration(3, "users: email, phone, profile; one_time_codes; throttle_hits", _accounts),
    Migration(
        4,
        "app_products (existing apps linked to every existing product); devices: type, MQTT password digest, "
        "versions; bindings: role, labels",
        _access_and_device_facts,
    ),
    Migration(5, "user_identities: third-party sign-ups (authData src + uid)", _identities),
    Migration(6, "app_tokens; captcha_images", _app_tokens_and_captchas),
    Migration(7, "scheduler: schedules, schedule_runs, schedule_attempts", _scheduler_tables),
)


# --- the migrator ------------------------------------------------------------------------------------------------


def _check_steps(steps: Sequence[Migration]) -> None:
    for index, step in enumerate(steps, start=1):
        if step.version != index:
            raise ValueError(f"migration steps must be numbered 1, 2, 3, …; step {index} says {step.version}")


async def _version(conn: AsyncConnection) -> int:
    value = (await conn.execute(sa.select(sa.func.max(schema_version.c.version)))).scalar()
    return int(value) if value is not None else 0


_MIGRATION_LOCK_KEY = 0x6769_7A64_6576  # "gizdev": the advisory lock that orders the creation of schema_version


async def _lock(conn: AsyncConnection) -> None:
    # SQLite: BEGIN IMMEDIATE (via WRITE_OPTION) already holds the database's write lock.
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("LOCK TABLE schema_version IN SHARE ROW EXCLUSIVE MODE"))


async def current_version(engine: AsyncEngine) -> int:
    """The schema version of the database (0 for an empty one)."""
    try:
        async with engine.connect() as conn:
            exists = await conn.run_sync(lambda sync: sa.inspect(sync).has_table(schema_version.name))
            return await _version(conn) if exists else 0
    except (SQLAlchemyError, OSError) as exc:
        raise StorageUnavailable(str(exc)) from exc


async def migrate(
    engine: AsyncEngine, *, steps: Sequence[Migration] = MIGRATIONS, clock: Callable[[], float] = time.time
) -> int:
    """Bring the database to the newest step; returns the version. Idempotent; refuses newer databases.

    ``engine`` should come from :func:`gizdev.cloud.storage.engine.make_engine` (on SQLite that is what makes DDL
    transactional and the migration lock work). ``steps`` is for tests.
    """
    _check_steps(steps)
    newest = len(steps)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                if conn.dialect.name == "postgresql":
                    # CREATE TABLE IF NOT EXISTS is not safe against a second worker doing the same at the same
                    # moment (it fails on pg_type's unique index): one at a time, until this transaction ends.
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
                await conn.execute(sa.schema.CreateTable(schema_version, if_not_exists=True))
                found = await _version(conn)
            if found > newest:
                raise SchemaTooNew(found, newest)
            for step in steps[found:]:
                async with conn.begin():
                    await _lock(conn)
                    found = await _version(conn)
                    if found > newest:
                        raise SchemaTooNew(found, newest)
                    if found >= step.version:  # another process got here first
                        continue
                    try:
                        await conn.run_sync(step.apply)
                    except SQLAlchemyError as exc:
                        raise MigrationError(step.version, str(getattr(exc, "orig", None) or exc)) from exc
                    await conn.execute(
                        sa.insert(schema_version).values(
                            version=step.version, description=step.description, applied_at=int(clock())
                        )
                    )
                _LOGGER.info("database schema migrated to version %d: %s", step.version, step.description)
            return newest
    except (SQLAlchemyError, OSError) as exc:
        raise StorageUnavailable(str(exc)) from exc
