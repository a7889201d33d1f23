"""Storage of application tokens, captcha pictures, and the peek/discard of one-time codes (migration 5); SQLite
and PostgreSQL (``db_url``)."""

from __future__ import annotations

import time

import pytest

from gizdev.cloud.codes import CodeBook, Purpose
from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.security import token_digest
from gizdev.cloud.storage import AlreadyExists, InvalidInput, NotFound, Storage
from tests.cloud.codes_helpers import clouds
from tests.cloud.test_open_api_seed import wait_for
from tests.cloud.test_storage import APPID, Clock, run

OTHER_APP = "other-app"


def test_app_tokens_by_digest_until_they_expire(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        await storage.add_app(APPID, "secret", "a")
        await storage.add_app(OTHER_APP, "secret", "b")
        digest = token_digest("app-token-1")
        await storage.store_app_token(digest, APPID, clock.now + 60)
        assert await storage.app_of_token(digest, now=clock.now) == APPID
        assert await storage.app_of_token(digest, now=clock.now + 59) == APPID
        assert await storage.app_of_token(digest, now=clock.now + 60) is None  # expired at expire_at
        assert await storage.app_of_token(token_digest("app-token-2"), now=clock.now) is None
        with pytest.raises(AlreadyExists):
            await storage.store_app_token(digest, OTHER_APP, clock.now + 60)
        with pytest.raises(NotFound):
            await storage.store_app_token(token_digest("x"), "no-such-app", clock.now + 60)
        with pytest.raises(InvalidInput):  # a token, not its digest
            await storage.store_app_token("app-token-1", APPID, clock.now + 60)
        assert await storage.prune(clock.now + 61) >= 1
        assert await storage.app_of_token(digest, now=clock.now) is None  # pruned

    run(db_url, body)


def test_captcha_pictures_until_they_expire_or_are_deleted(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # every byte value survives both databases
        await storage.put_captcha_image("c" * 32, png, expires_at=clock.now + 600)
        assert await storage.get_captcha_image("c" * 32, now=clock.now) == png
        assert await storage.get_captcha_image("c" * 32, now=clock.now + 600) is None
        assert await storage.get_captcha_image("d" * 32, now=clock.now) is None
        with pytest.raises(AlreadyExists):
            await storage.put_captcha_image("c" * 32, png, expires_at=clock.now + 600)
        with pytest.raises(InvalidInput):
            await storage.put_captcha_image("e" * 32, b"", expires_at=clock.now + 600)
        with pytest.raises(InvalidInput):
            await storage.put_captcha_image("has space", png, expires_at=clock.now + 600)
        await storage.delete_captcha_image("c" * 32)
        assert await storage.get_captcha_image("c" * 32, now=clock.now) is None
        await storage.put_captcha_image("f" * 32, png, expires_at=clock.now + 1)
        assert await storage.prune(clock.now + 2) == 1

    run(db_url, body)


def test_codes_can_be_looked_at_and_discarded_without_being_spent(db_url: str) -> None:
    async def body(storage: Storage, clock: Clock) -> None:
        book = CodeBook(storage)
        await book.issue_text(Purpose.RESET_LINK, "u" * 32, "token-a", ttl_s=60, now=clock.now)
        await book.issue_text(Purpose.RESET_LINK, "u" * 32, "token-b", ttl_s=60, now=clock.now)
        # Looking counts no failure: more wrong peeks than MAX_FAILURES leave the codes live.
        for _ in range(10):
            assert await book.check(Purpose.RESET_LINK, "u" * 32, "wrong") == "invalid"
        assert await book.check(Purpose.RESET_LINK, "u" * 32, "token-a") == "ok"
        assert await book.check(Purpose.SMS, "u" * 32, "token-a") == "invalid"  # another purpose
        # Discarding one leaves the other live.
        await book.discard(Purpose.RESET_LINK, "u" * 32, "token-a")
        assert await book.check(Purpose.RESET_LINK, "u" * 32, "token-a") == "invalid"
        assert await book.check(Purpose.RESET_LINK, "u" * 32, "token-b") == "ok"
        await book.use(Purpose.RESET_LINK, "u" * 32, "token-b")
        assert await book.check(Purpose.RESET_LINK, "u" * 32, "token-b") == "used"
        await book.discard(Purpose.RESET_LINK, "u" * 32, "token-b")  # a used code is not discarded
        assert await book.check(Purpose.RESET_LINK, "u" * 32, "token-b") == "used"
        await book.issue_text(Purpose.CAPTCHA, "c" * 32, "KEY42", ttl_s=60, now=clock.now - 61)
        assert await book.check(Purpose.CAPTCHA, "c" * 32, "KEY42") == "expired"
        # A captcha gets one try: a wrong answer spends it.
        await book.issue_text(Purpose.CAPTCHA, "d" * 32, "KEY43", ttl_s=60, now=clock.now)
        with pytest.raises(ApiError) as caught:
            await book.use(Purpose.CAPTCHA, "d" * 32, "KEY44", max_failures=1)
        assert caught.value.code is Code.CODE_INVALID
        with pytest.raises(ApiError):
            await book.use(Purpose.CAPTCHA, "d" * 32, "KEY43", max_failures=1)

    run(db_url, body)


def test_the_server_prunes_what_is_more_than_a_day_old(db_url: str, mosquitto_binary: str) -> None:
    day = 24 * 3600

    async def leave_old_rows(storage: Storage, clock: Clock) -> None:
        now = int(time.time())
        await storage.add_app(APPID, "secret", "a")
        await storage.store_app_token(token_digest("old"), APPID, now - day - 10)
        await storage.store_app_token(token_digest("live"), APPID, now + 3600)
        await storage.put_captcha_image("a" * 32, b"png", expires_at=now - day - 10)
        await storage.add_hit("sms-ip:127.0.0.1", now - day - 10)

    run(db_url, leave_old_rows)
    with clouds(lambda _base: db_url, mosquitto_binary) as start:
        cloud = start()
        storage = cloud.storage

        def pruned() -> bool:
            return cloud.call(storage.hits_since("sms-ip:127.0.0.1", 0))[0] == 0

        wait_for(pruned, 10.0, "the prune at start")
        now = int(time.time())
        assert cloud.call(storage.app_of_token(token_digest("live"), now=now)) == APPID
        assert cloud.call(storage.app_of_token(token_digest("old"), now=0)) is None
        assert cloud.call(storage.get_captcha_image("a" * 32, now=0)) is None
