"""The page a reset mail links to (cloud protocol §3.7): its form, its headers, one use per link, expired and
unknown links, and hostile form bodies, which must neither change the password nor spend the link."""

from __future__ import annotations

import http.client
import logging
import secrets
import time
from urllib.parse import quote

import pytest

from gizdev.cloud.codes import CodeBook, Purpose
from tests.cloud.codes_helpers import (
    CloudFactory,
    new_app,
    outbox_lines,
    seed_call,
    start_cloud_fixture,  # noqa: F401
    user_with,
    wait_for_line,
)
from tests.cloud.server_fixtures import CloudThread, Reply
from tests.cloud.test_open_api_seed import assert_error

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def mailed_link(cloud: CloudThread, appid: str, email: str) -> str:
    """Ask for a reset mail; the path of the link it carries."""
    known = {line.get("link") for line in outbox_lines(cloud)}
    assert seed_call(cloud, "POST", "/app/reset_password", appid=appid, body=f'{{"email": "{email}"}}').status == 200
    line = wait_for_line(cloud, lambda line: line["to"] == email and line.get("link") not in known)
    link: str = line["link"]
    return link.removeprefix(f"http://127.0.0.1:{cloud.http_port}")


def post_form(cloud: CloudThread, path: str, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return cloud.request("POST", path, body, headers or FORM)


def login_status(cloud: CloudThread, appid: str, username: str, password: str) -> int:
    reply = cloud.api("POST", "/app/login", {"username": username, "password": password}, appid=appid)
    return reply.status


def test_the_page_is_a_locked_down_form(start_cloud: CloudFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    cloud = start_cloud()
    app = new_app(cloud)
    user_with(cloud, app.appid, username="erin", password="old-secret", email="erin@example.org")
    path = mailed_link(cloud, app.appid, "erin@example.org")
    conn = http.client.HTTPConnection("127.0.0.1", cloud.http_port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        page = response.read().decode()
        headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        conn.close()
    assert response.status == 200
    assert headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer" and "no-store" in headers["cache-control"]
    assert "<script" not in page.lower() and " on" not in page.lower().replace(" one", "")  # no handlers
    assert '<form method="post">' in page and 'name="new_pwd"' in page and 'type="password"' in page
    # Looking at the page twice spends nothing (mail scanners open links).
    assert cloud.request("GET", path).status == 200
    assert post_form(cloud, path, b"new_pwd=erins-new-one").status == 200
    assert login_status(cloud, app.appid, "erin", "erins-new-one") == 200
    # The access log shows the page's visits, not its token.
    token = path.rsplit("/", 1)[1]
    visits = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert sum("/reset_password/…" in line for line in visits) == 3
    assert not [line for line in visits if token in line]


def test_used_expired_unknown_and_other_links_are_refused(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    frank = user_with(cloud, app.appid, username="frank", password="old-secret", email="frank@example.org")
    grace = user_with(cloud, app.appid, username="grace", password="old-secret", email="grace@example.org")
    first = mailed_link(cloud, app.appid, "frank@example.org")
    second = mailed_link(cloud, app.appid, "frank@example.org")
    assert first != second
    assert post_form(cloud, first, b"new_pwd=franks-first").status == 200
    # Used: the page says so, and a post changes nothing. Using one link spends the user's other live links too.
    for path in (first, second):
        page = cloud.request("GET", path)
        assert page.status == 410 and "used" in page.body, page
        refused = post_form(cloud, path, b"new_pwd=franks-second")
        assert refused.status == 410 and "<form" not in refused.body
    assert login_status(cloud, app.appid, "frank", "franks-first") == 200
    # Expired (made an hour and a second ago with an hour's lifetime).
    token = secrets.token_urlsafe(32)
    book = CodeBook(cloud.storage)
    cloud.call(book.issue_text(Purpose.RESET_LINK, grace.uid, token, ttl_s=3600, now=int(time.time()) - 3601))
    expired = f"/reset_password/{grace.uid}/{token}"
    page = cloud.request("GET", expired)
    assert page.status == 410 and "expired" in page.body
    assert post_form(cloud, expired, b"new_pwd=graces-new-one").status == 410
    # Unknown: a token never issued, and Frank's live token under Grace's uid.
    live = mailed_link(cloud, app.appid, "frank@example.org")
    swapped = live.replace(frank.uid, grace.uid)
    for path in (f"/reset_password/{grace.uid}/{secrets.token_urlsafe(32)}", swapped):
        assert cloud.request("GET", path).status == 404
        assert post_form(cloud, path, b"new_pwd=graces-new-one").status == 404
    assert login_status(cloud, app.appid, "grace", "old-secret") == 200
    # Wrong guesses at Grace's links did not spend Frank's live one.
    assert cloud.request("GET", live).status == 200
    # Mangled links get the page's "not valid", with nothing of the link in it.
    for path in ("/reset_password/x/y", f"/reset_password/{grace.uid}/%3Cscript%3Ealert(1)%3C%2Fscript%3E"):
        reply = cloud.request("GET", path)
        assert reply.status == 404 and "not valid" in reply.body and "<script" not in reply.body, reply
    reply = cloud.request("GET", "/reset_password/")
    assert reply.status == 404 and reply.body["error_code"] == 9015, reply


def test_hostile_form_bodies_change_nothing(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    user_with(cloud, app.appid, username="heidi", password="old-secret", email="heidi@example.org")
    path = mailed_link(cloud, app.appid, "heidi@example.org")
    hostile: list[tuple[bytes, dict[str, str]]] = [
        (b"", FORM),
        (b"new_pwd", FORM),
        (b"other=1", FORM),
        (b"new_pwd=a&new_pwd=b", FORM),  # twice
        (b"new_pwd=%00%00%00%00%00%00", FORM),  # NUL
        ("new_pwd=pässwörd".encode(), FORM),  # raw UTF-8, not percent-encoded
        (b"\xff\xfe=\xff", FORM),
        (b"&".join(b"f%d=1" % n for n in range(40)), FORM),  # too many fields
        (b"new_pwd=" + b"a" * 70_000, FORM),  # over the body limit
        (b"new_pwd=" + b"a" * 2000, FORM),  # over the field limit
        (b'{"new_pwd": "json-instead"}', {"Content-Type": "application/json"}),
        (b"new_pwd=%ZZ%", FORM),
    ]
    for body, headers in hostile:
        reply = post_form(cloud, path, body, headers)
        assert 400 <= reply.status < 500, (body[:40], reply)
        if isinstance(reply.body, dict):
            assert reply.body["error_code"] == 9015
    # Too short for the policy: the form again, with the reason, escaped; nothing spent.
    short = post_form(cloud, path, b"new_pwd=%3Cb%3E")
    assert short.status == 422 and "<form" in short.body and "at least 6" in short.body
    assert "<b>" not in short.body
    assert login_status(cloud, app.appid, "heidi", "old-secret") == 200
    assert cloud.request("GET", path).status == 200
    # A password of markup and quotes is only a password.
    tricky = "\"'><script>alert(1)</script>"
    done = post_form(cloud, path, f"new_pwd={quote(tricky)}".encode())
    assert done.status == 200 and "<script>" not in done.body
    assert login_status(cloud, app.appid, "heidi", tricky) == 200


def test_reset_requests_refuse_what_is_not_one_variant(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    for body in (
        "{}",
        '{"email": "a@b.cd", "phone": "13800000000"}',
        '{"email": "a@b.cd", "new_pwd": "something"}',
        '{"phone": "13800000000", "code": "123456"}',
        '{"phone": "13800000000", "new_pwd": "something"}',
        '{"email": "not an address"}',
        '{"email": 12}',
        '{"phone": 13800000000, "code": "1", "new_pwd": "something"}',
        '{"phone": "138\\u202e00000000", "code": "1", "new_pwd": "something"}',
        '{"email": "a\\u200b@b.cd"}',
        "[]",
        '{"email": "a@b.cd"',
        "not json",
    ):
        assert_error(seed_call(cloud, "POST", "/app/reset_password", appid=app.appid, body=body), 9015, 400)
    assert_error(cloud.request("POST", "/app/reset_password", b'{"email": "a@b.cd"}', {}), 9003, 400)
