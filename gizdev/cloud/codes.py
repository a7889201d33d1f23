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

__all__ = ["MAX_FAILURES", "CodeBook", "Purpose"]

MAX_FAILURES = 5


class Purpose(StrEnum):
    SMS = "sms"  # subject: the phone number
    CAPTCHA = "captcha"  # subject: the captcha id
    RESET_LINK = "reset-link"  # subject: the uid whose password the link resets


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

    async def use(self, purpose: Purpose, subject: str, code: str) -> None:
        """Spend ``code``; 9009 "code expired!" if it was right but too old, 9010 "code invalid!" otherwise."""
        outcome = await self.storage.use_code(
            purpose.value, subject, _digest(purpose, subject, code), max_failures=MAX_FAILURES
        )
        if outcome == "expired":
            raise ApiError(Code.CODE_EXPIRED)
        if outcome != "ok":
            raise ApiError(Code.CODE_INVALID)
