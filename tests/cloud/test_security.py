"""Password hashing and policy, tokens, identifiers, comparisons and the AES forms of the device API."""

from __future__ import annotations

import contextlib
import re
import shutil
import string
import subprocess
from collections.abc import Callable

import pytest
from argon2 import extract_parameters
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.cloud.errors import ApiError, Code, FormDecryptError, PasswordPolicyError
from gizdev.cloud.security import (
    DEFAULT_PASSWORD_POLICY,
    KDF_DEFAULT,
    MAX_FORM_BYTES,
    STRICT_PASSWORD_POLICY,
    USER_TOKEN_LIFETIME_S,
    KdfParams,
    PasswordPolicy,
    app_auth_digest,
    bind_signature,
    decrypt_form,
    encrypt_form,
    hash_password,
    is_expired,
    needs_rehash,
    new_app_id,
    new_app_secret,
    new_did,
    new_passcode,
    new_product_key,
    new_product_secret,
    new_token,
    safe_equal,
    token_digest,
    token_expiry,
    verify_password,
)
from gizdev.errors import ConfigError

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
# Tokens and identifiers


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


def test_passcode_format() -> None:
    passcodes = [new_passcode() for _ in range(200)]
    assert all(re.fullmatch(r"[A-Z]{10}", code) for code in passcodes)
    assert len(set(passcodes)) == 200
    assert set("".join(passcodes)) == set(string.ascii_uppercase)  # all 26 letters show up in 2000 draws


def test_did_format() -> None:
    dids = [new_did() for _ in range(200)]
    assert all(re.fullmatch(r"[A-Za-z0-9]{22}", did) for did in dids)
    assert len(set(dids)) == 200


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


# --------------------------------------------------------------------------------------------------------------
# Encrypted device API forms

SECRET = "0123456789abcdef0123456789abcdef"
FORM = "mac=AABBCCDDEEFF&passcode=HKIPANQEYX&type=normal"

# Computed with `printf '%s' TEXT | openssl enc -aes-128-ecb -K 0123…cdef -nosalt | xxd -p`, not with our code.
OPENSSL_VECTORS = [
    (
        FORM,
        "c208e7e462d65ea6cffc805320536091de2cb336015b76a8b0380645f4635d1b"
        "44a84c1773aafc4adcf085c284363fb50efb6bfed93b4d1ea2123ba4db075ff6",
    ),
    ("did=RefPeerDid0123456789ab", "fb8c89f49b526d28d2721e3c3b6b07347188851e9a66995d72291e422cf46061"),
    ("", "0efb6bfed93b4d1ea2123ba4db075ff6"),
    ("0123456789abcdef", "4e030ca97370fdecc3367f9970c0b8c30efb6bfed93b4d1ea2123ba4db075ff6"),
]


@pytest.mark.parametrize(("text", "sealed"), OPENSSL_VECTORS)
def test_known_answers(text: str, sealed: str) -> None:
    assert encrypt_form(SECRET, text) == sealed
    assert decrypt_form(SECRET, sealed) == text
    assert decrypt_form(SECRET.upper(), sealed.upper()) == text


def test_did_reply_is_64_hex_digits() -> None:
    # CGW reads exactly 64 hex characters for the encrypted "did=<22 chars>" reply (cloud protocol §1.3).
    assert len(encrypt_form(new_product_secret(), f"did={new_did()}")) == 64


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize("text", [FORM, "x", "exactly 16 bytes", "über&ümlaut=1"])
def test_matches_openssl(text: str) -> None:
    secret = new_product_secret()
    result = subprocess.run(
        ["openssl", "enc", "-aes-128-ecb", "-K", secret, "-nosalt"],
        input=text.encode(),
        capture_output=True,
        check=True,
    )
    assert encrypt_form(secret, text) == result.stdout.hex()


