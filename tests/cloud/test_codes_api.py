"""App tokens, captchas, SMS codes and password reset (cloud protocol §3.5-§3.7) as the user's seed document shows
them, with the codes and links read from the outbox; and their errors with the codes of §3.12.

The signature is computed here with hashlib from §3.5's words; captcha answers come from the outbox because the
cloud runs with the development switch (``--insecure-test-captcha``), the way a developer's script would.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import subprocess
import sys
import time
from typing import Any

from PIL import Image

from gizdev.cloud.codes import CodeBook, CodeSettings, Purpose
from gizdev.cloud.security import token_digest
from gizdev.cloud.throttle import Limit
from tests.cloud.codes_helpers import (
    AppKeys,
    CloudFactory,
    app_token,
    captcha_answer,
    new_app,
    outbox_lines,
    seed_call,
    signature,
    sms_code_for,
    start_cloud_fixture,  # noqa: F401
    user_with,
    wait_for_line,
)
from tests.cloud.server_fixtures import CloudThread, Reply
from tests.cloud.test_open_api_seed import assert_error
from tests.conftest import REPO_ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEED_PHONE = "123123123"  # the seed's example number


def login(cloud: CloudThread, appid: str, username: str, password: str) -> Reply:
    return cloud.api("POST", "/app/login", {"username": username, "password": password}, appid=appid)


def new_captcha(cloud: CloudThread, app: AppKeys, token: str) -> tuple[str, str]:
    reply = seed_call(cloud, "GET", "/app/verify/codes", appid=app.appid, app_token=token)
    assert reply.status == 200, reply
    return reply.body["captcha_id"], captcha_answer(cloud, reply.body["captcha_id"])


def send_with_captcha(cloud: CloudThread, app: AppKeys, token: str, phone: str) -> Reply:
    captcha_id, answer = new_captcha(cloud, app, token)
    body = json.dumps({"captcha_id": captcha_id, "captcha_code": answer, "phone": phone})
    return seed_call(cloud, "POST", "/app/verify/codes", appid=app.appid, app_token=token, body=body)


def raw_request(
    cloud: CloudThread, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, Any], str | None]:
    """Status, JSON body and the Retry-After header."""
    conn = http.client.HTTPConnection("127.0.0.1", cloud.http_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response.getheader("Retry-After")
    finally:
        conn.close()


def outbox_cli(cloud: CloudThread) -> list[dict[str, Any]]:
    """``gizdev cloud outbox`` on the running cloud's data dir, as a developer runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "gizdev.cli.main", "cloud", "outbox", "--data-dir", str(cloud.server.config.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- the seed's examples ------------------------------------------------------------------------------------------


