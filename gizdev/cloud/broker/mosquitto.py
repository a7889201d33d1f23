"""A Mosquitto child process owned by the cloud: generated files, readiness, reloads, restarts, clean stop.

Life cycle
    ``start()`` writes ``mosquitto.conf``, ``passwd`` and ``acl`` into the data dir (see ``files``), runs
    ``mosquitto -c mosquitto.conf`` in its own session (a Ctrl-C meant for the server does not reach it; we stop
    it ourselves) and waits until mosquitto logs ``mosquitto version … running`` — printed after its listener is
    bound and its signal handlers are installed — and then answers an MQTT CONNECT from its main loop (2.0 loses
    a SIGTERM that arrives between that line and its loop). Checking the log line and not only the port means a
    foreign process already listening there cannot pass for our broker; if mosquitto exits first (port in use,
    unreadable file) the :class:`BrokerError` carries its stderr. A supervisor task
    then waits for the process; if it dies it is restarted after 0.5 s, doubling to 30 s (reset once a process
    ran for a minute). ``stop()`` sends SIGTERM, then SIGKILL after ``stop_timeout_s``; every path out of
    ``start``/``stop`` (errors, cancellation) kills a process it started. A pid file lets the next ``start`` on
    the same data dir stop a mosquitto orphaned by a killed server (checked against ``/proc/<pid>/cmdline``).

Devices
    ``add_device``/``remove_device``/``set_devices`` rewrite the password and ACL files atomically and send
    SIGHUP. Mosquitto reloads between two turns of its event loop, keeps connected clients, and disconnects those
    whose credentials no longer match (a removed device, a changed passcode). The call returns once the reload
    has happened: it waits for mosquitto's ``Reloading config.`` line, then for one MQTT round trip (a CONNECT
    without credentials, refused), which mosquitto can only serve after the reload finished — so a device may
    connect as soon as ``add_device`` returns.

Privileges
    Run as root, mosquitto 2.x drops to the ``user`` of its config (default ``mosquitto``) *before* reading the
    password and ACL files, and reads them again as that user on every reload. We therefore give the files to
    the run-as user (mode 0600) and the data dir to its group (mode 0710). When every ancestor of the data dir
    is searchable by that user this is the default (``run_as=None``); the cloud opens its own data dir (the
    broker dir's parent, mode 0700) to that group for search only with :meth:`ManagedMosquitto.grant_search`.
    When an ancestor is still not searchable (e.g. pytest's 0700 ``/tmp/pytest-of-root``) the broker runs as
    root with ``user root`` and a warning. ``run_as="…"`` makes
    either choice explicit (and an impossible one an error). Not run as root, mosquitto runs as we do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from gizdev.backoff import Backoff
from gizdev.cloud.broker.files import (
    SERVICE_USERNAME,
    FileOwner,
    check_name,
    group_ids,
    hash_password,
    load_or_create_service_password,
    render_acl,
    render_config,
    render_password_file,
    unreachable_ancestor,
    write_file_atomic,
)
from gizdev.cloud.broker.settings import BrokerSettings
from gizdev.errors import BrokerError
from gizdev.mqtt.packets import connect_packet

__all__ = [
    "BACKOFF_INITIAL_S",
    "BACKOFF_MAX_S",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "RELOAD_TIMEOUT_S",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "DeviceAccount",
    "ManagedMosquitto",
    "find_mosquitto",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # loopback unless told otherwise (issue 4); "0.0.0.0" lets LAN devices in
DEFAULT_PORT = 1883
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
RELOAD_TIMEOUT_S = 5.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_RUN_S = 60.0  # a process that ran this long resets the restart backoff
_TAIL_LINES = 40
_READY = re.compile(r"mosquitto version \S+ running")  # logged after listeners and signal handlers are set up
_RELOADING = "Reloading config."  # logged by the main loop before it re-reads config, passwords and ACLs
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

CONFIG_FILE = "mosquitto.conf"
PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
CREDENTIALS_FILE = "service-credentials.json"
PID_FILE = "mosquitto.pid"


@dataclass(frozen=True, slots=True)
class DeviceAccount:
    """One device's MQTT login: username = client id = ``did``, password = ``password``.

    ``password`` is the passcode for a device of the plain API (the vendor's rule), or, with ``hashed``, the
    password file's digest of the password the cloud gave a device at its encrypted registration (the cloud keeps
    only that digest).
    """

    did: str
    password: str = field(repr=False)
    product_key: str
    hashed: bool = False


def find_mosquitto() -> str:
    """Path of the mosquitto binary: on PATH, else in the sbin directories (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path=os.pathsep.join(_SBIN_DIRS))
    if found is None:
        raise BrokerError(
            "mosquitto not found on PATH or in /usr/sbin: install it (apt-get install mosquitto) "
            "or give an external broker with --broker mqtt://user:password@host:port"
        )
    return found


