"""The local cloud's storage: SQLite (default) or PostgreSQL through one SQLAlchemy Core code path, async.

``storage = await Storage.open("cloud.db")`` (or ``"postgresql://user@host/db"``) connects, migrates the schema to
the newest version (:mod:`.migrations`) and returns a :class:`Storage` whose methods are one transaction each and
raise only :class:`~gizdev.errors.StorageError` subclasses (:mod:`.errors`). ``await storage.close()`` at the end.
"""

from __future__ import annotations

from gizdev.cloud.storage.engine import DATABASE_FILE, database_url, make_engine
from gizdev.cloud.storage.errors import (
    AlreadyExists,
    DatabaseMissing,
    DeviceDisabled,
    EncryptionRequired,
    InvalidInput,
    MigrationError,
    NotFound,
    PasscodeMismatch,
    SchemaTooNew,
    StorageError,
    StorageUnavailable,
)
from gizdev.cloud.storage.migrations import MIGRATIONS, Migration, current_version, migrate
from gizdev.cloud.storage.models import (
    App,
    Binding,
    ClaimedRun,
    Device,
    LatestData,
    PresenceUpdate,
    Product,
    Registration,
    Schedule,
    ScheduleAttempt,
    ScheduledCommand,
    ScheduleRun,
    ScheduleSpec,
    Token,
    User,
)
from gizdev.cloud.storage.store import DID_LEN, Storage

__all__ = [
    "DATABASE_FILE",
    "DID_LEN",
    "MIGRATIONS",
    "AlreadyExists",
    "App",
    "Binding",
    "ClaimedRun",
    "DatabaseMissing",
    "Device",
    "DeviceDisabled",
    "EncryptionRequired",
    "InvalidInput",
    "LatestData",
    "Migration",
    "MigrationError",
    "NotFound",
    "PasscodeMismatch",
    "PresenceUpdate",
    "Product",
    "Registration",
    "Schedule",
    "ScheduleAttempt",
    "ScheduleRun",
    "ScheduleSpec",
    "ScheduledCommand",
    "SchemaTooNew",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "Token",
    "User",
    "current_version",
    "database_url",
    "make_engine",
    "migrate",
]