def test_matches_manual_padding_and_raw_blocks() -> None:
    """Pad by hand and encrypt one block at a time with a fresh raw AES (no library padding)."""
    secret = new_product_secret()
    data = FORM.encode()
    pad = 16 - len(data) % 16
    data += bytes([pad]) * pad
    blocks = []
    for start in range(0, len(data), 16):
        encryptor = Cipher(algorithms.AES(bytes.fromhex(secret)), modes.ECB()).encryptor()
        blocks.append(encryptor.update(data[start : start + 16]) + encryptor.finalize())
    assert encrypt_form(secret, FORM) == b"".join(blocks).hex()


def _raw_seal(secret: str, data: bytes) -> str:
    encryptor = Cipher(algorithms.AES(bytes.fromhex(secret)), modes.ECB()).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex()


HOSTILE = [
    pytest.param("", "empty", id="empty"),
    pytest.param("abc", "odd number of hex digits", id="odd"),
    pytest.param("zz" * 16, "not hex", id="non-hex"),
    pytest.param("0x" + "00" * 16, "not hex", id="0x-prefix"),
    pytest.param("00 " * 16, "not hex", id="spaces"),
    pytest.param("٣" * 32, "not hex", id="unicode-digits"),
    pytest.param("00" * 15, "not a multiple of 16", id="short-block"),
    pytest.param("00" * 17, "not a multiple of 16", id="ragged"),
    pytest.param("ab" * 1_000_000, "longer than", id="1MB"),
    pytest.param(_raw_seal(SECRET, b"A" * 16), "wrong product secret or corrupted data", id="bad-padding"),
    pytest.param(_raw_seal(SECRET, b"A" * 15 + b"\x00"), "wrong product secret or corrupted data", id="zero-pad"),
    pytest.param(_raw_seal(SECRET, b"\xff\xfe" + b"\x0e" * 14), "wrong product secret or corrupted data", id="utf8"),
]


@pytest.mark.parametrize(("hex_text", "reason"), HOSTILE)
def test_hostile_input_gives_our_error(hex_text: str, reason: str) -> None:
    with pytest.raises(FormDecryptError, match=reason) as caught:
        decrypt_form(SECRET, hex_text)
    assert caught.value.to_json()["error_code"] == 9015
    assert caught.value.http_status == 400


def test_wrong_key_gives_our_error() -> None:
    sealed = encrypt_form(SECRET, FORM)
    with pytest.raises(FormDecryptError, match="wrong product secret or corrupted data"):
        decrypt_form("fedcba9876543210fedcba9876543210", sealed)


def test_non_string_input_gives_our_error() -> None:
    with pytest.raises(FormDecryptError):
        decrypt_form(SECRET, b"00" * 16)  # type: ignore[arg-type]


def test_input_at_the_size_limit_is_decrypted() -> None:
    text = "k=" + "v" * (MAX_FORM_BYTES - 3)  # pads to exactly MAX_FORM_BYTES
    sealed = encrypt_form(SECRET, text)
    assert len(sealed) == 2 * MAX_FORM_BYTES
    assert decrypt_form(SECRET, sealed) == text


@pytest.mark.parametrize("secret", ["", "0123", SECRET + "00", "g" * 32, " " + SECRET[1:]])
def test_bad_product_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError, match="32 hex digits"):
        encrypt_form(secret, FORM)
    with pytest.raises(ConfigError):
        decrypt_form(secret, OPENSSL_VECTORS[0][1])


@settings(max_examples=200)
@given(
    secret=st.binary(min_size=16, max_size=16).map(bytes.hex),
    text=st.text(max_size=300),
)
def test_round_trip(secret: str, text: str) -> None:
    sealed = encrypt_form(secret, text)
    assert re.fullmatch(r"(?:[0-9a-f]{32})+", sealed)
    assert decrypt_form(secret, sealed) == text


@settings(max_examples=300)
@given(hex_text=st.one_of(st.text(max_size=100), st.binary(max_size=64).map(bytes.hex)))
def test_any_input_decrypts_or_gives_our_error(hex_text: str) -> None:
    with contextlib.suppress(FormDecryptError):
        assert isinstance(decrypt_form(SECRET, hex_text), str)