class _Child:
    """One mosquitto process: its stderr drained into the log and a bounded tail, with line waiters."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        host: str,
        port: int,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.proc = proc
        self.on_line = on_line
        self.host = host
        self.port = port
        self.pid = proc.pid
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self.lines_seen = 0
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._waiters: list[tuple[Callable[[str], bool], asyncio.Future[bool]]] = []
        self._reader = loop.create_task(self._read(), name=f"mosquitto-{self.pid}-stderr")

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(list(self._tail)[-lines:])

    def lines_since(self, mark: int) -> list[str]:
        count = min(self.lines_seen - mark, len(self._tail))
        return list(self._tail)[len(self._tail) - count :] if count > 0 else []

    def expect(self, predicate: Callable[[str], bool], *, since: int | None = None) -> asyncio.Future[bool]:
        """A future set to True at the first line matching ``predicate`` (also among lines read since ``since``),
        False if stderr ends first. Pass it to :meth:`forget` when done."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if since is not None and any(predicate(line) for line in self.lines_since(since)):
            future.set_result(True)
        elif self._reader.done():
            future.set_result(False)
        else:
            self._waiters.append((predicate, future))
        return future

    def forget(self, future: asyncio.Future[bool]) -> None:
        self._waiters = [(p, f) for p, f in self._waiters if f is not future]
        future.cancel()

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)

    async def wait_exit(self) -> int:
        """Wait for the process to exit and its stderr to be read to the end; the exit code."""
        code = await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(self._reader)
        return code

    async def stop(self, timeout_s: float) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code. Cancelled, it kills and re-raises."""
        try:
            self.signal(signal.SIGTERM)
            await _poke(self.host, self.port)
            try:
                async with asyncio.timeout(timeout_s):
                    return await self.wait_exit()
            except TimeoutError:
                pass
            _LOGGER.warning("mosquitto (pid %d) still running %.1f s after SIGTERM; killing it", self.pid, timeout_s)
            self.signal(signal.SIGKILL)
            return await self.wait_exit()
        except BaseException:
            self.signal(signal.SIGKILL)
            raise

    async def abort(self) -> None:
        """SIGKILL and wait (briefly) for the exit; used on failed or cancelled starts."""
        self.signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.wait_exit()

    async def _read(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        try:
            while True:
                try:
                    raw = await stream.readline()
                except ValueError:  # a line longer than the stream limit: skip it
                    continue
                if not raw:
                    return
                line = raw.decode(errors="replace").rstrip()
                self._tail.append(line)
                self.lines_seen += 1
                _LOGGER.debug("mosquitto[%d]: %s", self.pid, line)
                if self.on_line is not None:
                    try:
                        self.on_line(line)
                    except Exception:  # a listener's bug must not stop us draining stderr
                        _LOGGER.exception("mosquitto log listener failed on %r", line)
                for predicate, future in self._waiters:
                    if not future.done() and predicate(line):
                        future.set_result(True)
        finally:
            for _, future in self._waiters:
                if not future.done():
                    future.set_result(False)
            self._waiters.clear()


def _connect_host(host: str) -> str:
    """The address to connect to for a listener bound to ``host`` (wildcards → loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


#: MQTT 3.1.1 CONNECT without credentials (refused by our broker, answered all the same), built once.
_PROBE_CONNECT = connect_packet("gizdev-probe", keepalive_s=10)


async def _probe(host: str, port: int) -> int:
    """One CONNECT without credentials → CONNACK (refused) or close; the local port used. OSError if refused.

    Mosquitto answers from its main loop only, so an answer proves the loop runs: it has finished starting (and
    will act on SIGTERM: a signal that lands between its "running" line and its loop is lost in 2.0) and has
    finished any reload it was asked for before.
    """
    reader, writer = await asyncio.open_connection(_connect_host(host), port)
    try:
        local_port = int(writer.get_extra_info("sockname")[1])
        writer.write(_PROBE_CONNECT)
        await writer.drain()
        await reader.read(4)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return local_port


async def _poke(host: str, port: int) -> None:
    """Open and close a connection: wakes mosquitto, which blocks signals while it waits for socket events (up to
    100 ms), so that it acts on a signal just sent at once."""
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection(_connect_host(host), port)
        writer.close()
        await writer.wait_closed()


def _whoami() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc (``Z`` = zombie), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


class ManagedMosquitto:
    """A supervised Mosquitto listening on ``host:port`` with per-device logins and topic ACLs (module docstring).

    ``data_dir`` belongs to the broker (the cloud passes e.g. ``<data>/broker``): its files are rewritten on every
    start from the accounts given to this object, which the caller (the cloud's database) owns — call
    :meth:`set_devices` before or after :meth:`start`. The service user's random password is kept in
    ``data_dir/service-credentials.json`` (mode 0600, readable only by us) and stays the same across restarts.

    ``pin_client_ids`` (default) makes mosquitto replace every client id by the username
    (``use_username_as_clientid``), so that a device connecting with another DID as client id cannot take that
    device's session over. The price: the service user has one connection at a time (a second one replaces the
    first), so the cloud keeps one service connection (its device bus).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        binary: str | os.PathLike[str] | None = None,
        run_as: str | None = None,
        pin_client_ids: bool = True,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        on_log_line: Callable[[str], None] | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is outside 1-65535")
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port
        self.run_as = run_as
        self.pin_client_ids = pin_client_ids
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.restarts = 0
        self.on_log_line = on_log_line  # sees every stderr line (connection messages drive device presence)
        self.user: str | None = None  # what mosquitto runs as, decided at start (None: as we do)
        self._binary = None if binary is None else os.fspath(binary)
        self._hashes: dict[str, str] = {}
        self._product_keys: dict[str, str] = {}
        self._service_password: str | None = None
        self._service_hash = ""
        self._owner: FileOwner | None = None
        self._prepared = False
        self._version = 0  # bumped by every account change
        self._applied_version = 0  # the version the running mosquitto has loaded
        self._child: _Child | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- paths and properties ---------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @property
    def password_path(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def acl_path(self) -> Path:
        return self.data_dir / ACL_FILE

    @property
    def credentials_path(self) -> Path:
        return self.data_dir / CREDENTIALS_FILE

    @property
    def pid_path(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def settings(self) -> BrokerSettings:
        """How the cloud logs in as the service user (creates the credentials file on first use)."""
        return BrokerSettings(
            host=_connect_host(self.host), port=self.port, username=SERVICE_USERNAME, password=self._credentials()
        )

    @property
    def pid(self) -> int | None:
        """The running mosquitto's pid, or None."""
        child = self._child
        return child.pid if child is not None and child.alive else None

    @property
    def running(self) -> bool:
        return self._supervisor is not None

    @property
    def devices(self) -> frozenset[str]:
        return frozenset(self._hashes)

    # -- life cycle -------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Write the files, start mosquitto and wait until it serves ``host:port``; BrokerError if it cannot."""
        if self._supervisor is not None:
            raise BrokerError(f"mosquitto for {self.data_dir} is already running")
        if self._binary is None:
            self._binary = find_mosquitto()
        try:
            self._prepare()
        except OSError as exc:
            raise BrokerError(f"cannot prepare {self.data_dir}: {exc}") from exc
        await self._stop_leftover()
        async with self._lock:
            version = self._write_files(config=True)
            child = await self._spawn()
            self._applied_version = version
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"mosquitto-supervisor-{self.port}"
        )
        _LOGGER.info(
            "mosquitto started (pid %d) on %s:%d as user %s, %d device(s)",
            child.pid,
            self.host,
            self.port,
            self.user or _whoami(),
            len(self._hashes),
        )

    async def stop(self) -> None:
        """Stop supervising and terminate mosquitto (SIGTERM, SIGKILL after ``stop_timeout_s``); idempotent."""
        supervisor, self._supervisor = self._supervisor, None
        try:
            if supervisor is not None:
                supervisor.cancel()
                await asyncio.wait({supervisor})
            child = self._child
            if child is not None:
                code = await child.stop(self.stop_timeout_s)
                _LOGGER.info("mosquitto (pid %d) stopped, exit code %d", child.pid, code)
        finally:
            child, self._child = self._child, None
            if child is not None and child.alive:
                child.signal(signal.SIGKILL)  # cancelled part-way: nothing may outlive us
            with contextlib.suppress(OSError):
                self.pid_path.unlink(missing_ok=True)

    # -- devices ----------------------------------------------------------------------------------------------

    async def add_device(self, did: str, password: str, product_key: str, *, hashed: bool = False) -> None:
        """Allow ``did`` to log in with ``password`` (replacing an earlier one; with ``hashed`` it is the password
        file's ``$7$`` digest of it, as :func:`files.hash_password` makes it); effective on return."""
        hashed_password = self._hash_account(DeviceAccount(did, password, product_key, hashed))
        self._hashes[did] = hashed_password
        self._product_keys[did] = product_key
        _LOGGER.debug("broker: adding device %s (product %s)", did, product_key)
        await self._apply()

    async def remove_device(self, did: str) -> bool:
        """Refuse ``did`` from now on (mosquitto also disconnects it); False if it was not known."""
        if self._hashes.pop(did, None) is None:
            return False
        self._product_keys.pop(did, None)
        _LOGGER.debug("broker: removing device %s", did)
        await self._apply()
        return True

    async def set_devices(self, accounts: Iterable[DeviceAccount]) -> None:
        """Replace every device account at once (one file write and one reload)."""
        accounts = list(accounts)
        hashes = await asyncio.to_thread(lambda: {a.did: self._hash_account(a) for a in accounts})
        self._hashes = hashes
        self._product_keys = {a.did: a.product_key for a in accounts}
        _LOGGER.debug("broker: setting %d device account(s)", len(hashes))
        await self._apply()

    def _hash_account(self, account: DeviceAccount) -> str:
        check_name("did", account.did)
        check_name("product_key", account.product_key)
        if account.did == SERVICE_USERNAME:
            raise ValueError(f"did {account.did!r} is the service user's name")
        if account.hashed:
            if not account.password.startswith("$7$") or any(ch in account.password for ch in ":\r\n "):
                raise ValueError(f"the password digest of {account.did} is not a mosquitto $7$ hash")
            return account.password
        return hash_password(account.password)

    async def _apply(self) -> None:
        """Make the accounts in memory effective: write the files, reload a running mosquitto.

        Changes made while another call is writing and reloading are all covered by the next write, so a burst of
        ``add_device`` calls costs two reloads, not one per call.
        """
        self._version += 1
        wanted = self._version
        async with self._lock:
            if self._applied_version >= wanted or not self._prepared:
                return  # covered by a reload since our change, or start() will write the files
            try:
                version = self._write_files()
            except OSError as exc:
                raise BrokerError(f"cannot write the broker's password or ACL file: {exc}") from exc
            child = self._child
            if child is not None and child.alive:
                await self._reload(child)
            self._applied_version = version

    async def _reload(self, child: _Child) -> None:
        mark = child.lines_seen
        reloading = child.expect(lambda line: line == _RELOADING)
        try:
            child.signal(signal.SIGHUP)
            async with asyncio.timeout(RELOAD_TIMEOUT_S):
                await _poke(self.host, self.port)
                if not await reloading:
                    return  # it died; the supervisor restarts it with the new files
                await self._round_trip(child)
        except TimeoutError as exc:
            raise BrokerError(
                f"mosquitto (pid {child.pid}) did not reload within {RELOAD_TIMEOUT_S} s", stderr=child.tail()
            ) from exc
        finally:
            child.forget(reloading)
        problems = [line for line in child.lines_since(mark) if line.startswith("Error")]
        if problems:
            raise BrokerError("mosquitto could not reload its password or ACL file", stderr="\n".join(problems))

    async def _round_trip(self, child: _Child) -> None:
        """A probe after the ``Reloading config.`` line: mosquitto serves it only after finishing the reload."""
        mark = child.lines_seen
        local_port = await _probe(self.host, self.port)
        # Let the stderr reader catch up with the log lines written before the reply (best effort).
        logged = child.expect(lambda line: f":{local_port} " in line or f":{local_port}." in line, since=mark)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await logged
        finally:
            child.forget(logged)

    # -- files ------------------------------------------------------------------------------------------------

    def _credentials(self) -> str:
        if self._service_password is None:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._service_password = load_or_create_service_password(self.credentials_path)
            self._service_hash = hash_password(self._service_password)
        return self._service_password

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.user, self._owner = self._resolve_user()
        if self._owner is not None and self._owner.gid is not None:
            os.chown(self.data_dir, -1, self._owner.gid)
            os.chmod(self.data_dir, 0o710)
        else:
            os.chmod(self.data_dir, 0o700)
        self._credentials()
        self._prepared = True

    def _account(self) -> pwd.struct_passwd | None:
        """The account a root mosquitto drops to (None: not run as root, or run as root by choice or necessity)."""
        if os.geteuid() != 0:
            return None
        name = self.run_as or "mosquitto"
        if name == "root":
            return None
        try:
            return pwd.getpwnam(name)
        except KeyError:
            if self.run_as is not None:
                raise BrokerError(f"cannot run mosquitto as {name!r}: no such user") from None
            return None

    def grant_search(self, directory: Path) -> None:
        """Let the account mosquitto drops to search ``directory``, an ancestor of ``data_dir`` that we own.

        Done through the group, and only on a directory no group has access to yet: it becomes ``<us>:<its
        group>`` with mode ``0710`` (from ``0700``), so that mosquitto can pass through it to its own directory and
        nobody else gains anything; what is inside stays as private as its own modes say. A directory that a
        group can use already is left alone (it is not ours to take from that group); if that still blocks the
        broker, :meth:`start` says so.
        """
        account = self._account()
        if account is None or Path(directory).absolute() not in self.data_dir.parents:
            return
        st = os.stat(directory)
        if st.st_uid != os.geteuid() or st.st_mode & 0o070:
            return
        os.chown(directory, -1, account.pw_gid)
        os.chmod(directory, (st.st_mode & 0o7777) | 0o010)

    def _resolve_user(self) -> tuple[str | None, FileOwner | None]:
        """The config's ``user`` line and who must own the files (module docstring, "Privileges")."""
        if os.geteuid() != 0:
            return None, None
        account = self._account()
        if account is None:
            if self.run_as is None:
                _LOGGER.warning("no 'mosquitto' user on this system: running mosquitto as root")
            return "root", None
        name = account.pw_name
        blocked = unreachable_ancestor(
            self.data_dir, uid=account.pw_uid, gids=group_ids(name, account.pw_gid) | {account.pw_gid}
        )
        if blocked is not None:
            if self.run_as is not None:
                raise BrokerError(f"user {name!r} cannot reach {self.data_dir}: {blocked} is not searchable by it")
            _LOGGER.warning(
                "running mosquitto as root: user %s cannot reach %s (%s is not searchable by it)",
                name,
                self.data_dir,
                blocked,
            )
            return "root", None
        return name, FileOwner(account.pw_uid, account.pw_gid)

    def _write_files(self, *, config: bool = False) -> int:
        """Write the files from the accounts in memory; the account version they reflect."""
        version = self._version
        hashes = {**self._hashes, SERVICE_USERNAME: self._service_hash}
        write_file_atomic(self.password_path, render_password_file(hashes), owner=self._owner)
        write_file_atomic(self.acl_path, render_acl(self._product_keys), owner=self._owner)
        if config:
            text = render_config(
                host=self.host,
                port=self.port,
                password_file=self.password_path,
                acl_file=self.acl_path,
                user=self.user,
                pin_client_ids=self.pin_client_ids,
            )
            write_file_atomic(self.config_path, text, owner=self._owner)
        return version

    # -- processes --------------------------------------------------------------------------------------------

    async def _spawn(self) -> _Child:
        """Start one mosquitto and wait until it is ready; on any failure (or cancellation) it is killed."""
        assert self._binary is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                self._binary,
                "-c",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise BrokerError(f"cannot run {self._binary}: {exc}") from exc
        child = self._child = _Child(proc, self.host, self.port, self.on_log_line)
        try:
            self.pid_path.write_text(f"{proc.pid}\n")
            await self._wait_ready(child)
        except BaseException:
            await child.abort()
            self._child = None
            with contextlib.suppress(OSError):
                self.pid_path.unlink(missing_ok=True)
            raise
        return child

    async def _wait_ready(self, child: _Child) -> None:
        where = f"{self.host}:{self.port}"
        ready = child.expect(lambda line: _READY.search(line) is not None, since=0)
        try:
            async with asyncio.timeout(self.start_timeout_s):
                if not await ready:
                    code = await child.wait_exit()
                    raise BrokerError(
                        f"mosquitto exited while starting on {where}", stderr=child.tail(), returncode=code
                    )
                while True:
                    try:
                        await _probe(self.host, self.port)
                    except OSError:
                        if not child.alive:
                            code = await child.wait_exit()
                            raise BrokerError(
                                f"mosquitto exited while starting on {where}", stderr=child.tail(), returncode=code
                            ) from None
                        await asyncio.sleep(0.02)
                        continue
                    return
        except TimeoutError as exc:
            raise BrokerError(
                f"mosquitto did not start serving {where} within {self.start_timeout_s} s", stderr=child.tail()
            ) from exc
        finally:
            child.forget(ready)

    async def _supervise(self) -> None:
        """Restart mosquitto whenever it exits, with backoff, until cancelled by :meth:`stop`."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        while True:
            child = self._child
            if child is not None:
                code = await child.wait_exit()
                uptime = loop.time() - child.started_at
                if uptime >= STABLE_RUN_S:
                    backoff.reset()
                _LOGGER.warning(
                    "mosquitto (pid %d) exited with code %d after %.1f s; restarting in %.1f s; its last output:\n%s",
                    child.pid,
                    code,
                    uptime,
                    backoff.delay,
                    child.tail(10),
                )
                self._child = None
            await backoff.wait()
            try:
                async with self._lock:
                    version = self._write_files(config=True)
                    child = await self._spawn()
                    self._applied_version = version
            except Exception as exc:  # the supervisor's outermost loop: log, keep trying
                _LOGGER.error(
                    "restarting mosquitto failed; next attempt in %.1f s: %s",
                    backoff.delay,
                    exc,
                    exc_info=not isinstance(exc, (BrokerError, OSError)),
                )
                continue
            self.restarts += 1
            _LOGGER.info("mosquitto restarted (pid %d), restart #%d", child.pid, self.restarts)

    async def _stop_leftover(self) -> None:
        """Stop a mosquitto that an earlier, killed owner of this data dir left running (pid file + cmdline)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            cmdline = []
        if os.fsencode(self.config_path) not in cmdline or _process_state(pid) in (None, "Z"):
            self.pid_path.unlink(missing_ok=True)
            return
        _LOGGER.warning("stopping mosquitto (pid %d) left running by an earlier owner of %s", pid, self.data_dir)
        for signum, wait_s in ((signal.SIGTERM, self.stop_timeout_s), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            await _poke(self.host, self.port)
            for _ in range(max(1, int(wait_s / 0.02))):
                if _process_state(pid) in (None, "Z"):
                    self.pid_path.unlink(missing_ok=True)
                    return
                await asyncio.sleep(0.02)
        raise BrokerError(f"mosquitto (pid {pid}) left by an earlier run does not stop")