def test_app_token_captcha_and_sms_code_as_in_the_seed(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    # 获取 App Token: POST, the app id and the signature, no body → 200 {"token", "expired_at"}.
    before = int(time.time())
    reply = seed_call(cloud, "POST", "/app/request_token", appid=app.appid, auth=signature(app))
    assert reply.status == 200, reply
    assert set(reply.body) == {"token", "expired_at"}  # expired_at, not expire_at (§3.5)
    token = reply.body["token"]
    assert isinstance(token, str) and len(token) >= 32
    assert before + 3600 <= reply.body["expired_at"] <= int(time.time()) + 7 * 24 * 3600
    # Kept as a digest only.
    assert cloud.call(cloud.storage.app_of_token(token_digest(token), now=int(time.time()))) == app.appid

    # 获取图片验证码: GET with the app token → {"captcha_url", "captcha_id"}; the URL is a PNG on this server.
    reply = seed_call(cloud, "GET", "/app/verify/codes", appid=app.appid, app_token=token)
    assert reply.status == 200, reply
    assert set(reply.body) == {"captcha_url", "captcha_id"}
    captcha_id, url = reply.body["captcha_id"], reply.body["captcha_url"]
    prefix = f"http://127.0.0.1:{cloud.http_port}/"
    assert url.startswith(prefix), url
    image = cloud.request("GET", url.removeprefix(prefix[:-1]))
    assert image.status == 200 and image.raw.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(image.raw)) as picture:
        assert picture.format == "PNG" and 100 <= picture.width <= 400 and 30 <= picture.height <= 200
        assert len(picture.convert("L").getcolors(256) or []) > 16  # drawn noise and strokes, not a flat image
    # Two captchas are two pictures and two answers.
    other_id, other_answer = new_captcha(cloud, app, token)
    assert other_id != captcha_id

    # 发送手机短信验证码: POST {captcha_id, captcha_code, phone} → 201; the code is in the outbox.
    answer = captcha_answer(cloud, captcha_id)
    assert answer != other_answer or len(answer) > 3
    body = json.dumps({"captcha_id": captcha_id, "captcha_code": answer.lower(), "phone": SEED_PHONE})
    reply = seed_call(cloud, "POST", "/app/verify/codes", appid=app.appid, app_token=token, body=body)
    assert reply.status == 201, reply
    lines = outbox_cli(cloud)
    sms = [line for line in lines if line["channel"] == "sms" and line["to"] == SEED_PHONE]
    assert len(sms) == 1 and sms[0]["code"].isdigit() and len(sms[0]["code"]) == 6
    assert sms[0]["code"] in sms[0]["text"] and set(sms[0]) == {"time", "channel", "to", "code", "text"}
    # The captcha was single use: its picture is gone and its answer no longer works.
    assert_error(cloud.request("GET", url.removeprefix(prefix[:-1])), 9010, 400)
    reuse = json.dumps({"captcha_id": captcha_id, "captcha_code": answer, "phone": "123123124"})
    again = seed_call(cloud, "POST", "/app/verify/codes", appid=app.appid, app_token=token, body=reuse)
    assert_error(again, 9010, 400)

    # 校验短信验证码: PUT {sms_code, phone} → 200; a right code is spent by the check (§3.6).
    check = json.dumps({"sms_code": sms[0]["code"], "phone": SEED_PHONE})
    reply = seed_call(cloud, "PUT", "/app/verify/codes", appid=app.appid, app_token=token, body=check)
    assert reply.status == 200, reply
    assert_error(seed_call(cloud, "PUT", "/app/verify/codes", appid=app.appid, app_token=token, body=check), 9010, 400)


