"""Secrets of the local cloud: password hashing, tokens, keys and secrets, the vendor's digests, comparisons.

Passwords
    argon2id through argon2-cffi. ``hash_password``/``verify_password`` block for the length of one hash (about
    170 ms with the default parameters); in asyncio code run them in a thread (``asyncio.to_thread``): the C
    library releases the GIL. ``verify_password`` never raises on a malformed stored hash, and with ``None`` (no
    such user) it still spends one verification, so that response time does not tell which usernames exist.

Tokens
    User tokens are 128 random bits as 32 lowercase hex digits (the shape of the vendor's tokens). Only
    ``token_digest(token)`` (SHA-256, hex) is stored: a leaked table does not give working tokens, and a fast
    hash is enough because the input is random, not chosen by a person.

The device API's form cipher, DIDs and passcodes are the device protocol's, shared with the bridge:
:mod:`gizdev.protocol.device_api` and :mod:`gizdev.protocol.identifiers`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from gizdev.cloud.errors import PasswordPolicyError
from gizdev.cloud.identifiers import token_digest

__all__ = [
    "DEFAULT_PASSWORD_POLICY",
    "KDF_DEFAULT",
    "KDF_SMALL_BOARD",
    "STRICT_PASSWORD_POLICY",
    "USER_TOKEN_LIFETIME_S",
    "KdfParams",
    "PasswordPolicy",
    "app_auth_digest",
    "bind_signature",
    "hash_password",
    "is_expired",
    "needs_rehash",
    "new_app_id",
    "new_app_secret",
    "new_mqtt_password",
    "new_product_key",
    "new_product_secret",
    "new_token",
    "safe_equal",
    "token_digest",
    "token_expiry",
    "verify_password",
]

# --------------------------------------------------------------------------------------------------------------
# Passwords


@dataclass(frozen=True, slots=True)
class KdfParams:
    """argon2id cost parameters: iterations, memory in KiB, lanes."""

    time_cost: int
    memory_kib: int
    parallelism: int


# RFC 9106 §4, second recommended option (argon2id, t=3, m=64 MiB, p=4; also argon2-cffi's default). Measured on
# the development machine (2 vCPU AMD EPYC, argon2-cffi 25.1): hash median 169 ms (153–192 ms over 10 runs),
# verify about the same, peak RSS +64 MiB per hash in flight. That is a tolerable login delay, and 64 MiB each
# makes guessing on GPUs expensive; concurrent logins cost 64 MiB each, so cap them on small servers.
KDF_DEFAULT = KdfParams(time_cost=3, memory_kib=64 * 1024, parallelism=4)

# OWASP's minimum argon2id setting (m=19 MiB, t=2, p=1), for small boards (a Raspberry Pi running the cloud).
# Same machine: hash median 32 ms (29–45 ms), peak RSS +19 MiB.
KDF_SMALL_BOARD = KdfParams(time_cost=2, memory_kib=19 * 1024, parallelism=1)

# A stored hash whose parameters exceed these is treated as malformed rather than run (a tampered or foreign
# row must not make one login take seconds or gigabytes).
_MAX_VERIFY_MEMORY_KIB = 1024 * 1024
_MAX_VERIFY_TIME_COST = 16
_MAX_VERIFY_PARALLELISM = 16


@functools.cache
def _hasher(params: KdfParams) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        type=Type.ID,
    )


@functools.cache
def _dummy_hash(params: KdfParams) -> str:
    return _hasher(params).hash(secrets.token_hex(16))


def hash_password(password: str, params: KdfParams = KDF_DEFAULT) -> str:
    """The argon2id PHC string (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``) of ``password``, fresh salt each call."""
    return _hasher(params).hash(password)


def verify_password(stored_hash: str | None, password: str, params: KdfParams = KDF_DEFAULT) -> bool:
    """True if ``password`` matches ``stored_hash``; False for a mismatch, a malformed hash or ``None``.

    The comparison is argon2's own constant-time one. ``None`` (unknown user) verifies against a dummy hash made
    with ``params``, so it costs as much as a real check. Never raises.
    """
    if not isinstance(password, str):
        return False
    if stored_hash is None or not isinstance(stored_hash, str):
        _safe_verify(_dummy_hash(params), password)
        return False
    if not _sane_parameters(stored_hash):
        return False
    return _safe_verify(stored_hash, password)


def _safe_verify(stored_hash: str, password: str) -> bool:
    try:
        # Any PasswordHasher verifies any argon2 hash: the parameters come from the hash itself.
        return _hasher(KDF_DEFAULT).verify(stored_hash, password)
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        return False


def _sane_parameters(stored_hash: str) -> bool:
    try:
        found = extract_parameters(stored_hash)
    except (InvalidHashError, ValueError, TypeError):
        return False
    return (
        found.memory_cost <= _MAX_VERIFY_MEMORY_KIB
        and found.time_cost <= _MAX_VERIFY_TIME_COST
        and found.parallelism <= _MAX_VERIFY_PARALLELISM
    )


def needs_rehash(stored_hash: str, params: KdfParams = KDF_DEFAULT) -> bool:
    """True if ``stored_hash`` was not made with ``params`` (rehash after the next good login); True if malformed."""
    try:
        return _hasher(params).check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError, TypeError):
        return True


def _character_classes(password: str) -> set[str]:
    kinds: set[str] = set()
    for char in password:
        if char in string.ascii_lowercase:
            kinds.add("lower")
        elif char in string.ascii_uppercase:
            kinds.add("upper")
        elif char in string.digits:
            kinds.add("digit")
        else:
            kinds.add("other")
    return kinds


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """Rules for a new password; :meth:`check` raises :class:`PasswordPolicyError` naming the broken rule.

    ``min_classes`` counts the kinds of character used, of four: lower-case letters, upper-case letters, digits,
    anything else. The default accepts the vendor docs' six-digit examples ("123456"); a stricter policy is a
    setting, e.g. :data:`STRICT_PASSWORD_POLICY`. ``max_length`` bounds the work one request can ask of the KDF.
    """

    min_length: int = 6
    max_length: int = 128
    min_classes: int = 1

    def check(self, password: str) -> None:
        """Raise :class:`PasswordPolicyError` (rule ``type``, ``min_length``, ``max_length`` or ``min_classes``)."""
        if not isinstance(password, str):
            raise PasswordPolicyError("type", "must be a string")
        if len(password) < self.min_length:
            raise PasswordPolicyError("min_length", f"must be at least {self.min_length} characters long")
        if len(password) > self.max_length:
            raise PasswordPolicyError("max_length", f"must be at most {self.max_length} characters long")
        if len(_character_classes(password)) < self.min_classes:
            raise PasswordPolicyError(
                "min_classes",
                f"must mix at least {self.min_classes} of: lower-case letters, upper-case letters, digits, "
                "other characters",
            )


DEFAULT_PASSWORD_POLICY = PasswordPolicy()
STRICT_PASSWORD_POLICY = PasswordPolicy(min_length=10, min_classes=3)

# --------------------------------------------------------------------------------------------------------------
# Tokens

# Cloud protocol §3.1: the vendor first documented 7 days ("one week"), then changed to 180 days (current docs,
# PR #145). We follow the current service: apps and integrations (Home Assistant bridges) store the token and
# users already complain about re-capturing it; a shorter lifetime is one setting away (``lifetime_s``), and
# tokens are revocable because only their digests are stored.
USER_TOKEN_LIFETIME_S = 180 * 24 * 3600

_TOKEN_BYTES = 16  # 128 bits


def new_token() -> str:
    """A fresh bearer token: 128 random bits as 32 lowercase hex digits."""
    return secrets.token_hex(_TOKEN_BYTES)


def token_expiry(issued_at: float | None = None, lifetime_s: int = USER_TOKEN_LIFETIME_S) -> int:
    """The ``expire_at`` unix timestamp (whole seconds) of a token issued at ``issued_at`` (default: now)."""
    start = time.time() if issued_at is None else issued_at
    return int(start) + lifetime_s


def is_expired(expire_at: int, now: float | None = None) -> bool:
    """True once ``now`` (default: the current time) has reached ``expire_at``."""
    return (time.time() if now is None else now) >= expire_at


# --------------------------------------------------------------------------------------------------------------
# Identifiers and secrets

# token_digest comes from gizdev.cloud.identifiers (the storage uses it without the KDF).


def new_product_key() -> str:
    """A product key: 32 lowercase hex digits (128 bits)."""
    return secrets.token_hex(16)


def new_product_secret() -> str:
    """A product secret: 32 lowercase hex digits, which are also the AES key of the encrypted device API."""
    return secrets.token_hex(16)


def new_app_id() -> str:
    """An application id: 32 lowercase hex digits."""
    return secrets.token_hex(16)


def new_app_secret() -> str:
    """An application secret: 32 lowercase hex digits (128 bits)."""
    return secrets.token_hex(16)


def new_mqtt_password() -> str:
    """The MQTT password of a device registered through the encrypted API: 96 random bits as 16 URL-safe
    characters (GAgent-style clients cap MQTT passwords at 16, cloud protocol §1.4; form-safe without escaping)."""
    return secrets.token_urlsafe(12)


def safe_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality of two secrets (str is compared as UTF-8); never raises on odd input."""
    return hmac.compare_digest(_as_bytes(a), _as_bytes(b))


def _as_bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return bytes(value)


def app_auth_digest(app_id: str, app_secret: str) -> str:
    """``X-Gizwits-Application-Auth`` (§3.5): lowercase hex MD5 of appid + appsecret; compare with safe_equal."""
    # MD5 is the vendor's choice, not ours; usedforsecurity=False only keeps FIPS builds of Python working.
    return hashlib.md5((app_id + app_secret).encode(), usedforsecurity=False).hexdigest()


def bind_signature(product_secret: str, timestamp: str) -> str:
    """``X-Gizwits-Signature`` of ``/app/bind_mac`` (§3.9): lowercase hex MD5 of product_secret + timestamp."""
    return hashlib.md5((product_secret + timestamp).encode(), usedforsecurity=False).hexdigest()
