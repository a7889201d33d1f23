"""``gizdev cloud``: the admin commands (app add, product add, device list) and ``serve`` as subprocesses, the admin
commands working while the server runs, SIGTERM ending it cleanly with its managed Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from gizdev.cloud.http.context import SESSION_CACHE_S
from gizdev.cloud.storage import Storage
from gizdev.protocol.device_api import decrypt_form, encrypt_form
from tests.cloud.broker_fixtures import RawMqtt31, free_port, mosquitto_pids_for, pid_alive
from tests.cloud.oauth_providers import Providers
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, world_searchable_dir
from tests.conftest import REPO_ROOT, product_path
from tests.guards import run
from tests.guards import run as guarded_run
from tests.processes import stop

GIZDEV = [sys.executable, "-m", "gizdev.cli.main"]
GOKIT = product_path("gokit")
GOKIT_PK = "0123456789abcdef0123456789abcdef"  # protocols/gokit.json
HEX32 = re.compile(r"[0-9a-f]{32}")


def gizdev(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GIZDEV, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, check=False)


def json_out(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(name="data_dir")
def data_dir_fixture() -> Iterator[Path]:
    """A data dir the ``mosquitto`` user can reach (a root run drops the broker's privileges, as in production)."""
    base = world_searchable_dir()
    try:
        yield base / "data"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_cloud_dir(path: Path) -> Path:
    """A data dir with a (migrated, empty) database, as ``serve`` leaves it; the admin commands need one."""

    async def create() -> None:
        await (await Storage.open(path / "cloud.db")).close()

    path.mkdir(mode=0o700)
    guarded_run(create())
    return path


@pytest.fixture(name="cloud_dir")
def cloud_dir_fixture(tmp_path: Path) -> Path:
    return make_cloud_dir(tmp_path / "data")


def test_app_add(cloud_dir: Path) -> None:
    data_dir = cloud_dir
    first = json_out(gizdev("cloud", "app", "add", "my app", "--data-dir", str(data_dir)))
    second = json_out(gizdev("cloud", "app", "add", "another", "--data-dir", str(data_dir)))
    assert set(first) == {"appid", "appsecret", "product_keys"} and set(second) == set(first)
    assert first["appid"] != second["appid"] and first["appsecret"] != second["appsecret"]
    secrets = [app[key] for app in (first, second) for key in ("appid", "appsecret")]
    assert all(isinstance(value, str) and len(value) >= 16 for value in secrets)
    assert first["product_keys"] == second["product_keys"] == []  # it reaches no device until linked
    assert (data_dir / "cloud.db").is_file()


def test_app_products_add_link_and_unlink(cloud_dir: Path, tmp_path: Path) -> None:
    data = ["--data-dir", str(cloud_dir)]
    json_out(gizdev("cloud", "product", "add", str(GOKIT), *data))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(TEMP_HUMI_SCHEMA))
    other_pk = json_out(gizdev("cloud", "product", "add", str(other), *data))["product_key"]

    shop = json_out(gizdev("cloud", "app", "add", "shop", "--product", GOKIT_PK, "--product", other_pk, *data))
    assert shop["product_keys"] == sorted([GOKIT_PK, other_pk])
    unknown = gizdev("cloud", "app", "add", "typo", "--product", "ab" * 16, *data)
    assert (unknown.returncode, unknown.stdout) == (1, "") and "ab" * 16 in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad = gizdev("cloud", "app", "add", "typo", "--product", "not-a-key", *data)
    assert bad.returncode == 1 and "product_key" in bad.stderr and "Traceback" not in bad.stderr
    assert [app["name"] for app in json_out(gizdev("cloud", "app", "list", *data))] == ["shop"]  # no app left

    plain = json_out(gizdev("cloud", "app", "add", "plain", *data))
    linked = json_out(gizdev("cloud", "app", "link", plain["appid"], GOKIT_PK, *data))
    assert (linked["appid"], linked["product_keys"]) == (plain["appid"], [GOKIT_PK])
    assert json_out(gizdev("cloud", "app", "link", plain["appid"], GOKIT_PK, *data))["product_keys"] == [GOKIT_PK]
    unlinked = json_out(gizdev("cloud", "app", "unlink", shop["appid"], GOKIT_PK, *data))
    assert unlinked["product_keys"] == [other_pk]
    listed = {app["appid"]: app["product_keys"] for app in json_out(gizdev("cloud", "app", "list", *data))}
    assert listed == {shop["appid"]: [other_pk], plain["appid"]: [GOKIT_PK]}
    for command in (["link", "0" * 32, GOKIT_PK], ["link", plain["appid"], "ab" * 16]):
        refused = gizdev("cloud", "app", *command, *data)
        assert (refused.returncode, refused.stdout) == (1, "") and "not found" in refused.stderr, refused


