"""Storage of accounts (email, phone, profile), one-time codes and throttling; SQLite and PostgreSQL (``db_url``)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gizdev.cloud.codes import MAX_FAILURES, CodeBook, Purpose
from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.messages import Message, Outbox, OutboxSender
from gizdev.cloud.storage import AlreadyExists, InvalidInput, NotFound, Storage
from gizdev.cloud.throttle import Limit, Throttle, Throttled
from tests.cloud.test_storage import APPID, Clock, run
from tests.guards import run as guarded_run

HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


async def _app(storage: Storage) -> None:
    await storage.add_app(APPID, "secret", "test app")


def test_users_by_email_and_phone_are_unique_per_app(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await _app(storage)
        by_mail = await storage.create_user(APPID, email="ann@example.org", password_hash=HASH)
        by_phone = await storage.create_user(APPID, phone="+8613800000000")  # password-less phone user
        assert (by_mail.email, by_mail.phone, by_mail.is_anonymous) == ("ann@example.org", None, False)
        assert by_phone.password_hash is None and by_phone.phone == "+8613800000000"
        assert (await storage.find_user(APPID, "email", "ann@example.org")).uid == by_mail.uid
        assert (await storage.find_user(APPID, "phone", "+8613800000000")).uid == by_phone.uid
        with pytest.raises(AlreadyExists):
            await storage.create_user(APPID, email="ann@example.org", password_hash=HASH)
        with pytest.raises(NotFound):
            await storage.find_user(APPID, "email", "bob@example.org")
        with pytest.raises(InvalidInput):
            await storage.find_user(APPID, "password_hash", HASH)
        with pytest.raises(InvalidInput):  # an email user without a password
            await storage.create_user(APPID, email="carl@example.org")
        with pytest.raises(InvalidInput):  # two names at once
            await storage.create_user(APPID, email="dora@example.org", username="dora", password_hash=HASH)

    run(db_url, body)


def test_update_user_converts_an_anonymous_account_and_refuses_a_taken_name(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await _app(storage)
        taken = await storage.create_user(APPID, username="taken", password_hash=HASH)
        anonymous = await storage.create_user(APPID, phone_id="device-uuid")
        with pytest.raises(AlreadyExists):
            await storage.update_user(anonymous.uid, username="taken", password_hash=HASH)
        assert (await storage.get_user_by_uid(anonymous.uid)).username is None  # the refused change left nothing
        updated = await storage.update_user(
            anonymous.uid, username="ann", password_hash=HASH, phone_id=None, is_anonymous=False, name="Ann"
        )
        assert (updated.uid, updated.username, updated.phone_id, updated.is_anonymous, updated.name) == (
            anonymous.uid,
            "ann",
            None,
            False,
            "Ann",
        )
        with pytest.raises(NotFound):
            await storage.get_user_by_phone(APPID, "device-uuid")
        with pytest.raises(InvalidInput):
            await storage.update_user(taken.uid, is_disabled="1")
        with pytest.raises(NotFound):
            await storage.update_user("0" * 32, name="x")

    run(db_url, body)


def test_delete_tokens_keeps_the_one_named(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await _app(storage)
        user = await storage.create_user(APPID, username="ann", password_hash=HASH)
        digests = [f"{n:064x}" for n in range(1, 4)]
        for digest in digests:
            await storage.store_token(digest, user.uid, APPID, clock.now + 100)
        assert await storage.delete_tokens(user.uid, keep=digests[0]) == 2
        assert await storage.lookup_token(digests[0]) is not None
        assert await storage.lookup_token(digests[1]) is None
        assert await storage.delete_token(digests[0]) is True
        assert await storage.delete_token(digests[0]) is False

    run(db_url, body)


def test_codes_are_single_use_expire_and_die_after_wrong_guesses(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        book = CodeBook(storage)
        phone = "+8613800000000"
        code = await book.issue(Purpose.SMS, phone, ttl_s=60, now=clock.now)
        assert len(code) == 6 and code.isdigit()
        with pytest.raises(ApiError) as wrong:
            await book.use(Purpose.SMS, phone, "x" + code[1:])
        assert wrong.value.code == Code.CODE_INVALID
        with pytest.raises(ApiError) as other_purpose:
            await book.use(Purpose.CAPTCHA, phone, code)
        assert other_purpose.value.code == Code.CODE_INVALID
        await book.use(Purpose.SMS, phone, code)
        with pytest.raises(ApiError) as reused:
            await book.use(Purpose.SMS, phone, code)
        assert reused.value.code == Code.CODE_INVALID

        late = await book.issue(Purpose.SMS, phone, ttl_s=60, now=clock.now)
        clock.now += 61
        with pytest.raises(ApiError) as expired:
            await book.use(Purpose.SMS, phone, late)
        assert expired.value.code == Code.CODE_EXPIRED

        guessed = await book.issue(Purpose.SMS, phone, ttl_s=60, now=clock.now)
        wrong_codes = [c for c in (f"{n:06d}" for n in range(MAX_FAILURES + 1)) if c != guessed][:MAX_FAILURES]
        for attempt in wrong_codes:
            with pytest.raises(ApiError):
                await book.use(Purpose.SMS, phone, attempt)
        with pytest.raises(ApiError) as spent:  # the right code, after too many wrong ones
            await book.use(Purpose.SMS, phone, guessed)
        assert spent.value.code == Code.CODE_INVALID

    run(db_url, body)


def test_codes_are_random_and_bound_to_their_subject(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        book = CodeBook(storage)
        issued = [await book.issue(Purpose.SMS, "+8613800000000", ttl_s=60, now=clock.now) for _ in range(30)]
        assert len(set(issued)) > 20  # 30 draws from 10^6: a repeat is rare, many would mean no randomness
        mine = await book.issue(Purpose.SMS, "+8613811111111", ttl_s=60, now=clock.now)
        with pytest.raises(ApiError):
            await book.use(Purpose.SMS, "+8613822222222", mine)  # another phone's code
        await book.use(Purpose.SMS, "+8613811111111", mine)

    run(db_url, body)


def test_throttle_counts_within_the_window_and_says_when_to_retry(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        throttle = Throttle(storage, lambda: int(clock()))
        limit = Limit(count=3, window_s=60)
        for _ in range(3):
            await throttle.take("login-ip:127.0.0.1", limit, "login attempts")
            clock.now += 10
        with pytest.raises(Throttled) as refused:
            await throttle.take("login-ip:127.0.0.1", limit, "login attempts")
        assert refused.value.code == Code.REQUEST_THROTTLED
        assert refused.value.retry_after_s == 30  # the first hit (t=0) leaves the window at t=60; now t=30
        await throttle.check("login-ip:::1", limit, "login attempts")  # another key is not affected
        clock.now += 31
        await throttle.take("login-ip:127.0.0.1", limit, "login attempts")  # the first hit left the window
        await throttle.clear("login-ip:127.0.0.1")
        assert await storage.hits_since("login-ip:127.0.0.1", 0) == (0, None)
        assert await storage.prune(clock.now + 1) >= 0

    run(db_url, body)


def test_outbox_writes_private_json_lines(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl", clock=lambda: 1_700_000_000.0)
    sender = OutboxSender(outbox)
    guarded_run(sender.send(Message("sms", "+8613800000000", "Your code is 123456", code="123456")))
    guarded_run(sender.send(Message("email", "ann@example.org", "Reset: http://x/r/abc", link="http://x/r/abc")))
    with (tmp_path / "outbox.jsonl").open("a") as torn:
        torn.write("{torn\n")
    lines = list(outbox.lines())
    assert lines == [
        {
            "time": "2023-11-14T22:13:20+00:00",
            "channel": "sms",
            "to": "+8613800000000",
            "code": "123456",
            "text": "Your code is 123456",
        },
        {
            "time": "2023-11-14T22:13:20+00:00",
            "channel": "email",
            "to": "ann@example.org",
            "link": "http://x/r/abc",
            "text": "Reset: http://x/r/abc",
        },
    ]
    assert stat.S_IMODE(os.stat(tmp_path / "outbox.jsonl").st_mode) == 0o600
    assert json.loads((tmp_path / "outbox.jsonl").read_text().splitlines()[0])["code"] == "123456"


def test_third_party_identities_are_one_user_per_app_and_provider(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await _app(storage)
        other_app = "0ther"
        await storage.add_app(other_app, "secret", "other app")
        user = await storage.create_identity_user(APPID, "qq", "OPENID1")
        assert (user.username, user.password_hash, user.is_anonymous) == (None, None, False)
        assert (await storage.find_identity_user(APPID, "qq", "OPENID1")).uid == user.uid
        with pytest.raises(AlreadyExists):
            await storage.create_identity_user(APPID, "qq", "OPENID1")
        # Another provider, or another app, with the same id is another person's account.
        assert (await storage.create_identity_user(APPID, "baidu", "OPENID1")).uid != user.uid
        assert (await storage.create_identity_user(other_app, "qq", "OPENID1")).uid != user.uid
        with pytest.raises(NotFound):
            await storage.find_identity_user(APPID, "sina", "OPENID1")
        with pytest.raises(NotFound):
            await storage.create_identity_user("n0-such-app", "qq", "x")
        with pytest.raises(InvalidInput):
            await storage.find_identity_user(APPID, "qq", "x" * 129)
        assert len(await storage.list_users(appid=APPID)) == 2  # the refused calls left no user behind
        assert await storage.ping() is True

    run(db_url, body)