def test_sms_code_endpoint_and_the_legacy_path(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    token = app_token(cloud, app)
    for path, phone in (("/app/sms_code", "+8613800000001"), ("/app/codes", "+8613800000002")):
        sent = seed_call(cloud, "POST", path, appid=app.appid, app_token=token, body=json.dumps({"phone": phone}))
        assert sent.status == 201 and sent.body == {}, sent
        code = sms_code_for(cloud, phone)
        wrong = str((int(code) + 1) % 1_000_000).zfill(6)
        bad = seed_call(
            cloud, "POST", path, appid=app.appid, app_token=token, body=json.dumps({"phone": phone, "code": wrong})
        )
        assert_error(bad, 9010, 400)
        # Separators are dropped (the canonical form of names.py), so the number as typed still matches.
        typed = phone[:6] + " " + phone[6:9] + "-" + phone[9:]
        good = seed_call(
            cloud, "POST", path, appid=app.appid, app_token=token, body=json.dumps({"phone": typed, "code": code})
        )
        assert good.status == 200 and good.body == {}, good
        reused = seed_call(
            cloud, "POST", path, appid=app.appid, app_token=token, body=json.dumps({"phone": phone, "code": code})
        )
        assert_error(reused, 9010, 400)


def test_reset_password_by_email_as_in_the_seed(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    bob = user_with(cloud, app.appid, username="bob", password="old-secret", email="bob@bob.com")
    old = login(cloud, app.appid, "bob", "old-secret")
    assert old.status == 200, old
    # 使用邮箱重置密码: POST {email} → 200, and a mail with a link.
    seed_body = '{\n    "email": "bob@bob.com"\n}'
    reply = seed_call(cloud, "POST", "/app/reset_password", appid=app.appid, body=seed_body)
    assert reply.status == 200 and reply.body == {}, reply
    mail = wait_for_line(cloud, lambda line: line["channel"] == "email" and line["to"] == "bob@bob.com")
    link = mail["link"]
    assert link in mail["text"] and link.startswith(f"http://127.0.0.1:{cloud.http_port}/reset_password/{bob.uid}/")
    path = link.removeprefix(f"http://127.0.0.1:{cloud.http_port}")
    # The old token works until the reset (and this request puts its session in the server's one-second cache).
    assert cloud.api("GET", "/app/users", appid=app.appid, token=old.body["token"]).status == 200
    page = cloud.request("GET", path)
    assert page.status == 200 and 'name="new_pwd"' in page.body and '<form method="post">' in page.body
    done = cloud.request("POST", path, b"new_pwd=n3w-s3cret%21", {"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 200 and "has been changed" in done.body, done
    assert_error(login(cloud, app.appid, "bob", "old-secret"), 9020, 400)
    assert login(cloud, app.appid, "bob", "n3w-s3cret!").status == 200
    assert_error(cloud.api("GET", "/app/users", appid=app.appid, token=old.body["token"]), 9004, 400)
    # The link worked once.
    assert cloud.request("GET", path).status == 410
    # An address without an account: the same answer, and no mail.
    unknown = seed_call(cloud, "POST", "/app/reset_password", appid=app.appid, body='{"email": "nobody@bob.com"}')
    assert (unknown.status, unknown.body) == (reply.status, reply.body)
    # Mixed case and spaces are the same address (names.py), so Bob gets a second mail.
    seed_call(cloud, "PUT", "/app/reset_password", appid=app.appid, body='{"email": " Bob@BOB.com"}')
    wait_for_line(cloud, lambda line: line["channel"] == "email" and line.get("link") not in (None, link))
    assert not [line for line in outbox_lines(cloud) if line["to"] == "nobody@bob.com"]


def test_reset_password_by_phone_as_in_the_seed(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    token = app_token(cloud, app)
    user_with(cloud, app.appid, username="carol", password="old-secret", phone="13232433")
    old = login(cloud, app.appid, "carol", "old-secret")
    # "使用手机号重置密码需要先调用一次获取短信验证码的接口": get a code first.
    assert send_with_captcha(cloud, app, token, "13232433").status == 201
    code = sms_code_for(cloud, "13232433")
    assert cloud.api("GET", "/app/users", appid=app.appid, token=old.body["token"]).status == 200  # now cached
    # The seed's body has a stray quote ("13232',); this is the same body as valid JSON.
    body = json.dumps({"phone": "13232433", "code": code, "new_pwd": "1323200"})
    reply = seed_call(cloud, "POST", "/app/reset_password", appid=app.appid, body=body)
    assert reply.status == 200 and reply.body == {}, reply
    assert login(cloud, app.appid, "carol", "1323200").status == 200
    assert_error(login(cloud, app.appid, "carol", "old-secret"), 9020, 400)
    assert_error(cloud.api("GET", "/app/users", appid=app.appid, token=old.body["token"]), 9004, 400)
    # The code was spent; the old SDK's PUT with it again is refused.
    assert_error(seed_call(cloud, "PUT", "/app/reset_password", appid=app.appid, body=body), 9010, 400)
    # A number without an account, with a right code: the same answer.
    assert send_with_captcha(cloud, app, token, "13232434").status == 201
    stranger = json.dumps({"phone": "13232434", "code": sms_code_for(cloud, "13232434"), "new_pwd": "1323200"})
    same = seed_call(cloud, "PUT", "/app/reset_password", appid=app.appid, body=stranger)
    assert (same.status, same.body) == (reply.status, reply.body)
    # A password the policy refuses is refused before the code is spent.
    assert send_with_captcha(cloud, app, token, "+4915100000000").status == 201
    code = sms_code_for(cloud, "+4915100000000")
    short = json.dumps({"phone": "+4915100000000", "code": code, "new_pwd": "123"})
    assert_error(seed_call(cloud, "POST", "/app/reset_password", appid=app.appid, body=short), 9015, 400)
    check = json.dumps({"phone": "+4915100000000", "sms_code": code})
    assert seed_call(cloud, "PUT", "/app/verify/codes", appid=app.appid, app_token=token, body=check).status == 200


def test_a_verified_code_is_spent_so_the_flow_sends_it_once(start_cloud: CloudFactory) -> None:
    """The decision of codes.py: PUT /app/verify/codes spends a right code (§3.6), so an app that verifies first
    cannot then reset (or sign up) with the same code; it sends the code to that call directly."""
    cloud = start_cloud()
    app = new_app(cloud)
    token = app_token(cloud, app)
    user_with(cloud, app.appid, username="dave", password="old-secret", phone="+8613900000000")
    assert send_with_captcha(cloud, app, token, "+8613900000000").status == 201
    code = sms_code_for(cloud, "+8613900000000")
    check = json.dumps({"phone": "+8613900000000", "sms_code": code})
    assert seed_call(cloud, "PUT", "/app/verify/codes", appid=app.appid, app_token=token, body=check).status == 200
    reset = json.dumps({"phone": "+8613900000000", "code": code, "new_pwd": "brand-new"})
    assert_error(seed_call(cloud, "POST", "/app/reset_password", appid=app.appid, body=reset), 9010, 400)
    assert login(cloud, app.appid, "dave", "old-secret").status == 200


# -- errors ---------------------------------------------------------------------------------------------------------


def test_bad_signatures_and_app_tokens(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app, other = new_app(cloud), new_app(cloud)
    for auth in (None, "", signature(other), signature(app).upper(), signature(app)[:-1], "x" * 5000, "é" * 32):
        headers = {"X-Gizwits-Application-Id": app.appid}
        if auth is not None:
            headers["X-Gizwits-Application-Auth"] = auth
        assert_error(cloud.request("POST", "/app/request_token", None, {**headers}), 9038, 400)
    # md5(appsecret + appid), the wrong order, is not the signature either.
    swapped = hashlib.md5((app.appsecret + app.appid).encode(), usedforsecurity=False).hexdigest()
    assert_error(seed_call(cloud, "POST", "/app/request_token", appid=app.appid, auth=swapped), 9038, 400)
    # Another app's valid signature under this app's id: 9038; under its own id it works.
    assert seed_call(cloud, "POST", "/app/request_token", appid=other.appid, auth=signature(other)).status == 200
    # An unknown app id: 9003 before any signature is looked at.
    assert_error(seed_call(cloud, "POST", "/app/request_token", appid="f" * 32, auth=signature(app)), 9003, 400)

    token, other_token = app_token(cloud, app), app_token(cloud, other)
    expired = "e" * 32
    cloud.call(cloud.storage.store_app_token(token_digest(expired), app.appid, int(time.time()) - 1))
    for path, method in (("/app/verify/codes", "GET"), ("/app/sms_code", "POST"), ("/app/codes", "POST")):
        body = None if method == "GET" else '{"phone": "13800000000"}'
        for bad in (None, "", "0" * 32, other_token, expired, "t" * 200, token.upper()):
            reply = seed_call(cloud, method, path, appid=app.appid, app_token=bad, body=body)
            assert_error(reply, 9004, 400)
        # A user token is not an application token.
        user_token = cloud.api("POST", "/app/users", {"phone_id": "someone"}, appid=app.appid).body["token"]
        as_user = cloud.request(
            method,
            path,
            None if body is None else body.encode(),
            {"X-Gizwits-Application-Id": app.appid, "X-Gizwits-User-token": user_token},
        )
        assert_error(as_user, 9004, 400)
    assert not [line for line in outbox_lines(cloud) if line["channel"] == "sms"]  # nothing was sent
    assert seed_call(cloud, "GET", "/app/verify/codes", appid=app.appid, app_token=token).status == 200


def test_wrong_expired_and_reused_codes(start_cloud: CloudFactory) -> None:
    cloud = start_cloud()
    app = new_app(cloud)
    token = app_token(cloud, app)

    def put(phone: str, code: str) -> Reply:
        body = json.dumps({"phone": phone, "sms_code": code})
        return seed_call(cloud, "PUT", "/app/verify/codes", appid=app.appid, app_token=token, body=body)

    # A wrong captcha: 9010, and the captcha is spent by the one try (the right answer fails afterwards).
    captcha_id, answer = new_captcha(cloud, app, token)
    wrong = "".join("A" if char != "A" else "C" for char in answer)
    body = {"captcha_id": captcha_id, "captcha_code": wrong, "phone": "13800000001"}

    def post(value: dict[str, str]) -> Reply:
        text = json.dumps(value)
        return seed_call(cloud, "POST", "/app/verify/codes", appid=app.appid, app_token=token, body=text)

    assert_error(post(body), 9010, 400)
    assert_error(post({**body, "captcha_code": answer, "phone": "13800000002"}), 9010, 400)
    assert_error(post({**body, "captcha_id": "0" * 32, "phone": "13800000003"}), 9010, 400)  # no such captcha
    assert_error(post({**body, "captcha_id": "not one of ours", "phone": "13800000003"}), 9010, 400)
    # An expired captcha.
    stale_id = "ab" * 16
    cloud.call(
        CodeBook(cloud.storage).issue_text(Purpose.CAPTCHA, stale_id, "KEY42", ttl_s=600, now=int(time.time()) - 601)
    )
    assert_error(post({"captcha_id": stale_id, "captcha_code": "KEY42", "phone": "13800000004"}), 9009, 400)
    assert not [line for line in outbox_lines(cloud) if line["channel"] == "sms"]  # no code went out

    # An expired SMS code: 9009; a right one once, then 9010; a wrong one 9010.
    stale = cloud.call(CodeBook(cloud.storage).issue(Purpose.SMS, "13800000005", ttl_s=60, now=int(time.time()) - 61))
    assert_error(put("13800000005", stale), 9009, 400)
    fresh_id, fresh_answer = new_captcha(cloud, app, token)
    assert post({"captcha_id": fresh_id, "captcha_code": fresh_answer, "phone": "13800000006"}).status == 201
    code = sms_code_for(cloud, "13800000006")
    assert_error(put("13800000006", "000000" if code != "000000" else "111111"), 9010, 400)
    assert put("13800000006", code).status == 200
    assert_error(put("13800000006", code), 9010, 400)
    # The code is for that phone only.
    assert_error(put("13800000007", code), 9010, 400)


class FrozenClock:
    """The cloud's clock for the throttling test: it moves only when the test says (no race with the wall clock)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_codes_sent_are_throttled_per_phone_and_per_address(start_cloud: CloudFactory) -> None:
    codes = CodeSettings(
        insecure_test_captcha=True, sms_interval_s=60, sms_per_phone=Limit(2, 3600), sms_per_address=Limit(4, 3600)
    )
    clock = FrozenClock()
    cloud = start_cloud(codes=codes, clock=clock)
    app = new_app(cloud)
    token = app_token(cloud, app)
    headers = {
        "Content-Type": "application/json",
        "X-Gizwits-Application-Id": app.appid,
        "X-Gizwits-Application-Token": token,
    }

    def send(phone: str) -> tuple[int, dict[str, Any], str | None]:
        return raw_request(cloud, "POST", "/app/sms_code", json.dumps({"phone": phone}).encode(), headers)

    def assert_throttled(answer: tuple[int, dict[str, Any], str | None], low: int, high: int) -> None:
        status, body, retry_after = answer
        assert (status, body["error_code"]) == (429, 9041), answer
        assert retry_after is not None and low <= int(retry_after) <= high, answer

    assert send("13700000001")[0] == 201
    # Per phone, at most one a minute, whichever endpoint asks and however it is typed.
    assert_throttled(send("13700000001"), 60, 60)
    assert_error(send_with_captcha(cloud, app, token, "137-0000-0001"), 9041, 429)
    clock.now += 61
    assert send("13700000001")[0] == 201
    clock.now += 61
    assert_throttled(send("+13700000001".removeprefix("+")), 3000, 3600)  # two an hour per phone here
    # Per address: four an hour here, whatever the numbers (refused attempts do not count).
    assert [send(phone)[0] for phone in ("13700000002", "13700000003")] == [201, 201]
    assert_throttled(send("13700000004"), 3000, 3600)
    assert len([line for line in outbox_lines(cloud) if line["channel"] == "sms"]) == 4


def test_app_tokens_are_throttled_per_address(start_cloud: CloudFactory) -> None:
    cloud = start_cloud(codes=CodeSettings(app_tokens_per_address=Limit(3, 3600), failures_per_address=Limit(2, 600)))
    app = new_app(cloud)
    assert [seed_call(cloud, "POST", "/app/request_token", appid=app.appid, auth=signature(app)).status
            for _ in range(3)] == [200, 200, 200]  # fmt: skip
    assert_error(seed_call(cloud, "POST", "/app/request_token", appid=app.appid, auth=signature(app)), 9041, 429)
    # Wrong signatures are counted on their own: two allowed here, then 9041 even for the right one.
    other = new_app(cloud)
    for _ in range(2):
        assert_error(seed_call(cloud, "POST", "/app/request_token", appid=other.appid, auth="0" * 32), 9038, 400)
    assert_error(seed_call(cloud, "POST", "/app/request_token", appid=other.appid, auth=signature(other)), 9041, 429)
