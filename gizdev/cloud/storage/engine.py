"""Turning a ``--database`` value into a configured SQLAlchemy async engine (SQLite or PostgreSQL).

SQLite (``sqlite+aiosqlite``) is set up for a server with many concurrent requests and, now and then, a second
process (the CLI) on the same file:

* ``journal_mode=WAL``: readers never block the writer and vice versa.
* ``foreign_keys=ON``: SQLite leaves them off per connection unless asked.
* ``busy_timeout``: a writer waits for another process's write lock instead of failing at once.
* ``synchronous=NORMAL``: the usual pairing with WAL (durable across application crashes; a power cut may lose
  the last transactions, never corrupt the file).
* Transactions are begun by us, not by the ``sqlite3`` module, whose legacy mode neither begins a transaction for
  SELECT nor for DDL. A write transaction starts with ``BEGIN IMMEDIATE`` so that it takes the write lock up front:
  a deferred transaction that reads first and writes later fails with SQLITE_BUSY (no waiting) if another writer
  committed in between. Read-only transactions use a plain (deferred) ``BEGIN``.

PostgreSQL (``postgresql+asyncpg``) needs nothing special; the same Core statements run on both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gizdev.cloud.storage.errors import StorageError, StorageUnavailable

__all__ = [
    "BUSY_TIMEOUT_S",
    "DATABASE_FILE",
    "WRITE_OPTION",
    "database_url",
    "make_engine",
    "make_inline_sqlite_engine",
]

DATABASE_FILE = "cloud.db"  # the SQLite database's name in a cloud data dir (the server's and the admin commands')

BUSY_TIMEOUT_S = 10.0  # how long a SQLite writer waits for another process's lock before giving up
CONNECT_TIMEOUT_S = 10.0  # PostgreSQL connection attempt
#: Execution option that marks a connection's next transaction as a writing one (``BEGIN IMMEDIATE`` on SQLite).
WRITE_OPTION = "gizdev_write"


def database_url(database: str | Path) -> URL:
    """Normalise ``--database``: a path or ``sqlite:///…`` → aiosqlite; ``postgresql://…`` → asyncpg."""
    if isinstance(database, Path) or "://" not in database:
        path = str(database)
        if not path or path == ":memory:":
            raise StorageError("an in-memory SQLite database cannot be shared by connections; give a file path")
        return URL.create("sqlite+aiosqlite", database=path)
    try:
        url = make_url(database)
    except ArgumentError as exc:
        raise StorageError(f"not a database URL: {exc}") from exc
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise StorageError(f"SQLite is used through aiosqlite, not {driver!r}")
        if not url.database or url.database == ":memory:" or "mode=memory" in url.database:
            raise StorageError("an in-memory SQLite database cannot be shared by connections; give a file path")
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg"):
            raise StorageError(f"PostgreSQL is used through asyncpg, not {driver!r}")
        return url.set(drivername="postgresql+asyncpg")
    raise StorageError(f"unsupported database {backend!r}: use a SQLite file path or a postgresql:// URL")


def make_engine(database: str | Path) -> AsyncEngine:
    """A configured async engine for ``database`` (see :func:`database_url`); nothing is connected yet."""
    url = database_url(database)
    if url.get_backend_name() == "sqlite":
        _check_sqlite_path(Path(url.database or ""))
        engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url, connect_args={"timeout": CONNECT_TIMEOUT_S, "server_settings": {"application_name": "gizdev-cloud"}}
    )


def make_inline_sqlite_engine(engine: AsyncEngine) -> sa.Engine | None:
    """For a SQLite ``engine``, a synchronous engine on the same file (same pragmas and BEGIN rules), else None.

    Through aiosqlite every DB-API call is a hand-off to a worker thread: a two-statement transaction makes about
    nine, which cost 4-5 ms of CPU on the 2-vCPU development VM. SQLite's own work for the cloud's statements is tens
    of microseconds on a local file, so the storage runs SQLite transactions directly on the event loop's thread
    instead (see ``Storage._transaction``). The price: a write that has to wait for another *process's* write lock
    (the admin CLI) blocks the loop for that time (WAL readers never wait).
    """
    if engine.dialect.name != "sqlite":
        return None
    url = engine.url.set(drivername="sqlite+pysqlite")
    inline = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
    event.listen(inline, "connect", _sqlite_connect)
    event.listen(inline, "begin", _sqlite_begin)
    return inline


def _check_sqlite_path(path: Path) -> None:
    # Checked here rather than left to the first connection: the caller gets a clear message, and aiosqlite leaves
    # its worker thread behind when sqlite3.connect fails.
    directory = path.parent
    if not directory.is_dir():
        raise StorageUnavailable(f"cannot create {path}: directory {directory} does not exist")
    if path.exists() and not path.is_file():
        raise StorageUnavailable(f"{path} exists and is not a file")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Stop the sqlite3 module from issuing BEGIN itself (see the module docstring); _sqlite_begin does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
