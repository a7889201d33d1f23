"""How account names are compared: usernames, emails and phone numbers in one canonical form each.

A name is stored and looked up in its canonical form, so that "Ann@Example.org " and "ann@example.org" are one
account (issue: sign-up and login compare after trimming and NFKC folding; emails are also case-folded). Text that
could make two names look alike or read backwards — control characters, bidi overrides and isolates, zero-width
characters — is refused outright. The functions raise ``ValueError`` with the reason; as pydantic annotated types
(``Username``, ``Email``, ``Phone``) they make a declared body's field refuse with 9015 and that reason.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["Email", "Phone", "Username", "email_key", "phone_key", "username_key"]

MAX_USERNAME_LEN = 128
MAX_EMAIL_LEN = 254
_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}  # zero-width: names that look alike
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_PHONE = re.compile(r"\+?[0-9]{5,20}")


def _refuse_hidden(value: str) -> None:
    for char in value:
        if char in _BIDI:
            raise ValueError(f"contains the bidirectional control character U+{ord(char):04X}")
        if char in _INVISIBLE:
            raise ValueError(f"contains the invisible character U+{ord(char):04X}")
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co"):
            raise ValueError(f"contains the control character U+{ord(char):04X}")


def username_key(value: str) -> str:
    """Trimmed and NFKC-folded; 1..128 characters; no control, bidi or invisible characters."""
    _refuse_hidden(value)
    folded = unicodedata.normalize("NFKC", value).strip()
    if not folded:
        raise ValueError("must not be empty")
    if len(folded) > MAX_USERNAME_LEN:
        raise ValueError(f"is longer than {MAX_USERNAME_LEN} characters")
    return folded


def email_key(value: str) -> str:
    """Trimmed, NFKC-folded and case-folded; one ``@`` and a dotted domain; at most 254 characters."""
    _refuse_hidden(value)
    folded = unicodedata.normalize("NFKC", value).strip().casefold()
    if len(folded) > MAX_EMAIL_LEN:
        raise ValueError(f"is longer than {MAX_EMAIL_LEN} characters")
    if not _EMAIL.fullmatch(folded):
        raise ValueError("is not an email address")
    return folded


def phone_key(value: str) -> str:
    """Digits with an optional leading ``+`` (international form ``+<country><number>``, §3.6); spaces, dashes
    and dots between digits are dropped; 5..20 digits."""
    _refuse_hidden(value)
    compact = re.sub(r"[\s.\-()]", "", unicodedata.normalize("NFKC", value))
    if not _PHONE.fullmatch(compact):
        raise ValueError("is not a phone number (digits, optionally +country code first)")
    return compact


Username = Annotated[str, AfterValidator(username_key)]
Email = Annotated[str, AfterValidator(email_key)]
Phone = Annotated[str, AfterValidator(phone_key)]