def test_product_add_with_and_without_key(cloud_dir: Path, tmp_path: Path) -> None:
    data_dir = cloud_dir
    # The schema names its key: that key, and a new 32-hex secret.
    added = json_out(gizdev("cloud", "product", "add", str(GOKIT), "--data-dir", str(data_dir)))
    assert set(added) == {"product_key", "product_secret"}
    assert added["product_key"] == GOKIT_PK and HEX32.fullmatch(added["product_secret"])
    # Adding it twice is refused.
    again = gizdev("cloud", "product", "add", str(GOKIT), "--data-dir", str(data_dir))
    assert again.returncode == 1 and again.stderr.strip() and "Traceback" not in again.stderr

    # A schema without a key: the firmware's key and secret from the options, verbatim.
    keyless = tmp_path / "keyless.json"
    keyless.write_text(json.dumps({k: v for k, v in TEMP_HUMI_SCHEMA.items() if k != "product_key"}))
    key, secret = "c0ffee00" * 4, "5ec2e700" * 4
    given = gizdev(
        "cloud", "product", "add", str(keyless), "--product-key", key, "--product-secret", secret,
        "--data-dir", str(data_dir),
    )  # fmt: skip
    assert json_out(given) == {"product_key": key, "product_secret": secret}
    # No key anywhere: a new one.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({k: v for k, v in TEMP_HUMI_SCHEMA.items() if k != "product_key"} | {"name": "b"}))
    fresh = json_out(gizdev("cloud", "product", "add", str(other), "--data-dir", str(data_dir)))
    assert HEX32.fullmatch(fresh["product_key"]) and fresh["product_key"] not in (GOKIT_PK, key)
    # A key that contradicts the schema's own is refused, naming both.
    clash = gizdev(
        "cloud", "product", "add", str(GOKIT), "--product-key", key, "--data-dir", str(data_dir)
    )  # fmt: skip
    assert clash.returncode == 1 and GOKIT_PK in clash.stderr and key in clash.stderr


