"""The identifiers of the HTTP device API (cloud protocol §1.1): the cloud makes DIDs, the device makes passcodes.

Standard library only, so that the cloud's storage and the bridge make and check them without any crypto.
"""

from __future__ import annotations

import secrets
import string

__all__ = ["DID_LENGTH", "PASSCODE_LENGTH", "new_did", "new_passcode"]

PASSCODE_LENGTH = 10  # GA-h PASSCODE_LEN; GAgent uses 'A'..'Y', we draw from all of 'A'..'Z'
DID_LENGTH = 22  # cloud protocol §1.1: a valid DID is 22 characters
_DID_ALPHABET = string.ascii_letters + string.digits  # 62 symbols: 22 of them carry about 131 bits


def _random_string(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_passcode() -> str:
    """A device passcode: 10 random upper-case letters, like the ones GAgent makes."""
    return _random_string(string.ascii_uppercase, PASSCODE_LENGTH)


def new_did() -> str:
    """A device id: 22 random letters and digits (about 131 bits, unguessable)."""
    return _random_string(_DID_ALPHABET, DID_LENGTH)
