"""Storage fixtures: ``db_url`` runs a test against SQLite in tmp_path and against a real, throwaway PostgreSQL.

The PostgreSQL server is started once per session from the Debian binaries (``/usr/lib/postgresql/<v>/bin``):
``initdb`` into a fresh temporary directory owned by the ``postgres`` system user (the server refuses to run as
root, so when the tests run as root every command goes through ``runuser -u postgres --``), trust authentication,
listening only on 127.0.0.1 on a free port, its Unix socket inside that directory, durability switched off for
speed. There is one test database; each test starts with it emptied (every schema dropped). The server is stopped
and the directory removed at the end of the session.

If the server cannot be started, the PostgreSQL half of the tests fails when ``CI`` is set (CI must test both
databases) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.guards import run

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_BIN_ENV = "GIZDEV_TEST_PG_BIN"  # another directory holding initdb and pg_ctl (non-Debian systems)
PG_START_TIMEOUT_S = 30


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _pg_bin_dir() -> Path | None:
    override = os.environ.get(PG_BIN_ENV)
    if override:
        wanted = Path(override)
        return wanted if (wanted / "initdb").exists() and (wanted / "pg_ctl").exists() else None

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    for candidate in sorted(glob.glob(PG_BIN_GLOB), key=version, reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=PG_START_TIMEOUT_S + 30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-800:]}")


class _Cluster:
    """One initdb'd data directory and the server running on it."""

    def __init__(self) -> None:
        bin_dir = _pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError(f"no initdb/pg_ctl under {PG_BIN_GLOB} or ${PG_BIN_ENV} (apt-get install postgresql)")
        self.initdb = str(bin_dir / "initdb")
        self.pg_ctl = str(bin_dir / "pg_ctl")
        self.prefix: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="gizdev-pg-"))
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                self.remove()
                raise RuntimeError("running as root but there is no 'postgres' system user to run the server") from None
            runuser = shutil.which("runuser")
            if runuser is None:
                self.remove()
                raise RuntimeError("running as root but runuser is missing")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.prefix = [runuser, "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.running = False

    def start(self) -> PostgresServer:
        try:
            initdb = [self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"]
            _run([*self.prefix, *initdb, "--no-sync"])
        except RuntimeError:
            self.remove()
            raise
        last_error = ""
        for _attempt in range(3):  # another process may take the free port between probe and bind
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                start = [self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w"]
                _run([*self.prefix, *start, "-t", str(PG_START_TIMEOUT_S), "start"])
            except RuntimeError as exc:
                last_error = f"{exc}; log: {self._log_tail()}"
                continue
            self.running = True
            return PostgresServer("127.0.0.1", port, "postgres")
        self.remove()
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.running:
            subprocess.run(
                [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            self.running = False
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    """The session's PostgreSQL server, or the reason it could not be started (a str)."""
    try:
        cluster = _Cluster()
        server = cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        yield str(exc)
        return
    try:
        run(_admin(server, f'CREATE DATABASE "{TEST_DATABASE}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        cluster.stop()
        yield f"cannot create the test database: {exc}"
        return
    try:
        yield server
    finally:
        cluster.stop()


async def _admin(server: PostgresServer, statement: str, *, database: str = "postgres") -> str | None:
    conn = await asyncpg.connect(host=server.host, port=server.port, user=server.user, database=database)
    try:
        value = await conn.fetchval(statement)
        return None if value is None else str(value)
    finally:
        await conn.close()


TEST_DATABASE = "gizdev_test"
# Emptying every schema is ~1 ms; CREATE DATABASE per test costs ~0.3 s (it checkpoints).
_RESET_DATABASE = """
DO $$
DECLARE name text;
BEGIN
    FOR name IN SELECT nspname FROM pg_namespace
                WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', name);
    END LOOP;
    CREATE SCHEMA public;
END $$;
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file in tmp_path, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    server = request.getfixturevalue("postgres_server")
    if isinstance(server, str):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required when CI is set, but: {server}")
        pytest.skip(f"PostgreSQL unavailable: {server}")
    assert isinstance(server, PostgresServer)
    run(_admin(server, _RESET_DATABASE, database=TEST_DATABASE))
    return server.url(TEST_DATABASE)


# The whole-cloud fixtures (and the broker fixture they need) for every test module here.
from tests.cloud.broker_fixtures import mosquitto_binary_fixture  # noqa: E402, F401
from tests.cloud.server_fixtures import cloud_fixture  # noqa: E402, F401
