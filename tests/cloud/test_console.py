"""The web console's HTTP side (``/console/``, gizdev.cloud.http.console): its security headers, that no secret is
in what it serves, the app list, and the control check that sends nothing. The browser tests are in
test_console_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from gizdev.cloud.http.console import STATIC_DIR
from gizdev.loopback import is_loopback_host
from tests.cloud.broker_fixtures import wait_until_async
from tests.cloud.realtime_helpers import PK, connected_device, new_user, register
from tests.cloud.server_fixtures import CloudThread, Reply, make_cloud, world_searchable_dir
from tests.guards import run

ASSET_REF = re.compile(r"""(?:src|href)="([^"#:]+)"|from\s+"\./([^"]+)"|import\s+"\./([^"]+)\"""")


def console_files(cloud: CloudThread) -> dict[str, Reply]:
    """Every file the console's page loads, found by following its references from index.html."""
    found: dict[str, Reply] = {}
    todo = ["/console/"]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        reply = cloud.request("GET", path)
        assert reply.status == 200, (path, reply.status)
        found[path] = reply
        text = reply.raw.decode()
        for match in ASSET_REF.finditer(text):
            name = next(group for group in match.groups() if group)
            todo.append(f"/console/{name.removeprefix('./')}")
    return found


def test_every_console_response_has_the_security_headers(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    files = console_files(cloud)
    # Everything shipped is reachable from the page, and the page needs nothing that is not shipped.
    assert {path.rsplit("/", 1)[1] or "index.html" for path in files} == {p.name for p in STATIC_DIR.iterdir()}
    answers = [
        *((path, reply) for path, reply in files.items()),
        ("/console/no-such-file.js", cloud.request("GET", "/console/no-such-file.js")),
        ("/console/api/apps", cloud.request("GET", "/console/api/apps")),
        ("/console/api/devices/x/check", cloud.api("POST", "/console/api/devices/x/check", {}, appid=appid)),
        ("/console", cloud.request("GET", "/console")),
    ]
    for path, reply in answers:
        headers = cloud_headers(cloud, path, reply)
        csp = headers["content-security-policy"]
        directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
        assert directives["default-src"] == "'self'", path
        assert directives["script-src"] == "'self'", path  # no inline scripts, no eval
        assert directives["connect-src"] == "'self' ws: wss:", path
        assert directives["frame-ancestors"] == "'none'", path
        assert "unsafe" not in csp, path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
    # Nothing inline in the page itself: every script is a file of its own.
    index = files["/console/"].raw.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", index) == []
    assert " on" not in re.sub(r"<script[^>]*>", "", index).replace("\n", " ").split("<body", 1)[1].split("=")[0]
    # The rest of the API is not the console's: it keeps its own headers.
    assert "content-security-policy" not in cloud_headers(cloud, "/errors", None)


def cloud_headers(cloud: CloudThread, path: str, reply: Reply | None) -> dict[str, str]:
    """The response headers of GET/POST ``path`` (Reply keeps only the body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", cloud.http_port, timeout=10)
    try:
        method = "POST" if path.endswith("/check") else "GET"
        conn.request(method, path, body=b"{}" if method == "POST" else None)
        response = conn.getresponse()
        response.read()
        if reply is not None:
            assert response.status == reply.status, path
        return {name.lower(): value for name, value in response.getheaders()}
    finally:
        conn.close()


def test_no_secret_in_what_the_console_serves(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    _, product_secret = cloud.add_product()
    app_secret = next(app.appsecret for app in cloud.call(cloud.storage.list_apps()) if app.appid == appid)
    did = register(cloud, "a1b2c3d4e5f6", "PASSCODE01")
    _, token = new_user(cloud, appid, "carol", (did, "PASSCODE01"))
    listed = cloud.request("GET", "/console/api/apps")
    for path, reply in console_files(cloud).items():
        text = reply.raw.decode()
        for secret in (app_secret, product_secret, token, "PASSCODE01", appid):
            assert secret not in text, path
        lowered = text.lower()
        assert "appsecret" not in lowered and "product_secret" not in lowered and "app_secret" not in lowered, path
        # No credential-looking literal: a long hex or base64 run is what a pasted key or token looks like.
        assert not re.search(r"\b[0-9a-f]{24,}\b", lowered), path
        assert not re.search(r"""["'`][A-Za-z0-9+/_-]{32,}={0,2}["'`]""", text), path
    for secret in (app_secret, product_secret, token, "PASSCODE01"):
        assert secret not in listed.raw.decode()
    # The list has the app ids and names only: nothing else of an app (its secret, its products).
    assert listed.body == {
        "listed": True,
        "apps": [{"appid": app.appid, "name": app.name} for app in cloud.call(cloud.storage.list_apps())],
    }
    # A session never becomes a cookie: sign-in answers set none.
    assert "set-cookie" not in cloud_headers(cloud, "/console/", None)


def test_the_app_list_can_be_switched_off(mosquitto_binary: str) -> None:
    base = world_searchable_dir()
    cloud = make_cloud(
        f"sqlite+aiosqlite:///{base / 'cloud.db'}",
        base / "data",
        mosquitto_binary=mosquitto_binary,
        console_app_list=False,
    )
    try:
        cloud.add_app()
        assert cloud.request("GET", "/console/api/apps").body == {"listed": False, "apps": []}
        assert cloud.request("GET", "/console/").status == 200  # the console itself still works: ids are typed
    finally:
        cloud.close()
        shutil.rmtree(base, ignore_errors=True)


def test_paths_outside_the_shipped_files_are_not_served(cloud: CloudThread) -> None:
    for path in (
        "/console/../pyproject.toml",
        "/console/%2e%2e/%2e%2e/etc/passwd",
        "/console/..%2fhttp%2fconsole.py",
        "/console/.hidden",
        "/console/__init__.py",
        "/console/app.js/",
        "/console/" + "a" * 5000,
    ):
        reply = cloud.request("GET", path)
        assert reply.status in (404, 400), (path, reply.status)
        if reply.status == 404:
            assert reply.body["error_code"] == 9015, path
    assert cloud.request("POST", "/console/app.js").status == 405
    assert cloud.request("DELETE", "/console/api/apps").status == 405
    moved = cloud_headers(cloud, "/console", None)
    assert moved["location"] == "/console/"


def test_the_check_makes_the_control_checks_and_sends_nothing(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud, "0a0b0c0d0e0f", "PASSCODE02")
    other = register(cloud, "0a0b0c0d0e10", "PASSCODE03")
    _, token = new_user(cloud, appid, "dave", (did, "PASSCODE02"))
    path = f"/console/api/devices/{did}/check"

    async def scenario() -> None:
        device = await connected_device(cloud, did, "PASSCODE02", PK)
        try:
            bus = cloud.server.bus
            assert bus is not None
            await wait_until_async(lambda: bus.is_online(did), 5, "the device online")  # /app/control delivers now

            def post(attrs: object, target: str = path, token: str | None = token) -> Reply:
                return cloud.api("POST", target, {"attrs": attrs}, appid=appid, token=token)

            assert (await asyncio.to_thread(post, {"temp": 50})).body == {}
            bad = await asyncio.to_thread(post, {"temp": 101})
            control = await asyncio.to_thread(post, {"temp": 101}, f"/app/control/{did}")
            assert bad.status == control.status == 400
            assert bad.body == control.body and bad.body["error_code"] == 9025  # the very answer /app/control gives
            for attrs, code in (({"nope": 1}, 9025), ({"temp": "x"}, 9025), ({}, 9015), ([1], 9015), (None, 9015)):
                assert (await asyncio.to_thread(post, attrs)).body["error_code"] == code, attrs
            assert (await asyncio.to_thread(post, {"temp": 1}, f"/console/api/devices/{other}/check")).body[
                "error_code"
            ] == 9017
            assert (await asyncio.to_thread(post, {"temp": 1}, "/console/api/devices/nosuch/check")).body[
                "error_code"
            ] == 9014
            assert (await asyncio.to_thread(post, {"temp": 1}, token=None)).body["error_code"] == 9004
            assert (await asyncio.to_thread(post, {"temp": 1}, token="x" * 40)).body["error_code"] == 9004
            for body in (b"{", b"[]", b"\xff", json.dumps({"attrs": {"temp": 1}, "x": "y" * 70000}).encode()):
                headers = {"X-Gizwits-Application-Id": appid, "X-Gizwits-User-token": token}
                reply = await asyncio.to_thread(
                    cloud.request, "POST", path, body, {**headers, "Content-Type": "application/json"}
                )
                assert reply.status in (400, 413) and reply.body["error_code"] == 9015, body[:20]
            # None of it reached the device (the one /app/control above was refused before sending, too) ...
            with pytest.raises(TimeoutError):
                await device.read_publish(0.5)
            # ... which a control that passes the same checks does reach.
            assert (await asyncio.to_thread(post, {"temp": 50}, f"/app/control/{did}")).status == 200
            topic, _payload = await device.read_publish(5)
            assert topic.startswith(f"app2dev/{did}/")
        finally:
            await device.close()

    run(scenario(), 60)


def test_presence_of_a_users_own_devices_only(cloud: CloudThread) -> None:
    appid = cloud.add_app()
    cloud.add_product()
    did = register(cloud, "0a0b0c0d0e21", "PASSCODE04")
    other = register(cloud, "0a0b0c0d0e22", "PASSCODE05")
    _, token = new_user(cloud, appid, "frank", (did, "PASSCODE04"))

    def presence(target: str, **headers: str) -> Reply:
        return cloud.api("GET", f"/console/api/devices/{target}/presence", appid=appid, headers=headers, token=token)

    assert presence(did).body == {"did": did, "is_online": False, "last_seen": 0, "online_changed_at": 0}

    async def heard() -> None:
        device = await connected_device(cloud, did, "PASSCODE04", PK)
        await device.close()

    before = int(time.time())
    run(heard())
    deadline = time.monotonic() + 5
    while cloud.call(cloud.storage.get_device(did)).last_seen is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the bus notes the connection as the broker reports it
    seen = presence(did).body
    row = cloud.call(cloud.storage.get_device(did))
    assert seen["last_seen"] == row.last_seen and (row.last_seen or 0) >= before
    assert seen["online_changed_at"] == (row.online_changed_at or 0)
    assert presence(other).body["error_code"] == 9017
    for hostile in ("x" * 3000, "%00", "%E2%82%AC" * 10, "..", "%2F"):
        assert presence(hostile).body["error_code"] in (9014, 9015), hostile
    assert presence("nosuchdevice").body["error_code"] == 9014
    assert cloud.api("GET", f"/console/api/devices/{did}/presence", appid=appid).body["error_code"] == 9004
    assert cloud.api("GET", f"/console/api/devices/{did}/presence").body["error_code"] == 9003


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("::", False),
     ("", False), ("192.168.1.20", False), ("fe80::1", False), ("example.org", False)],
)  # fmt: skip
def test_the_app_list_is_for_loopback_listeners_only(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_the_console_is_package_data() -> None:
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"cloud/console/*"' in pyproject
    assert STATIC_DIR.is_dir() and (STATIC_DIR / "index.html").is_file()
