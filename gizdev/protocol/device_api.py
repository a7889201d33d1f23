"""The form cipher of the encrypted HTTP device API (cloud protocol §1.3), spoken by the device and the cloud.

AES-128-ECB with PKCS7 padding, key = the product secret's 32 hex digits as 16 bytes, ciphertext as hex. ECB is
what the devices speak, not a choice of ours. :func:`decrypt_form` raises :class:`FormCipherError` (a
:class:`~gizdev.errors.PayloadError`, the input's bytes in hex) for any input that does not decrypt to UTF-8 text;
the cloud answers it with 9015 "form invalid!" at its one error boundary, the bridge takes it as a bad answer of
the cloud. A product secret that is not 32 hex digits is configuration or stored data at fault, not the peer's:
:class:`~gizdev.errors.ConfigError`.

The identifiers of the same API are in :mod:`gizdev.protocol.identifiers`. Standard library and
``cryptography`` only: the bridge imports this without any of the cloud.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gizdev.errors import ConfigError, PayloadError

__all__ = [
    "MAX_FORM_BYTES",
    "MQTT_PASSWORD_FIELD",
    "OTA_TYPE_MCU",
    "OTA_TYPE_WIFI",
    "FormCipherError",
    "decrypt_form",
    "encrypt_form",
]

# The field of the encrypted registration's reply (after ``did``) that carries the MQTT password the cloud made for
# the device. Ours: no source shows the vendor's reply carrying one (gizdev.cloud.http.device_api says why).
MQTT_PASSWORD_FIELD = "mqtt_password"
# The ``type`` of an OTA check (§1.2; GA-h OTATYPE_WIFI, OTATYPE_MCU): whose versions the form carries.
OTA_TYPE_WIFI = 1
OTA_TYPE_MCU = 2

# Real forms are a few hundred bytes ("mac=..&passcode=..&type=..&extra=..&auth_key=.."); anything much larger
# is refused before any work is done on it.
MAX_FORM_BYTES = 4096
_BLOCK_BYTES = 16
_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_SECRET_RE = re.compile(r"[0-9a-fA-F]{32}")
_UNDECRYPTABLE = "cannot decrypt: wrong product secret or corrupted data"
_SHOWN_BYTES = 64  # how much of a refused input the error keeps (it is logged, and may be large)


class FormCipherError(PayloadError):
    """A sealed form (§1.3) cannot be decoded or decrypted; ``reason`` says why, ``data`` holds the input's bytes.

    Failures after hex decoding (bad padding, not UTF-8 text) share one reason on purpose, so that the reason
    (which the cloud sends to the device) does not tell a wrong key from corrupted data.
    """

    def __init__(self, reason: str, *, data: bytes = b"") -> None:
        super().__init__(reason, data=data[:_SHOWN_BYTES], path="data")


def _aes_key(product_secret: str) -> bytes:
    if not isinstance(product_secret, str) or not _SECRET_RE.fullmatch(product_secret):
        raise ConfigError("product secret must be 32 hex digits (it is the AES-128 key of the device API)")
    return bytes.fromhex(product_secret)


def encrypt_form(product_secret: str, text: str) -> str:
    """``hex(AES-128-ECB(key=product_secret, PKCS7(text as UTF-8)))`` in lowercase hex."""
    padder = padding.PKCS7(_BLOCK_BYTES * 8).padder()
    padded = padder.update(text.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_aes_key(product_secret)), modes.ECB()).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex()


def decrypt_form(product_secret: str, hex_text: str) -> str:
    """The text sealed by :func:`encrypt_form`; :class:`FormCipherError` for anything else.

    ``hex_text`` must be whole bytes of hex (either case, no whitespace), a non-zero multiple of 16 bytes, at most
    :data:`MAX_FORM_BYTES`, with valid PKCS7 padding and UTF-8 text inside.
    """
    key = _aes_key(product_secret)
    if not isinstance(hex_text, str):
        raise FormCipherError("must be a hex string")
    raw = hex_text.encode("utf-8", "surrogatepass")
    if not hex_text:
        raise FormCipherError("empty")
    if len(hex_text) > 2 * MAX_FORM_BYTES:
        raise FormCipherError(f"longer than {MAX_FORM_BYTES} bytes", data=raw)
    if not _HEX_RE.fullmatch(hex_text):
        raise FormCipherError("not hex", data=raw)
    if len(hex_text) % 2:
        raise FormCipherError("odd number of hex digits", data=raw)
    sealed = bytes.fromhex(hex_text)
    if len(sealed) % _BLOCK_BYTES:
        raise FormCipherError(f"length {len(sealed)} bytes is not a multiple of {_BLOCK_BYTES}", data=sealed)
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    padded = decryptor.update(sealed) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BYTES * 8).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError as exc:  # bad padding, or UnicodeDecodeError (a ValueError)
        raise FormCipherError(_UNDECRYPTABLE, data=sealed) from exc