def gizdev_many(*commands: list[str], timeout: float = 60) -> list[subprocess.CompletedProcess[str]]:
    """Independent ``gizdev`` runs side by side (each pays the interpreter's start-up, so overlap them)."""
    procs = [
        subprocess.Popen([*GIZDEV, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        for args in commands
    ]
    results = []
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess([*GIZDEV, *args], proc.returncode, out, err))
    return results


FLOAT_POINT = {
    "id": 0,
    "name": "a",
    "type": "status_writable",
    "data_type": "float",  # no such data type (serial protocol §4.2)
    "position": {"byte_offset": 0, "bit_offset": 0, "len": 4, "unit": "byte"},
}


def test_product_add_with_a_bad_schema_or_secret_fails_clearly(tmp_path: Path) -> None:
    cases: list[tuple[str | None, str]] = [
        ("{not json", "bad0.json"),
        ("[]", "bad1.json"),
        (json.dumps({**TEMP_HUMI_SCHEMA, "entities": [{"attrs": [FLOAT_POINT]}]}), "float"),
        (None, "missing.json"),
    ]
    commands = []
    for index, (content, _) in enumerate(cases):
        path = tmp_path / (f"bad{index}.json" if content is not None else "missing.json")
        if content is not None:
            path.write_text(content)
        commands.append(["cloud", "product", "add", str(path), "--data-dir", str(tmp_path / f"data{index}")])
    cloud_dir = make_cloud_dir(tmp_path / "s")
    commands.append(
        ["cloud", "product", "add", str(GOKIT), "--product-secret", "not-hex", "--data-dir", str(cloud_dir)]
    )
    results = gizdev_many(*commands)
    for result, hint in zip(results, [hint for _, hint in cases] + ["secret"], strict=True):
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert result.stderr.startswith("gizdev cloud:") and "Traceback" not in result.stderr, result.stderr
        assert hint in result.stderr.lower(), result.stderr


def test_lists_of_an_empty_cloud(cloud_dir: Path) -> None:
    results = gizdev_many(
        *(["cloud", kind, "list", "--data-dir", str(cloud_dir)] for kind in ("device", "app", "user"))
    )
    assert [json_out(result) for result in results] == [[], [], []]


def test_admin_commands_refuse_a_data_dir_without_a_database(tmp_path: Path) -> None:
    """A typo in --data-dir is an error, not a new empty cloud: nothing is created (``serve`` is what creates)."""
    commands = [
        ["app", "add", "x"],
        ["app", "list"],
        ["app", "link", "0" * 32, GOKIT_PK],
        ["app", "unlink", "0" * 32, GOKIT_PK],
        ["product", "add", str(GOKIT)],
        ["device", "list"],
        ["user", "list"],
        ["user", "disable", "0" * 32],
    ]
    missing, empty = tmp_path / "TYPO", tmp_path / "empty"
    empty.mkdir()
    results = gizdev_many(
        *(["cloud", *command, "--data-dir", str(where)] for where in (missing, empty) for command in commands)
    )
    for index, result in enumerate(results):
        where = missing if index < len(commands) else empty
        assert (result.returncode, result.stdout) == (1, ""), result
        reason = f"no cloud data dir {where}" if where is missing else f"no cloud database at {where / 'cloud.db'}"
        assert result.stderr == (
            f"gizdev cloud: {reason} (a typo? `gizdev cloud serve --data-dir {where}` creates one)\n"
        ), result.stderr
    assert not missing.exists() and list(empty.iterdir()) == []


# -- serve ------------------------------------------------------------------------------------------------------


def http_call(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def http_up(port: int) -> bool:
    try:
        return http_call(port, "GET", "/errors")[0] == 200
    except OSError:
        return False


def test_serve_admin_while_running_and_sigterm(data_dir: Path, tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    err_path = tmp_path / "serve.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [
                *GIZDEV, "-v", "cloud", "serve", "--http", f"127.0.0.1:{http_port}", "--mqtt",
                f"127.0.0.1:{mqtt_port}", "--data-dir", str(data_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO_ROOT,
        )  # fmt: skip
    try:
        wait_for(lambda: http_up(http_port) or proc.poll() is not None, 30, "the HTTP listener")
        assert proc.poll() is None, err_path.read_text()
        pid_file = data_dir / "broker" / "mosquitto.pid"
        broker_pid = int(pid_file.read_text().split()[0])
        assert pid_alive(broker_pid)

        # Administration while the server runs, on the same data dir.
        app = json_out(gizdev("cloud", "app", "add", "live", "--data-dir", str(data_dir)))
        product = json_out(gizdev("cloud", "product", "add", str(GOKIT), "--data-dir", str(data_dir)))
        assert product["product_key"] == GOKIT_PK
        status, body = http_call(
            http_port,
            "POST",
            "/app/users",
            b'{"username": "bob", "password": "123456"}',
            {"Content-Type": "application/json", "X-Gizwits-Application-Id": app["appid"]},
        )
        assert status == 201, body
        form = f"passcode=HKIPANQEYX&mac=AABBCCDDEEFF&product_key={GOKIT_PK}".encode()
        status, body = http_call(
            http_port, "POST", "/dev/devices", form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 201 and body.startswith(b"did="), body
        did = body[4:].decode()

        [listed] = json_out(gizdev("cloud", "device", "list", "--data-dir", str(data_dir)))
        expected = {"did": did, "product_key": GOKIT_PK, "passcode": "HKIPANQEYX", "is_online": False}
        assert {key: listed[key] for key in expected} == expected
        assert listed["mac"].upper() == "AABBCCDDEEFF" and listed["last_seen"] is None

        async def connect() -> RawMqtt31:
            device = await RawMqtt31.open("127.0.0.1", mqtt_port)
            assert await device.connect(did, did, "HKIPANQEYX") == bytes.fromhex("20020000")
            return device

        async def online_listing() -> dict[str, Any]:
            device = await connect()
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    result = await asyncio.to_thread(gizdev, "cloud", "device", "list", "--data-dir", str(data_dir))
                    [entry] = json_out(result)
                    if entry["is_online"]:
                        return dict(entry)
                    await asyncio.sleep(0.1)
                raise AssertionError("device list never showed the connected device online")
            finally:
                await device.close()

        entry = run(online_listing())
        assert type(entry["last_seen"]) is int and abs(entry["last_seen"] - time.time()) < 30

        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, err_path.read_text()
        assert time.monotonic() - start < 5, "serve took too long to stop"
        wait_for(lambda: not pid_alive(broker_pid), 5, "mosquitto gone")
        stderr = err_path.read_text()
        assert "Traceback" not in stderr, stderr
        assert "stopping" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class ServeRun:
    """One ``gizdev cloud serve`` on free loopback ports; stderr to a file, or to a pipe the test may close."""

    def __init__(
        self, data_dir: Path, *, mqtt: int | None = None, stderr_pipe: bool = False, options: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.http, self.mqtt = free_port(), mqtt or free_port()
        self.err_path = data_dir.with_suffix(".err")
        with self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [
                    *GIZDEV, "cloud", "serve", "--http", f"127.0.0.1:{self.http}", "--mqtt", f"127.0.0.1:{self.mqtt}",
                    "--data-dir", str(data_dir), *options,
                ],
                stdout=subprocess.PIPE if stderr_pipe else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if stderr_pipe else err,
                cwd=REPO_ROOT,
            )  # fmt: skip

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_up(self) -> int:
        """Wait for the HTTP listener; the managed broker's pid."""
        wait_for(lambda: http_up(self.http) or self.proc.poll() is not None, 60, "the HTTP listener")
        assert self.proc.poll() is None, self.stderr
        return int((self.data_dir / "broker" / "mosquitto.pid").read_text().split()[0])

    def close(self) -> None:
        """Stop the server as a user would (SIGTERM: it stops its broker); killed only if it does not stop."""
        stop(self.proc, grace_s=20)
        pid_file = self.data_dir / "broker" / "mosquitto.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)  # a broker its killed server left behind
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(name="scratch")
def scratch_fixture() -> Iterator[Path]:
    base = world_searchable_dir()
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_serve_stops_cleanly_on_signals_and_a_closed_output(scratch: Path) -> None:
    """SIGINT, SIGTERM, SIGHUP; and `serve 2>&1 | tee log` where the same Ctrl-C took tee away first."""
    cases: dict[str, tuple[signal.Signals, bool]] = {
        "SIGINT": (signal.SIGINT, False),
        "SIGTERM": (signal.SIGTERM, False),
        "SIGHUP": (signal.SIGHUP, False),
        "pipe": (signal.SIGINT, True),
    }
    runs = {name: ServeRun(scratch / name, stderr_pipe=pipe) for name, (_, pipe) in cases.items()}
    try:
        for name, (signum, pipe) in cases.items():
            run = runs[name]
            broker = run.wait_up()
            assert pid_alive(broker)
            if pipe:
                assert run.proc.stdout is not None
                run.proc.stdout.close()
            run.proc.send_signal(signum)
            assert run.proc.wait(30) == 0, f"{name}: {run.stderr}"
            assert not pid_alive(broker), f"{name}: mosquitto {broker} outlived the server"
            assert not (run.data_dir / "broker" / "mosquitto.pid").exists()
            assert "Traceback" not in run.stderr, run.stderr
    finally:
        for run in runs.values():
            run.close()


def test_serve_has_the_console_and_lists_apps_unless_told_not_to(scratch: Path) -> None:
    runs = {
        True: ServeRun(scratch / "listed"),
        False: ServeRun(scratch / "unlisted", options=("--no-console-app-list",)),
    }
    try:
        for listed, run in runs.items():
            run.wait_up()
            status, page = http_call(run.http, "GET", "/console/")
            assert status == 200 and b'name="viewport"' in page
            status, body = http_call(run.http, "GET", "/console/api/apps")
            assert status == 200 and json.loads(body)["listed"] is listed
            wait_for(lambda run=run: "/console/" in run.stderr, 10, "the start-up line")
            assert f"http://127.0.0.1:{run.http}/console/" in run.stderr
    finally:
        for run in runs.values():
            run.close()


def test_serve_names_a_taken_mqtt_port(scratch: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = ServeRun(scratch / "data", mqtt=port)
        try:
            assert run.proc.wait(60) == 1, run.stderr
        finally:
            run.close()
    assert run.stderr.splitlines() == [
        f"gizdev cloud: 127.0.0.1:{port} is in use — another gizdev demo or gizdev cloud serve, or a mosquitto, "
        "still running? Stop it, or choose another port with --mqtt HOST:PORT"
    ]
    assert mosquitto_pids_for(scratch / "data" / "broker" / "mosquitto.conf") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the broker drops privileges only when the cloud runs as root")
def test_serve_as_root_opens_the_way_to_the_broker_only(scratch: Path) -> None:
    """No "running mosquitto as root" warning, the broker as the mosquitto user, the database still private."""
    try:
        broker_user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user")
    # A new data dir, and one made 0700 by an earlier version.
    (scratch / "old").mkdir(mode=0o700)
    runs = [ServeRun(scratch / "new"), ServeRun(scratch / "old")]
    try:
        for run in runs:
            broker = run.wait_up()
            status = Path(f"/proc/{broker}/status").read_text()
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            assert int(uid) == broker_user.pw_uid
            data = run.data_dir.stat()
            # Search for the broker's group only, nothing for others; the database only for us.
            assert (data.st_mode & 0o777, data.st_gid) == (0o710, broker_user.pw_gid)
            assert (run.data_dir / "cloud.db").stat().st_mode & 0o777 == 0o600
            run.proc.send_signal(signal.SIGTERM)
            assert run.proc.wait(30) == 0
            assert run.stderr.splitlines() == [
                f"gizdev cloud: Open API on http://127.0.0.1:{run.http} "
                f"(console: http://127.0.0.1:{run.http}/console/), "
                f"managed mosquitto on 127.0.0.1:{run.mqtt}, data in {run.data_dir}",
                "gizdev cloud: stopping",
            ]
    finally:
        for run in runs:
            run.close()


def test_apps_and_users_from_the_admin_cli_while_serving(scratch: Path) -> None:
    """List apps and users, disable a user: its token is refused at its very next request, from another process."""
    run = ServeRun(scratch / "data")
    try:
        run.wait_up()
        data = ["--data-dir", str(run.data_dir)]
        app, other = (json_out(gizdev("cloud", "app", "add", name, *data)) for name in ("shop", "other"))
        json_headers = {"Content-Type": "application/json"}

        def call(method: str, path: str, payload: Any, appid: str, token: str | None = None) -> tuple[int, Any]:
            headers = {**json_headers, "X-Gizwits-Application-Id": appid}
            if token is not None:
                headers["X-Gizwits-User-token"] = token
            status, body = http_call(run.http, method, path, json.dumps(payload).encode(), headers)
            return status, json.loads(body)

        status, bob = call("POST", "/app/users", {"username": "bob", "password": "123456"}, app["appid"])
        assert status == 201, bob
        status, phone = call("POST", "/app/users", {"phone_id": "p-1"}, app["appid"])
        assert status == 201, phone
        status, carol = call("POST", "/app/users", {"username": "carol", "password": "123456"}, other["appid"])
        assert status == 201, carol

        apps = json_out(gizdev("cloud", "app", "list", *data))
        # Oldest first; two made within one second are in appid order, so compare without the order.
        assert sorted((a["appid"], a["name"]) for a in apps) == sorted(
            [(app["appid"], "shop"), (other["appid"], "other")]
        )
        assert all(set(a) == {"appid", "name", "created_at", "product_keys"} for a in apps)  # never the secret
        assert app["appsecret"] not in json.dumps(apps)
        users = json_out(gizdev("cloud", "user", "list", "--app", app["appid"], *data))
        assert {u["uid"]: (u["kind"], u["username"], u["phone_id"], u["is_disabled"]) for u in users} == {
            bob["uid"]: ("username", "bob", None, False),
            phone["uid"]: ("anonymous", None, "p-1", False),
        }
        assert {u["uid"] for u in json_out(gizdev("cloud", "user", "list", *data))} == {
            bob["uid"],
            phone["uid"],
            carol["uid"],
        }
        unknown = gizdev("cloud", "user", "list", "--app", "0" * 32, *data)
        assert unknown.returncode == 1 and "not found" in unknown.stderr

        assert call("GET", "/app/users", None, app["appid"], bob["token"])[0] == 200  # works, and is cached
        disabled = json_out(gizdev("cloud", "user", "disable", bob["uid"], *data))
        assert (disabled["uid"], disabled["is_disabled"]) == (bob["uid"], True)
        # Refused once the server's one-second session cache has let go of it.
        time.sleep(SESSION_CACHE_S + 0.1)
        status, body = call("GET", "/app/users", None, app["appid"], bob["token"])
        assert (status, body["error_code"]) == (400, 9004), body
        status, body = call("POST", "/app/login", {"username": "bob", "password": "123456"}, app["appid"])
        assert (status, body["error_code"], body["detail_message"]) == (400, 9026, "this user is disabled")
        assert call("GET", "/app/users", None, app["appid"], phone["token"])[0] == 200  # the others go on

        assert json_out(gizdev("cloud", "user", "enable", bob["uid"], *data))["is_disabled"] is False
        status, login = call("POST", "/app/login", {"username": "bob", "password": "123456"}, app["appid"])
        assert status == 200, login
        assert call("GET", "/app/users", None, app["appid"], login["token"])[0] == 200
        assert call("GET", "/app/users", None, app["appid"], bob["token"])[0] == 400  # the old token stays dead
    finally:
        run.close()


def test_serve_refuses_plain_registration_and_announces_tls_ports(scratch: Path) -> None:
    """``--refuse-plain-registration``: GAgent's POST /dev/devices gets 9048 with a reason; the encrypted API works.
    ``--public-mqtts-port`` / ``--public-wss-port`` are what the bindings list announces as port_s / wss_port."""
    options = ("--refuse-plain-registration", "--public-mqtts-port", "8883", "--public-wss-port", "8880")
    run = ServeRun(scratch / "data", options=options)
    try:
        run.wait_up()
        data = ["--data-dir", str(run.data_dir)]
        product = json_out(gizdev("cloud", "product", "add", str(GOKIT), *data))
        app = json_out(gizdev("cloud", "app", "add", "shop", "--product", GOKIT_PK, *data))
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        plain = f"passcode=HKIPANQEYX&mac=AABBCCDDEEFF&product_key={GOKIT_PK}".encode()
        status, body = http_call(run.http, "POST", "/dev/devices", plain, form)
        refused = json.loads(body)
        assert (status, refused["error_code"]) == (400, 9048), body
        assert "encrypted device API" in refused["detail_message"]
        sealed = encrypt_form(product["product_secret"], "mac=AABBCCDDEEFF&passcode=HKIPANQEYX&type=normal")
        status, body = http_call(run.http, "POST", f"/dev/{GOKIT_PK}/device", f"data={sealed}".encode(), form)
        assert status == 201, body
        did = dict(parse_qsl(decrypt_form(product["product_secret"], body.decode())))["did"]
        headers = {"Content-Type": "application/json", "X-Gizwits-Application-Id": app["appid"]}
        status, body = http_call(run.http, "POST", "/app/users", b'{"phone_id": "p"}', headers)
        headers["X-Gizwits-User-token"] = json.loads(body)["token"]
        binding = json.dumps({"devices": [{"did": did, "passcode": "HKIPANQEYX"}]}).encode()
        assert http_call(run.http, "POST", "/app/bindings", binding, headers)[0] == 200
        status, body = http_call(run.http, "GET", "/app/bindings", None, headers)
        [item] = json.loads(body)["devices"]
        assert (item["port"], item["port_s"], item["ws_port"], item["wss_port"]) == (run.mqtt, 8883, run.http, 8880)
    finally:
        run.close()


def test_serve_with_an_oauth_provider_and_a_lower_login_limit(scratch: Path) -> None:
    """--oauth-endpoint and --limit reach the running cloud: a qq sign-up is checked with that server, and the
    account limit is the one given."""
    providers = Providers()
    providers.start()
    run = ServeRun(
        scratch / "data",
        options=("--oauth-endpoint", f"qq={providers.endpoints['qq']}", "--limit", "login-account=2/900"),
    )
    try:
        run.wait_up()
        appid = json_out(gizdev("cloud", "app", "add", "shop", "--data-dir", str(run.data_dir)))["appid"]

        def call(path: str, payload: Any) -> tuple[int, Any]:
            headers = {"Content-Type": "application/json", "X-Gizwits-Application-Id": appid}
            status, body = http_call(run.http, "POST", path, json.dumps(payload).encode(), headers)
            return status, json.loads(body)

        providers.tokens["qq"]["qq-token"] = "OPENID7"
        status, created = call("/app/users", {"authData": {"src": "qq", "uid": "OPENID7", "token": "qq-token"}})
        assert status == 201, created
        assert [(c.method, c.query) for c in providers.calls] == [("GET", {"access_token": "qq-token"})]
        status, refused = call("/app/users", {"authData": {"src": "baidu", "uid": "1", "token": "t"}})
        assert (status, refused["error_code"]) == (400, 9015) and "--oauth-endpoint baidu=URL" in str(refused)
        assert call("/app/users", {"username": "bob", "password": "123456"})[0] == 201
        for _ in range(2):
            assert call("/app/login", {"username": "bob", "password": "wrong-one"})[1]["error_code"] == 9020
        status, throttled = call("/app/login", {"username": "bob", "password": "123456"})
        assert (status, throttled["error_code"]) == (429, 9041), throttled
    finally:
        run.close()
        providers.close()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--oauth-endpoint=wechat=http://127.0.0.1:1/x", "expects SRC=URL with SRC one of baidu, sina, qq"),
        ("--oauth-endpoint=qq=ftp://127.0.0.1/x", "the qq endpoint must be an http:// or https:// URL"),
        ("--oauth-endpoint=qq", "expects SRC=URL"),
        ("--limit=login-account=0/900", "expects NAME=COUNT/SECONDS"),
        ("--limit=login-account=5", "expects NAME=COUNT/SECONDS"),
        ("--limit=logins=5/900", "expects NAME=COUNT/SECONDS with NAME one of login-account, login-address"),
    ],
)
def test_serve_refuses_bad_oauth_and_limit_options(option: str, message: str) -> None:
    result = gizdev("cloud", "serve", option)
    assert result.returncode == 2, result
    assert message in result.stderr, result.stderr


def test_serve_refuses_scale_out_options_that_do_not_fit(tmp_path: Path) -> None:
    """Each mistake is one clear line, before anything is started (and a password never shows)."""
    amqp = "amqp://gizdev-cloud:s3cret@127.0.0.1:5672/"
    cases: list[tuple[list[str], str]] = [
        (["--amqp-url", "amqp://gizdev-cloud@127.0.0.1/", "--public-mqtt", "127.0.0.1:1883"], "user:password"),
        (["--amqp-url", "http://u:s3cret@127.0.0.1/", "--public-mqtt", "127.0.0.1:1883"], "amqp://"),
        (["--amqp-url", amqp], "--public-mqtt"),
        (["--amqp-url", amqp, "--public-mqtt", "127.0.0.1:1883", "--broker", "mqtt://a:s3cret@127.0.0.1"], "not both"),
        (["--amqp-url", amqp, "--public-mqtt", "127.0.0.1:1883", "--worker-group", "g"], "share a queue"),
        (["--worker-group", "g"], "external broker"),
        (["--broker", "mqtt://a:s3cret@127.0.0.1:1", "--worker-group", "a b"], "worker group"),
        (["--broker-auth"], "external broker"),
    ]
    results = gizdev_many(
        *(["cloud", "serve", "--data-dir", str(tmp_path / f"d{i}"), *args] for i, (args, _) in enumerate(cases))
    )
    for result, (args, hint) in zip(results, cases, strict=True):
        assert result.returncode == 1, (args, result)
        assert result.stderr.startswith("gizdev cloud:") and "Traceback" not in result.stderr, result.stderr
        assert hint in result.stderr and "s3cret" not in result.stderr, (args, result.stderr)
    for index in range(len(cases)):
        assert not (tmp_path / f"d{index}").exists()  # refused before the data dir was made
    bad_peer = gizdev("cloud", "serve", "--broker-auth-peer", "300.1.1.1")
    assert bad_peer.returncode == 2 and "--broker-auth-peer" in bad_peer.stderr
