"""``gizdev cloud``: the admin commands (app add, product add, device list) and ``serve`` as subprocesses, the admin
commands working while the server runs, SIGTERM ending it cleanly with its managed Mosquitto."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.broker_fixtures import RawMqtt31, free_port, pid_alive
from tests.cloud.server_fixtures import TEMP_HUMI_SCHEMA, world_searchable_dir
from tests.conftest import REPO_ROOT, product_path
from tests.guards import run

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


def test_app_add(data_dir: Path) -> None:
    first = json_out(gizdev("cloud", "app", "add", "my app", "--data-dir", str(data_dir)))
    second = json_out(gizdev("cloud", "app", "add", "another", "--data-dir", str(data_dir)))
    assert set(first) == {"appid", "appsecret"} and set(second) == {"appid", "appsecret"}
    assert first["appid"] != second["appid"] and first["appsecret"] != second["appsecret"]
    assert all(isinstance(value, str) and len(value) >= 16 for value in (*first.values(), *second.values()))
    assert (data_dir / "cloud.db").is_file()


def test_product_add_with_and_without_key(data_dir: Path, tmp_path: Path) -> None:
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
    commands.append(
        ["cloud", "product", "add", str(GOKIT), "--product-secret", "not-hex", "--data-dir", str(tmp_path / "s")]
    )
    results = gizdev_many(*commands)
    for result, hint in zip(results, [hint for _, hint in cases] + ["secret"], strict=True):
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert result.stderr.startswith("gizdev cloud:") and "Traceback" not in result.stderr, result.stderr
        assert hint in result.stderr.lower(), result.stderr


def test_device_list_empty(data_dir: Path) -> None:
    assert json_out(gizdev("cloud", "device", "list", "--data-dir", str(data_dir))) == []


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
