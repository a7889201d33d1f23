"""``gizdev cloud outbox`` (the developer's view of the codes and mails the cloud wrote), and the serve options for
mail, SMS and captchas: their validation messages, and a served cloud with ``--insecure-test-captcha`` and
``--public-url`` as a developer runs it."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gizdev.cloud.messages import OUTBOX_FILE, Message, Outbox
from tests.cli.test_cloud_cli import GIZDEV, gizdev, http_up, json_out, make_cloud_dir, wait_for
from tests.cloud.broker_fixtures import free_port
from tests.cloud.server_fixtures import world_searchable_dir
from tests.conftest import REPO_ROOT


def test_outbox_prints_json_lines(tmp_path: Path) -> None:
    data_dir = make_cloud_dir(tmp_path / "data")
    outbox = Outbox(data_dir / OUTBOX_FILE, clock=lambda: 1_767_268_800.0)  # 2026-01-01T12:00:00Z
    sent = [
        Message(channel="sms", to="+8613800000000", text="Your code is 123456.", code="123456"),
        Message(channel="email", to="bob@bob.com", text="Reset: http://x/r/1", subject="Reset", link="http://x/r/1"),
        Message(channel="captcha", to="ab" * 16, text="captcha: K7X2P", code="K7X2P"),
        Message(channel="sms", to="+8613800000001", text='Grüße, 你好 "quoted"\nnew line', code="654321"),
    ]
    for message in sent:
        outbox.append(message)
    with (data_dir / OUTBOX_FILE).open("a") as file:
        file.write('{"torn": \n')  # a write cut short: skipped, not fatal
    result = gizdev("cloud", "outbox", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(sent)
    for line, message in zip(lines, sent, strict=True):
        assert line["time"] == "2026-01-01T12:00:00+00:00"
        assert (line["channel"], line["to"], line["text"]) == (message.channel, message.to, message.text)
        assert line.get("code") == message.code and line.get("link") == message.link
        assert set(line) <= {"time", "channel", "to", "code", "link", "text"}
    assert list(lines[0]) == ["time", "channel", "to", "code", "text"]
    assert (data_dir / OUTBOX_FILE).stat().st_mode & 0o077 == 0  # live codes: the owner's only


def test_outbox_errors_and_help(tmp_path: Path) -> None:
    missing = gizdev("cloud", "outbox", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no cloud data dir" in missing.stderr and "Traceback" not in missing.stderr
    empty = make_cloud_dir(tmp_path / "data")
    nothing = gizdev("cloud", "outbox", "--data-dir", str(empty))
    assert nothing.returncode == 1 and "no outbox" in nothing.stderr and "sent nothing yet" in nothing.stderr
    helped = gizdev("cloud", "outbox", "--help")
    assert helped.returncode == 0
    for word in ("channel", "sms", "email", "captcha", "code", "link", "--insecure-test-captcha", "--smtp-host"):
        assert word in helped.stdout, word


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smtp-port", "25"], "--smtp-port needs --smtp-host"),
        (["--mail-from", "a@b.cd", "--smtp-tls", "tls"], "--smtp-tls, --mail-from need --smtp-host"),
        (["--smtp-host", "127.0.0.1"], "--smtp-host needs --mail-from"),
        (["--smtp-host", "127.0.0.1", "--mail-from", "nobody"], "is not an email address"),
        (["--smtp-host", "127.0.0.1", "--mail-from", "a@b.cd", "--smtp-user", "u"], "together"),
        (["--smtp-host", "h", "--mail-from", "a@b.cd", "--smtp-user", "u", "--smtp-password-file", "/nope"],
         "cannot read"),
        (["--smtp-host", "h", "--mail-from", "a@b.cd", "--smtp-tls", "none", "--smtp-user", "u",
          "--smtp-password-file", "PASSWORD"], "needs TLS"),
        (["--smtp-host", "h", "--mail-from", "a@b.cd", "--smtp-ca-file", "/nope"],
         "--smtp-ca-file /nope is not a file"),
        (["--sms-webhook-body", "{}"], "--sms-webhook-body needs --sms-webhook"),
        (["--sms-webhook", "ftp://127.0.0.1/x"], "must be http:// or https://"),
        (["--sms-webhook", "http://127.0.0.1/x", "--sms-webhook-body", "{not json"], "is not JSON"),
        (["--sms-webhook", "http://127.0.0.1/x", "--sms-webhook-body", '{"to": "{phone}"}'],
         "unknown placeholders phone"),
        (["--public-url", "cloud.example.org"], "must start with http:// or https://"),
        (["--public-url", "https://cloud.example.org/?x=1"], "must not carry a query"),
    ],
)  # fmt: skip
def test_serve_refuses_options_that_cannot_work(tmp_path: Path, args: list[str], message: str) -> None:
    password = tmp_path / "password"
    password.write_text("secret\n")
    args = [str(password) if arg == "PASSWORD" else arg for arg in args]
    result = gizdev("cloud", "serve", "--data-dir", str(tmp_path / "data"), "--http", "127.0.0.1:0", *args)
    assert result.returncode == 1, result
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was started or created


def test_serve_has_no_password_option() -> None:
    result = gizdev("cloud", "serve", "--smtp-password", "secret")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr
    helped = " ".join(gizdev("cloud", "serve", "--help").stdout.split())  # as words: argparse wraps lines
    assert "--smtp-password-file" in helped and "never on the command line" in helped


def _post(port: int, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST" if path.endswith("token") else "GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_serve_with_the_test_captcha_switch_warns_and_writes_answers() -> None:
    base = world_searchable_dir()
    data_dir, http_port = base / "data", free_port()
    err_path = base / "serve.err"
    try:
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                [*GIZDEV, "cloud", "serve", "--data-dir", str(data_dir), "--http", f"127.0.0.1:{http_port}",
                 "--mqtt", f"127.0.0.1:{free_port()}", "--insecure-test-captcha",
                 "--public-url", "https://cloud.example.org/"],
                stdout=subprocess.DEVNULL, stderr=err, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        try:
            wait_for(lambda: http_up(http_port) or proc.poll() is not None, 60, "the HTTP listener")
            assert proc.poll() is None, err_path.read_text()
            stderr = err_path.read_text()
            assert "WARNING" in stderr and "--insecure-test-captcha" in stderr, stderr
            app = json_out(gizdev("cloud", "app", "add", "dev", "--data-dir", str(data_dir)))
            auth = hashlib.md5((app["appid"] + app["appsecret"]).encode(), usedforsecurity=False).hexdigest()
            headers = {"X-Gizwits-Application-Id": app["appid"], "X-Gizwits-Application-Auth": auth}
            status, token = _post(http_port, "/app/request_token", headers)
            assert status == 200, token
            headers = {"X-Gizwits-Application-Id": app["appid"], "X-Gizwits-Application-Token": token["token"]}
            status, captcha = _post(http_port, "/app/verify/codes", headers)
            assert status == 200, captcha
            captcha_id = captcha["captcha_id"]
            assert captcha["captcha_url"] == f"https://cloud.example.org/captcha/image/{captcha_id}/"
            out = gizdev("cloud", "outbox", "--data-dir", str(data_dir))
            (line,) = [json.loads(text) for text in out.stdout.splitlines()]
            assert (line["channel"], line["to"]) == ("captcha", captcha_id) and len(line["code"]) == 5
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, err_path.read_text()
    finally:
        shutil.rmtree(base, ignore_errors=True)
