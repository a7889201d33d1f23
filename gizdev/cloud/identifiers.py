"""The digest user tokens are kept under: standard library only.

Kept apart from :mod:`gizdev.cloud.security` (which re-exports it) so that the storage can make and check digests
without importing the password hashing and the Open API error table. The device API's identifiers (DID,
passcode) are the device protocol's: :mod:`gizdev.protocol.identifiers`.
"""

from __future__ import annotations

import hashlib

__all__ = ["token_digest"]


def token_digest(token: str) -> str:
    """SHA-256 of the token (UTF-8) as 64 lowercase hex digits: the form a token is stored and looked up in."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
