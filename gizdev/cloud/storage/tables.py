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
    "app_products",
    "app_tokens",
    "apps",
    "bindings",
    "captcha_images",
    "devices",
    "latest_data",
    "metadata",
    "one_time_codes",
    "products",
    "schedule_attempts",
    "schedule_runs",
    "schedules",
    "schema_version",
    "throttle_hits",
    "tokens",
    "user_identities",
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
    # Schema version 4. "normal" or "center_control", as the encrypted registration says (plain: "normal").
    sa.Column("device_type", sa.String(16), nullable=False, server_default="normal"),
    # The MQTT password of a device registered through the encrypted API, as the broker's password file holds it
    # (mosquitto's $7$ PBKDF2 digest; the password itself is never stored). NULL: the password is the passcode.
    sa.Column("mqtt_password_hash", sa.String(256), nullable=True),
    # What the device reports in its OTA checks (type 1: the module, type 2: the MCU); "" until it has.
    sa.Column("wifi_hard_version", sa.String(16), nullable=False, server_default=""),
    sa.Column("wifi_soft_version", sa.String(16), nullable=False, server_default=""),
    sa.Column("mcu_hard_version", sa.String(16), nullable=False, server_default=""),
    sa.Column("mcu_soft_version", sa.String(16), nullable=False, server_default=""),
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
    # Schema version 3: the account's contact points and profile (§3.3). ``email`` is kept folded (trimmed, NFKC,
    # case-folded) and ``phone`` as "+<country><number>" or digits, so that equality is the comparison the API
    # makes; both are unique within an app, NULL when not given.
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("phone", sa.String(32), nullable=True),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("gender", sa.String(1), nullable=False, server_default="N"),
    sa.Column("birthday", sa.String(10), nullable=False, server_default=""),
    sa.Column("address", sa.String(256), nullable=False, server_default=""),
    sa.Column("lang", sa.String(16), nullable=False, server_default="en"),
    sa.Column("remark", sa.String(1024), nullable=False, server_default=""),
    sa.Index(None, "appid", "email", unique=True),
    sa.Index(None, "appid", "phone", unique=True),
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

user_identities = sa.Table(
    "user_identities",
    metadata,
    # Schema version 6: a third-party account (§3.2 authData) is the provider (``src``: baidu, sina, qq) and the
    # provider's id of the person (``external_uid``, the openid for qq); the same pair again is the same user.
    sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid"), primary_key=True),
    sa.Column("src", sa.String(16), primary_key=True),
    sa.Column("external_uid", sa.String(128), primary_key=True),
    sa.Column("uid", sa.String(32), sa.ForeignKey("users.uid", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index(None, "uid"),
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
    # Schema version 4: "special" for the device's first binder, "normal" after (Open API §3.9 Roles), and the
    # app's labels as a JSON array of strings.
    sa.Column("role", sa.String(16), nullable=False, server_default="normal"),
    sa.Column("dev_label_json", sa.Text, nullable=False, server_default="[]"),
    sa.UniqueConstraint("uid", "did"),
    sa.Index(None, "did"),
)

one_time_codes = sa.Table(
    "one_time_codes",
    metadata,
    # Schema version 3: SMS codes, captcha answers, password-reset links. Only a digest of the secret is kept; a
    # code is good until ``expires_at``, once (``used_at``), and for a few wrong guesses (``failures``).
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(254), nullable=False),  # what the code is for: a phone, a captcha id, a uid
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.BigInteger, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Index(None, "purpose", "subject"),
    sa.Index(None, "expires_at"),
)

throttle_hits = sa.Table(
    "throttle_hits",
    metadata,
    # Schema version 3: one row per counted event (a failed login, a code sent) under a key such as
    # "login-ip:127.0.0.1"; kept in the database so that every cloud worker sees the same counts.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Index(None, "key", "at"),
)

app_tokens = sa.Table(
    "app_tokens",
    metadata,
    # Schema version 5: the tokens of POST /app/request_token (§3.5), which the code endpoints require in
    # X-Gizwits-Application-Token. As with user tokens only the digest is kept.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid", ondelete="CASCADE"), nullable=False),
    sa.Column("expire_at", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index(None, "expire_at"),
)

captcha_images = sa.Table(
    "captcha_images",
    metadata,
    # Schema version 5: the picture of a captcha, drawn once when GET /app/verify/codes hands out its id and
    # served from the database, so that any worker can serve it; its answer is a one-time code (purpose captcha).
    sa.Column("captcha_id", sa.String(64), primary_key=True),
    sa.Column("png", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index(None, "expires_at"),
)

latest_data = sa.Table(
    "latest_data",
    metadata,
    sa.Column("did", sa.String(22), sa.ForeignKey("devices.did"), primary_key=True),
    sa.Column("attrs_json", sa.Text, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# Schema version 4: the products an application serves. A product's devices are reachable through its apps only.
app_products = sa.Table(
    "app_products",
    metadata,
    sa.Column("appid", sa.String(64), sa.ForeignKey("apps.appid", ondelete="CASCADE"), primary_key=True),
    sa.Column("product_key", sa.String(32), sa.ForeignKey("products.product_key"), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index(None, "product_key"),
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
