"""The cloud's tables as they stand at the newest schema version (SQLAlchemy Core, no ORM).

Every timestamp is an integer count of Unix seconds (UTC), stored as BIGINT. Booleans are SQLAlchemy ``Boolean``
(0/1 in SQLite, ``boolean`` in PostgreSQL). JSON documents are UTF-8 text, so that both databases store them the
same way and hand them back byte for byte.

These definitions are what the queries use. They are *not* how a database gets its tables: that is the job of the
numbered steps in :mod:`gizdev.cloud.storage.migrations`, which are frozen once released. Changing a table here
therefore needs a new migration step; ``test_migrated_schema_matches_tables`` fails until one exists.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "NAMING_CONVENTION",
    "apps",
    "bindings",
    "devices",
    "latest_data",
    "metadata",
    "products",
    "schedule_attempts",
    "schedule_runs",
    "schedules",
    "schema_version",
    "tokens",
    "users",
]

#: Constraint and index names are derived, not left to each database, so that later migrations can name them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("appid", sa.String(64), primary_key=True),
    # Kept as given: X-Gizwits-Application-Auth is md5(appid + appsecret) (cloud protocol §3.5), so the server
    # needs the secret itself, not a one-way hash of it.
    sa.Column("appsecret", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("product_key", sa.String(32), primary_key=True),
    sa.Column("product_secret", sa.String(32), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("schema_json", sa.Text, nullable=True),  # the console export format (schema_to_json); NULL = none
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("did", sa.String(22), primary_key=True),
    sa.Column("mac", sa.String(12), nullable=False),  # 12 upper-case hex digits
    sa.Column("product_key", sa.String(32), sa.ForeignKey("products.product_key"), nullable=False),
    sa.Column("passcode", sa.String(16), nullable=False),
    sa.Column("is_disabled", sa.Boolean, nullable=False),
    sa.Column("encrypted", sa.Boolean, nullable=False),  # registered through the AES device API (§1.3)
    sa.Column("registered_at", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=True),
    sa.Column("is_online", sa.Boolean, nullable=False),
    sa.Column("online_changed_at", sa.BigInteger, nullable=True),
    sa.Column("broker_client_id", sa.String(64), nullable=True),
    sa.Column("broker_peer", sa.String(128), nullable=True),
    sa.Index(None, "mac", "product_key"),
    sa.Index(None, "product_key"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("uid", sa.String(32), primary_key=True),
    sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid"), nullable=False),
    sa.Column("username", sa.String(128), nullable=True),
    sa.Column("phone_id", sa.String(128), nullable=True),
    sa.Column("password_hash", sa.String(512), nullable=True),
    sa.Column("is_anonymous", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # An admin's `gizdev cloud user disable` (schema version 2): the user's tokens stop working, login is refused.
    sa.Column("is_disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # NULLs never clash in either database, so anonymous users (no username) and named ones (no phone_id) coexist.
    sa.UniqueConstraint("appid", "username"),
    sa.UniqueConstraint("appid", "phone_id"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # hex SHA-256 of the token; the token is never stored
    sa.Column("uid", sa.String(32), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
    sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid"), nullable=False),
    sa.Column("expire_at", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index(None, "uid"),
    sa.Index(None, "expire_at"),
)

bindings = sa.Table(
    "bindings",
    metadata,
    # A surrogate key only to order bindings made within the same second (newest first, §3.9).
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

latest_data = sa.Table(
    "latest_data",
    metadata,
    sa.Column("did", sa.String(22), sa.ForeignKey("devices.did"), primary_key=True),
    sa.Column("attrs_json", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# --- the scheduler (schema version 7) ----------------------------------------------------------------------------

schedules = sa.Table(
    "schedules",
    metadata,
    # A surrogate key only to order schedules made within the same second (newest first); ``id`` is the public one.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("uid", sa.String(32), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
    # The per-device form's device (/app/devices/{did}/scheduler); NULL for the multi-device form (/app/scheduler).
    sa.Column("did", sa.String(22), nullable=True),
    sa.Column("request_json", sa.Text, nullable=False),  # the request as the list endpoints give it back
    sa.Column("rule_json", sa.Text, nullable=False),  # Recurrence.to_json
    sa.Column("tasks_json", sa.Text, nullable=False),  # [{"did", "p0": hex}]: encoded (and checked) at creation
    sa.Column("retry_count", sa.Integer, nullable=False),
    sa.Column("retry_task", sa.String(8), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("next_due_at", sa.BigInteger, nullable=True),  # the next run's due time; NULL: none left
    sa.Index(None, "uid"),
    sa.Index(None, "next_due_at"),
)

schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("schedule_id", sa.String(32), sa.ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False),
    sa.Column("due_at", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, running, succeed, failed, missed
    sa.Column("attempts", sa.Integer, nullable=False),  # attempts concluded
    sa.Column("next_attempt_at", sa.BigInteger, nullable=True),
    sa.Column("lease_until", sa.BigInteger, nullable=True),  # while running: the claim's end
    sa.Column("worker", sa.String(64), nullable=True),  # while running: who holds the claim
    sa.Column("targets_json", sa.Text, nullable=False),  # the DIDs the next attempt sends to
    sa.Column("detail_json", sa.Text, nullable=False),  # {did: delivered}, as of the last attempt
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    # One run per due time whatever the number of workers: the claim's second line of defence.
    sa.UniqueConstraint("schedule_id", "due_at"),
    sa.Index(None, "status", "next_attempt_at"),
)

schedule_attempts = sa.Table(
    "schedule_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("schedule_runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),  # 1 = the first
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered, failed, interrupted (the worker was lost)
    sa.Column("detail_json", sa.Text, nullable=False),  # {did: delivered} of the DIDs this attempt sent to
    sa.Index(None, "run_id"),
)
