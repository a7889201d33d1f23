"""One-time codes: SMS codes, captcha answers, password-reset links (cloud protocol §3.6, §3.7).

A code is random (``secrets``), kept only as a digest bound to its purpose and subject, good until it expires, once,
and for ``MAX_FAILURES`` wrong guesses at most (then every live code of that subject is spent): a 6-digit SMS
code cannot be walked through. Lifetimes are the callers' (SMS 24 h by default, captcha 10 min, reset link 1 h).
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from enum import StrEnum

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.storage import Storage
from gizdev.cloud.throttle import Limit

__all__ = ["MAX_FAILURES", "CodeBook", "CodeSettings", "Purpose"]

MAX_FAILURES = 5


class Purpose(StrEnum):
    SMS = "sms"  # subject: the phone number
    CAPTCHA = "captcha"  # subject: the captcha id
    RESET_LINK = "reset-link"  # subject: the uid whose password the link resets


# Codes sent: per phone at most one a minute and a few an hour (each one costs money and bothers a person), per
# client address a few more (one person with several numbers). Drawing a captcha costs CPU and a row. Wrong
# captchas, SMS codes and app signatures are counted per client address (the code book also spends a subject's
# codes after MAX_FAILURES wrong guesses). Reset mails per client address and per email (known or not: the same).
SMS_PER_PHONE = Limit(5, 3600)
SMS_PER_ADDRESS = Limit(20, 3600)
CAPTCHAS_PER_ADDRESS = Limit(60, 600)
FAILURES_PER_ADDRESS = Limit(30, 600)
RESETS_PER_ADDRESS = Limit(10, 3600)
RESETS_PER_ACCOUNT = Limit(3, 3600)
# App tokens per client address: an app asks for one when it starts; the secret is in every copy of the app, so
# this, not the signature, is what keeps a script from filling the table.
APP_TOKENS_PER_ADDRESS = Limit(120, 3600)


@dataclass(frozen=True, slots=True)
class CodeSettings:
    """Lifetimes and rate limits of the code endpoints (app tokens, captchas, SMS codes, reset links)."""

    app_token_ttl_s: int = 24 * 3600  # the vendor does not document one; apps ask for a new token when refused
    captcha_ttl_s: int = 10 * 60
    sms_ttl_s: int = 24 * 3600  # §3.6: "default validity 24 h"
    reset_link_ttl_s: int = 3600
    sms_interval_s: int = 60
    sms_per_phone: Limit = SMS_PER_PHONE
    sms_per_address: Limit = SMS_PER_ADDRESS
    captchas_per_address: Limit = CAPTCHAS_PER_ADDRESS
    failures_per_address: Limit = FAILURES_PER_ADDRESS
    resets_per_address: Limit = RESETS_PER_ADDRESS
    resets_per_account: Limit = RESETS_PER_ACCOUNT
    app_tokens_per_address: Limit = APP_TOKENS_PER_ADDRESS
    # Development only: every captcha's answer is also written to the outbox (channel "captcha"), so that a
    # script can pass the captcha. Never the default; the server warns at start.
    insecure_test_captcha: bool = False


def _digest(purpose: Purpose, subject: str, code: str) -> str:
    return hashlib.sha256(f"{purpose.value}\x00{subject}\x00{code}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CodeBook:
    storage: Storage

    async def issue(self, purpose: Purpose, subject: str, *, ttl_s: int, now: int, digits: int = 6) -> str:
        """A new numeric code of ``digits`` digits for ``subject``, good for ``ttl_s`` seconds."""
        code = "".join(secrets.choice(string.digits) for _ in range(digits))
        await self.storage.add_code(purpose.value, subject, _digest(purpose, subject, code), expires_at=now + ttl_s)
        return code

    async def issue_text(self, purpose: Purpose, subject: str, code: str, *, ttl_s: int, now: int) -> None:
        """Keep a code made elsewhere (a captcha's text, a link's token) the same way."""
        await self.storage.add_code(purpose.value, subject, _digest(purpose, subject, code), expires_at=now + ttl_s)

    async def check(self, purpose: Purpose, subject: str, code: str) -> str:
        """Whether ``code`` is live, without spending it: "ok", "expired", "used" or "invalid"."""
        return await self.storage.peek_code(purpose.value, subject, _digest(purpose, subject, code))

    async def discard(self, purpose: Purpose, subject: str, code: str) -> None:
        """Forget ``code`` (it could not be delivered), leaving the subject's other codes live."""
        await self.storage.discard_code(purpose.value, subject, _digest(purpose, subject, code))

    async def use(self, purpose: Purpose, subject: str, code: str, *, max_failures: int = MAX_FAILURES) -> None:
        """Spend ``code``; 9009 "code expired!" if it was right but too old, 9010 "code invalid!" otherwise.
        ``max_failures=1``: the first wrong guess spends the subject's codes (a captcha gets one try)."""
        outcome = await self.storage.use_code(
            purpose.value, subject, _digest(purpose, subject, code), max_failures=max_failures
        )
        if outcome == "expired":
            raise ApiError(Code.CODE_EXPIRED)
        if outcome != "ok":
            raise ApiError(Code.CODE_INVALID)
