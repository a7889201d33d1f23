"""The storage's exceptions: every one a :class:`~gizdev.errors.StorageError`, named for what the caller does next.

The HTTP layer maps them to Gizwits error codes (``gizdev.cloud.errors``); this module knows nothing about HTTP.
Each carries its data as attributes: ``entity`` is the kind of row ("device", "user", …), ``key`` the identifying
value as given, ``field`` the argument name.
"""

from __future__ import annotations

from gizdev.errors import StorageError

__all__ = [
    "AlreadyExists",
    "DatabaseMissing",
    "DeviceDisabled",
    "EncryptionRequired",
    "InvalidInput",
    "MigrationError",
    "NotFound",
    "PasscodeMismatch",
    "SchemaTooNew",
    "StorageError",
    "StorageUnavailable",
]


def _short(value: object) -> str:
    """A bounded, printable rendering of a caller's value for a message (hostile input stays short)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class InvalidInput(StorageError):
    """An argument has the wrong type, length or format; nothing was written."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(field, reason)

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class DatabaseMissing(StorageError):
    """``Storage.open(..., create=False)`` found no cloud database at ``where`` (no file, or no tables); nothing
    was created."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(where)

    def __str__(self) -> str:
        return f"no cloud database at {self.where}"


class NotFound(StorageError):
    """The row the operation needs does not exist."""

    def __init__(self, entity: str, key: object) -> None:
        self.entity = entity
        self.key = key
        super().__init__(entity, key)

    def __str__(self) -> str:
        return f"{self.entity} {_short(self.key)} not found"


class AlreadyExists(StorageError):
    """A row with the same unique key exists; ``field`` names the clashing key (e.g. ``username``)."""

    def __init__(self, entity: str, field: str, key: object) -> None:
        self.entity = entity
        self.field = field
        self.key = key
        super().__init__(entity, field, key)

    def __str__(self) -> str:
        return f"{self.entity} with {self.field} {_short(self.key)} already exists"


class PasscodeMismatch(StorageError):
    """A device operation authenticated by passcode was given another passcode (Open API 9016)."""

    def __init__(self, did: str) -> None:
        self.did = did
        super().__init__(did)

    def __str__(self) -> str:
        return f"passcode does not match device {self.did}"


class DeviceDisabled(StorageError):
    """The device has been disabled (de-registered) and cannot take part in the operation (Open API 9023)."""

    def __init__(self, did: str) -> None:
        self.did = did
        super().__init__(did)

    def __str__(self) -> str:
        return f"device {self.did} is disabled"


class EncryptionRequired(StorageError):
    """The device registered through the encrypted device API, so the plain one is refused (Open API 9048)."""

    def __init__(self, did: str) -> None:
        self.did = did
        super().__init__(did)

    def __str__(self) -> str:
        return f"device {self.did} uses the encrypted device API; the plain one is refused"


class SchemaTooNew(StorageError):
    """The database was migrated by a newer gizdev; this one refuses to touch it."""

    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(found, supported)

    def __str__(self) -> str:
        return (
            f"database schema version {self.found} is newer than the newest this gizdev knows ({self.supported}); "
            "upgrade gizdev or point it at another database"
        )


class MigrationError(StorageError):
    """A schema migration step failed; its transaction was rolled back and the version left where it was."""

    def __init__(self, version: int, reason: str) -> None:
        self.version = version
        self.reason = reason
        super().__init__(version, reason)

    def __str__(self) -> str:
        return f"schema migration {self.version} failed: {self.reason}"


class StorageUnavailable(StorageError):
    """The database could not be reached or failed the operation (I/O, lock timeout, connection lost)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return f"database unavailable: {self.reason}"
