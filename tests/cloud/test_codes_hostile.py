"""The code, app-token and reset endpoints against malformed, mistyped, oversized and hostile input: each refusal
is a Gizwits error body with the code of §3.12 (never 9008/500), and nothing is sent."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cloud.codes_helpers import (
    CloudFactory,
    app_token,
    new_app,
    outbox_lines,
    signature,
    start_cloud_fixture,  # noqa: F401
)
from tests.cloud.server_fixtures import CloudThread

PHONE = b'"phone": "13800000000"'

# Wrong for every endpoint: not a JSON object, or no usable phone.
MALFORMED: tuple[bytes, ...] = (
    b"",
    b"   ",
    b"{",
    b"{" + PHONE,
    b"[]",
    b'"phone"',
    b"null",
    b"12",
    b"\xff\xfe\x00",
    b'{"phone": NaN}',
    b'{"phone": 13800000000}',
    b'{"phone": ["13800000000"]}',
    b'{"phone": {"$ne": null}}',
    b'{"phone": true}',
    '{"phone": "138\u202e00000000"}'.encode(),  # bidi override
    '{"phone": "1380000\u200b0000"}'.encode(),  # zero-width space
    '{"phone": "\u0661\u0663\u0668\u0660\u0660\u0660\u0660\u0660"}'.encode(),  # Arabic-Indic digits
    b'{"phone": "13800000000\\u0000"}',
    b'{"phone": "+"}',
    b'{"phone": "1234"}',
    b'{"phone": "' + b"1" * 25 + b'"}',
    b'{"phone": "' + b"9" * 70_000 + b'"}',  # over the body limit
    b"{" + PHONE + b', "x": ' + b"[" * 200 + b"]" * 200 + b"}",  # nested too deep
)

# Wrong for one endpoint: its own fields mistyped, empty or too long.
MISTYPED: dict[tuple[str, str], tuple[bytes, ...]] = {
    ("POST", "/app/verify/codes"): (
        b"{" + PHONE + b"}",
        b"{" + PHONE + b', "captcha_id": 1, "captcha_code": "x"}',
        b"{" + PHONE + b', "captcha_id": "' + b"a" * 100 + b'", "captcha_code": "x"}',
        b"{" + PHONE + b', "captcha_id": "a", "captcha_code": 12345}',
        b"{" + PHONE + b', "captcha_id": "a", "captcha_code": ""}',
        b"{" + PHONE + b', "captcha_id": "\xc3\xa9 \xe2\x80\xae", "captcha_code": "x"}',
        b"{" + PHONE + b', "captcha_id": "a b", "captcha_code": "x"}',
        b"{" + PHONE + b', "captcha_id": "' + b"A" * 32 + b'", "captcha_code": "x"}',
    ),
    ("PUT", "/app/verify/codes"): (
        b"{" + PHONE + b"}",
        b"{" + PHONE + b', "sms_code": 123456}',
        b"{" + PHONE + b', "sms_code": ""}',
        b"{" + PHONE + b', "sms_code": "' + b"1" * 100 + b'"}',
    ),
    ("POST", "/app/sms_code"): (
        b"{" + PHONE + b', "code": 123456}',
        b"{" + PHONE + b', "code": ""}',
        b"{" + PHONE + b', "code": "' + b"1" * 100 + b'"}',
    ),
    ("POST", "/app/reset_password"): (
        b'{"email": "bob@bob.com\\r\\nBcc: eve@evil.org"}',
        b'{"email": "' + b"a" * 300 + b'@b.cd"}',
        b'{"email": ["bob@bob.com"]}',
        b"{" + PHONE + b', "code": 123456, "new_pwd": "something"}',
        b"{" + PHONE + b', "code": "1", "new_pwd": 123456}',
        b"{" + PHONE + b', "code": "1", "new_pwd": "' + b"p" * 2000 + b'"}',
    ),
}
MISTYPED[("POST", "/app/codes")] = MISTYPED[("POST", "/app/sms_code")]
MISTYPED[("PUT", "/app/reset_password")] = MISTYPED[("POST", "/app/reset_password")]


def headers_for(cloud: CloudThread) -> dict[str, str]:
    app = new_app(cloud)
    return {
        "Content-Type": "application/json",
        "X-Gizwits-Application-Id": app.appid,
        "X-Gizwits-Application-Token": app_token(cloud, app),
    }


def assert_refused(reply_status: int, body: object, where: str) -> None:
    assert 400 <= reply_status < 500, where
    assert isinstance(body, dict) and set(body) == {"error_code", "error_message", "detail_message"}, where
    assert body["error_code"] in (9003, 9004, 9009, 9010, 9015, 9038, 9041), where


def test_hostile_bodies_on_every_code_endpoint(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    headers = headers_for(cloud)
    for (method, path), mistyped in MISTYPED.items():
        for body in (*MALFORMED, *mistyped):
            reply = cloud.request(method, path, body, headers)
            assert_refused(reply.status, reply.body, f"{method} {path} {body[:60]!r} -> {reply}")
    assert not outbox_lines(cloud)  # nothing was sent


def test_hostile_headers(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    token = app_token(cloud, app)
    odd = ("x" * 8000, "é", "\t", "%00", "' OR 1=1 --", token + "0", token[1:])
    for value in odd:
        for name in ("X-Gizwits-Application-Auth", "X-Gizwits-Application-Id"):
            sent = {"X-Gizwits-Application-Id": app.appid, "X-Gizwits-Application-Auth": signature(app)}
            sent[name] = value
            reply = cloud.request("POST", "/app/request_token", None, sent)
            assert_refused(reply.status, reply.body, f"{name}={value[:20]!r} {reply}")
        sent = {"X-Gizwits-Application-Id": app.appid, "X-Gizwits-Application-Token": value}
        reply = cloud.request("GET", "/app/verify/codes", None, sent)
        assert_refused(reply.status, reply.body, f"token={value[:20]!r} {reply}")
    # The captcha picture: an id that is not one, or no such captcha: 9010; more path segments: no such path.
    for captcha_id in ("%00", "a" * 33, "A" * 32, "..", "%2e%2e%2f%2e%2e", "a" * 32):
        reply = cloud.request("GET", f"/captcha/image/{captcha_id}/")
        assert reply.status == 400 and reply.body["error_code"] == 9010, (captcha_id, reply)
    reply = cloud.request("GET", "/captcha/image/../../etc/passwd/")
    assert reply.status == 404 and reply.body["error_code"] == 9015, reply
    # Methods the endpoints do not take: the JSON error body, with Allow.
    reply = cloud.request("DELETE", "/app/verify/codes")
    assert reply.status == 405 and reply.body["error_code"] == 9015


def test_any_phone_and_code_text_is_answered_not_crashed(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()  # one cloud for every example: starting one per example would take minutes
    headers = headers_for(cloud)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(phone=st.text(max_size=40), code=st.one_of(st.none(), st.text(max_size=40)))
    def check(phone: str, code: str | None) -> None:
        body = {"phone": phone} if code is None else {"phone": phone, "code": code}
        reply = cloud.request("POST", "/app/sms_code", json.dumps(body).encode(), headers)
        assert reply.status in (200, 201, 400, 429), reply
        if reply.status >= 400:
            assert reply.body["error_code"] in (9009, 9010, 9015, 9041), reply

    check()
