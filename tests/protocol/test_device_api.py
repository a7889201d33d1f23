"""The form cipher of the encrypted device API (cloud protocol §1.3): known answers, openssl, hostile input."""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from gizdev.errors import CloudError, ConfigError, PayloadError
from gizdev.protocol.device_api import MAX_FORM_BYTES, FormCipherError, decrypt_form, encrypt_form
from gizdev.protocol.identifiers import new_did


def new_product_secret() -> str:
    """A product secret as the cloud makes them (32 hex digits), without importing the cloud."""
    return secrets.token_hex(16)


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
    with pytest.raises(FormCipherError, match=reason) as caught:
        decrypt_form(SECRET, hex_text)
    error = caught.value
    # A codec error of gizdev's own, not a cloud answer: the bridge meets it too, where no HTTP code makes sense.
    assert isinstance(error, PayloadError) and not isinstance(error, CloudError)
    assert reason in error.reason and error.path == "data"
    # The refused bytes travel with the error, as hex in its text (capped: one of these is a megabyte).
    if error.data:
        assert len(error.data) <= 64 and error.data.hex() in str(error)


def test_wrong_key_gives_our_error() -> None:
    sealed = encrypt_form(SECRET, FORM)
    with pytest.raises(FormCipherError, match="wrong product secret or corrupted data"):
        decrypt_form("fedcba9876543210fedcba9876543210", sealed)


def test_non_string_input_gives_our_error() -> None:
    with pytest.raises(FormCipherError):
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
    with contextlib.suppress(FormCipherError):
        assert isinstance(decrypt_form(SECRET, hex_text), str)
