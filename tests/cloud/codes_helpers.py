"""Shared by the code, captcha, app-token and reset tests: a cloud started with chosen code settings, the app
credentials an app would hold, the outbox as a developer reads it, and the calls of the seed's curl examples."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gizdev.cloud.codes import CodeSettings
from gizdev.cloud.messages import OUTBOX_FILE, Outbox
from gizdev.cloud.security import hash_password, new_app_id, new_app_secret
from gizdev.cloud.storage import User
from tests.cloud.server_fixtures import FAST_KDF, CloudThread, Reply, make_cloud, world_searchable_dir

__all__ = [
    "TEST_CODES",
    "AppKeys",
    "CloudFactory",
    "app_token",
    "captcha_answer",
    "clouds",
    "new_app",
    "outbox_lines",
    "seed_call",
    "signature",
    "sms_code_for",
    "user_with",
    "wait_for_line",
]

# The development switch on, so that tests can read captcha answers from the outbox as a developer would.
TEST_CODES = CodeSettings(insecure_test_captcha=True)

CloudFactory = Callable[..., CloudThread]


@contextlib.contextmanager
def clouds(database: Callable[[Path], str], mosquitto_binary: str) -> Iterator[CloudFactory]:
    """A factory of running clouds, ``start(codes=..., **config)``, on ``database(base dir)``; all closed at the end."""
    started: list[tuple[CloudThread, Path]] = []

    def start(**overrides: Any) -> CloudThread:
        base = world_searchable_dir()
        overrides.setdefault("codes", TEST_CODES)
        thread = make_cloud(database(base), base / "data", mosquitto_binary=mosquitto_binary, **overrides)
        started.append((thread, base))
        return thread

    try:
        yield start
    finally:
        for thread, base in started:
            thread.close()
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(name="start_cloud")
def start_cloud_fixture(db_url: str, mosquitto_binary: str) -> Iterator[CloudFactory]:
    """``start_cloud(codes=..., **config)``: a running cloud on ``db_url`` (SQLite, then PostgreSQL)."""
    with clouds(lambda _base: db_url, mosquitto_binary) as start:
        yield start


@dataclass(frozen=True)
class AppKeys:
    appid: str
    appsecret: str


def new_app(cloud: CloudThread) -> AppKeys:
    app = cloud.call(cloud.storage.add_app(new_app_id(), new_app_secret(), "codes test"))
    return AppKeys(app.appid, app.appsecret)


def signature(app: AppKeys) -> str:
    """§3.5 written out: lower-case hex MD5 of appid + appsecret."""
    return hashlib.md5((app.appid + app.appsecret).encode(), usedforsecurity=False).hexdigest()


def seed_call(
    cloud: CloudThread,
    method: str,
    path: str,
    *,
    appid: str,
    app_token: str | None = None,
    auth: str | None = None,
    body: str | None = None,
) -> Reply:
    """A request with the seed's curl headers (Content-Type json, the app id, the app token or signature)."""
    headers = {"User-Agent": "curl/8.5.0", "Accept": "*/*", "Content-Type": "application/json"}
    headers["X-Gizwits-Application-Id"] = appid
    if auth is not None:
        headers["X-Gizwits-Application-Auth"] = auth
    if app_token is not None:
        headers["X-Gizwits-Application-Token"] = app_token
    return cloud.request(method, path, None if body is None else body.encode(), headers)


def app_token(cloud: CloudThread, app: AppKeys) -> str:
    reply = seed_call(cloud, "POST", "/app/request_token", appid=app.appid, auth=signature(app))
    assert reply.status == 200, reply
    token: str = reply.body["token"]
    return token


def outbox_lines(cloud: CloudThread) -> list[dict[str, Any]]:
    return list(Outbox(cloud.server.config.data_dir / OUTBOX_FILE).lines())


def wait_for_line(
    cloud: CloudThread, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in outbox_lines(cloud):
            if predicate(line):
                return line
        time.sleep(0.02)
    raise AssertionError(f"no such outbox line within {timeout_s} s: {outbox_lines(cloud)}")


def captcha_answer(cloud: CloudThread, captcha_id: str) -> str:
    line = wait_for_line(cloud, lambda line: line["channel"] == "captcha" and line["to"] == captcha_id)
    code: str = line["code"]
    return code


def sms_code_for(cloud: CloudThread, phone: str, *, after: int = 0) -> str:
    """The code of the newest SMS to ``phone`` among the outbox lines from index ``after`` on."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        found = [line for line in outbox_lines(cloud)[after:] if line["channel"] == "sms" and line["to"] == phone]
        if found:
            code: str = found[-1]["code"]
            return code
        time.sleep(0.02)
    raise AssertionError(f"no SMS to {phone} in the outbox: {outbox_lines(cloud)}")


def user_with(
    cloud: CloudThread, appid: str, *, username: str, password: str, email: str | None = None, phone: str | None = None
) -> User:
    """A user as the sign-up endpoints leave one (username + password, then an email and a phone), made directly
    on the storage: sign-up by email and phone is another part's."""
    storage = cloud.storage
    user = cloud.call(storage.create_user(appid, username=username, password_hash=hash_password(password, FAST_KDF)))
    if email is not None:
        user = cloud.call(storage.update_user(user.uid, email=email))
    if phone is not None:
        user = cloud.call(storage.update_user(user.uid, phone=phone))
    return user
