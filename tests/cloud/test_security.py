"""Password hashing and policy, tokens, keys and secrets, comparisons and the vendor's digests."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from argon2 import extract_parameters

from gizdev.cloud.errors import ApiError, Code, PasswordPolicyError
from gizdev.cloud.security import (
    DEFAULT_PASSWORD_POLICY,
    KDF_DEFAULT,
    STRICT_PASSWORD_POLICY,
    USER_TOKEN_LIFETIME_S,
    KdfParams,
    PasswordPolicy,
    app_auth_digest,
    bind_signature,
    hash_password,
    is_expired,
    needs_rehash,
    new_app_id,
    new_app_secret,
    new_product_key,
    new_product_secret,
    new_token,
    safe_equal,
    token_digest,
    token_expiry,
    verify_password,
)

# Tests that are not about the cost parameters use the cheapest legal ones (argon2 is slow by design).
FAST = KdfParams(time_cost=1, memory_kib=8, parallelism=1)
OTHER_FAST = KdfParams(time_cost=2, memory_kib=8, parallelism=1)

HEX32 = re.compile(r"[0-9a-f]{32}")

# --------------------------------------------------------------------------------------------------------------
# Passwords


def test_default_parameters_hash_and_verify() -> None:
    """The one test that pays for the real parameters (about 0.2 s per hash on the development machine)."""
    stored = hash_password("123456")
    found = extract_parameters(stored)
    assert stored.startswith("$argon2id$v=19$")
    assert (found.time_cost, found.memory_cost, found.parallelism) == (3, 65536, 4)
    assert KdfParams(3, 65536, 4) == KDF_DEFAULT
    assert verify_password(stored, "123456")
    assert not needs_rehash(stored)


def test_verify_right_and_wrong_password() -> None:
    stored = hash_password("correct horse", FAST)
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct horsE")
    assert not verify_password(stored, "")


def test_hashes_are_salted() -> None:
    assert hash_password("same", FAST) != hash_password("same", FAST)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB",  # output too short
        "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # memory below the minimum
        "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # absurd memory: not run
        "$argon2id$v=19$m=8,t=999999,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",  # absurd time: not run
        "$2b$12$abcdefghijklmnopqrstuuP9rVq0aQeDUzpN7TT1b3G3T8yJ5r3Fa",  # bcrypt
        "\x00\udcff",
    ],
)
def test_malformed_stored_hash_is_false_not_an_exception(stored: str) -> None:
    assert verify_password(stored, "123456", FAST) is False
    assert needs_rehash(stored, FAST) is True


def test_unknown_user_is_false_and_still_does_the_work() -> None:
    assert verify_password(None, "123456", FAST) is False


def test_non_string_inputs_are_false() -> None:
    stored = hash_password("123456", FAST)
    assert verify_password(stored, 123456) is False  # type: ignore[arg-type]
    assert verify_password(b"$argon2id$", "123456", FAST) is False  # type: ignore[arg-type]


def test_needs_rehash_when_parameters_change() -> None:
    stored = hash_password("pw1234", FAST)
    assert not needs_rehash(stored, FAST)
    assert needs_rehash(stored, OTHER_FAST)
    rehashed = hash_password("pw1234", OTHER_FAST)  # what the login handler does after a good verify
    assert verify_password(rehashed, "pw1234") and not needs_rehash(rehashed, OTHER_FAST)


def test_default_policy_accepts_the_vendor_examples_and_rejects_five() -> None:
    DEFAULT_PASSWORD_POLICY.check("123456")
    with pytest.raises(PasswordPolicyError) as caught:
        DEFAULT_PASSWORD_POLICY.check("12345")
    assert caught.value.rule == "min_length"
    assert "at least 6" in str(caught.value)
    assert caught.value.code is Code.FORM_INVALID
    assert isinstance(caught.value, ApiError)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("123456", "min_length"),
        ("abcdefghijkl", "min_classes"),
        ("abcdefghij12", "min_classes"),
        ("ABCDEFGHIJ12", "min_classes"),
        ("x" * 129, "max_length"),
    ],
)
def test_strict_policy_rejects_weak_passwords(password: str, rule: str) -> None:
    with pytest.raises(PasswordPolicyError) as caught:
        STRICT_PASSWORD_POLICY.check(password)
    assert caught.value.rule == rule
    assert caught.value.to_json()["detail_message"] == f"password: {caught.value.reason}"


@pytest.mark.parametrize("password", ["abcdefgh12X", "abcdefgh1-xx", "Pässwörter-7", "correct Horse 9"])
def test_strict_policy_accepts_mixed_passwords(password: str) -> None:
    STRICT_PASSWORD_POLICY.check(password)


def test_policy_rejects_non_strings_and_is_configurable() -> None:
    with pytest.raises(PasswordPolicyError) as caught:
        DEFAULT_PASSWORD_POLICY.check(123456)  # type: ignore[arg-type]
    assert caught.value.rule == "type"
    PasswordPolicy(min_length=4).check("1234")
    with pytest.raises(PasswordPolicyError, match="at most 8"):
        PasswordPolicy(max_length=8).check("123456789")


# --------------------------------------------------------------------------------------------------------------
# Tokens, keys and secrets


def test_tokens_are_128_bits_of_hex_and_unique() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(HEX32.fullmatch(token) for token in tokens)  # 32 hex digits = 128 bits


def test_token_digest_is_sha256_hex_and_deterministic() -> None:
    # SHA-256("abc"), FIPS 180-2 appendix B.1.
    assert token_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    token = new_token()
    assert token_digest(token) == token_digest(token)
    assert token_digest(token) != token_digest(new_token())
    assert re.fullmatch(r"[0-9a-f]{64}", token_digest("\udcff odd header"))


def test_token_lifetime_is_180_days() -> None:
    assert USER_TOKEN_LIFETIME_S == 15_552_000
    assert token_expiry(1_700_000_000.9) == 1_700_000_000 + 15_552_000
    assert token_expiry(100, lifetime_s=7 * 86400) == 100 + 604_800
    assert not is_expired(token_expiry(), now=None)
    assert is_expired(1000, now=1000) and not is_expired(1001, now=1000)


@pytest.mark.parametrize("make", [new_product_key, new_product_secret, new_app_id, new_app_secret])
def test_keys_and_secrets_are_32_lowercase_hex(make: Callable[[], str]) -> None:
    values = {make() for _ in range(100)}
    assert len(values) == 100
    assert all(isinstance(value, str) and HEX32.fullmatch(value) for value in values)


def test_safe_equal() -> None:
    assert safe_equal("HKIPANQEYX", "HKIPANQEYX")
    assert not safe_equal("HKIPANQEYX", "HKIPANQEYY")
    assert not safe_equal("HKIPANQEYX", "HKIPANQEY")
    assert safe_equal("pässword", "pässword".encode())  # non-ASCII str would make compare_digest raise
    assert not safe_equal("\udcff", "")
    assert safe_equal(b"", "")


def test_vendor_md5_headers() -> None:
    # MD5("abc"), RFC 1321 appendix A.5; the header is md5(appid + appsecret) with no separator.
    assert app_auth_digest("a", "bc") == "900150983cd24fb0d6963f7d28e17f72"
    assert bind_signature("ab", "c") == "900150983cd24fb0d6963f7d28e17f72"
