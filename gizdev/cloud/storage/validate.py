"""Argument checks run before any statement: each failure is an :class:`InvalidInput` naming the argument.

Identifiers (DIDs, keys, MACs, uids, hashes) must match a strict format; free text (names, remarks, usernames) is
stored verbatim — quotes, SQL keywords and all, since every statement binds parameters — but must be a ``str`` of
bounded length that both databases can store: no NUL character (PostgreSQL text cannot hold one) and no lone
surrogate (not encodable as UTF-8).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from gizdev.cloud.storage.errors import InvalidInput

__all__ = [
    "APPID",
    "DID",
    "MAC",
    "PASSCODE",
    "PRINTABLE",
    "PRODUCT_KEY",
    "SECRET32",
    "TOKEN_HASH",
    "UID",
    "attrs_json",
    "count",
    "flag",
    "text",
    "timestamp",
]

APPID = (re.compile(r"[A-Za-z0-9_-]{1,64}"), "1-64 letters, digits, '-' or '_'")
PRODUCT_KEY = (re.compile(r"[0-9A-Fa-f]{32}"), "32 hex digits")
SECRET32 = (re.compile(r"[0-9A-Fa-f]{32}"), "32 hex digits")
MAC = (re.compile(r"[0-9A-Fa-f]{12}"), "12 hex digits without separators")
# Cloud protocol §1.1: GAgent makes 10 upper-case letters; Open API examples show "123456" and "gokit"; it is also
# the MQTT password, which GAgent caps at 16 characters (§1.4).
PASSCODE = (re.compile(r"[A-Za-z0-9]{1,16}"), "1-16 letters or digits")
DID = (re.compile(r"[A-Za-z0-9_-]{22}"), "22 URL-safe characters")
UID = (re.compile(r"[0-9a-f]{32}"), "32 lower-case hex digits")
TOKEN_HASH = (re.compile(r"[0-9a-f]{64}"), "a hex SHA-256 digest (64 lower-case hex digits), not a token")
PRINTABLE = (re.compile(r"[!-~]+"), "printable ASCII without spaces")

MAX_TIMESTAMP = 2**53  # far beyond any clock; keeps values exact in JSON and in every integer column
MAX_ATTRS_BYTES = 64 * 1024
MAX_ATTRS_DEPTH = 32


def _type_name(value: object) -> str:
    return type(value).__name__


def text(
    field: str,
    value: object,
    *,
    max_len: int,
    min_len: int = 1,
    pattern: tuple[re.Pattern[str], str] | None = None,
) -> str:
    """``value`` if it is a string of ``min_len``..``max_len`` characters (matching ``pattern``, if given)."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, not {_type_name(value)}")
    if len(value) > max_len:
        raise InvalidInput(field, f"is {len(value)} characters long, more than {max_len}")
    if len(value) < min_len:
        raise InvalidInput(field, "must not be empty" if min_len == 1 else f"needs at least {min_len} characters")
    if "\x00" in value:
        raise InvalidInput(field, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(field, "is not valid Unicode text (lone surrogate)") from None
    if pattern is not None and not pattern[0].fullmatch(value):
        raise InvalidInput(field, f"must be {pattern[1]}")
    return value


def timestamp(field: str, value: object) -> int:
    """``value`` if it is an integer count of Unix seconds (bool and float are refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field, f"must be an integer of Unix seconds, not {_type_name(value)}")
    if not 0 <= value <= MAX_TIMESTAMP:
        raise InvalidInput(field, f"must be between 0 and {MAX_TIMESTAMP}")
    return value


def count(field: str, value: object, *, low: int, high: int) -> int:
    """``value`` if it is an integer in ``low..high`` (bool refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(field, f"must be an integer, not {_type_name(value)}")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}")
    return value


def flag(field: str, value: object) -> bool:
    """``value`` if it is a bool (0 and 1 are refused: a caller mixing them up has a bug)."""
    if not isinstance(value, bool):
        raise InvalidInput(field, f"must be a bool, not {_type_name(value)}")
    return value


def _check_json(field: str, value: object, path: str, depth: int) -> None:
    if depth > MAX_ATTRS_DEPTH:
        raise InvalidInput(field, f"nested deeper than {MAX_ATTRS_DEPTH} levels at {path or '/'}")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(field, f"{path or '/'}: {value} is not a JSON number")
        return
    if isinstance(value, str):
        text(f"{field}{path}", value, max_len=MAX_ATTRS_BYTES, min_len=0)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(field, item, f"{path}/{index}", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(field, f"{path or '/'}: key {key!r} is not a string")
            text(f"{field}{path}", key, max_len=MAX_ATTRS_BYTES, min_len=0)
            _check_json(field, item, f"{path}/{key}", depth + 1)
        return
    raise InvalidInput(field, f"{path or '/'}: {_type_name(value)} is not a JSON value")


def attrs_json(field: str, value: object) -> str:
    """``value`` (a mapping of data point name → JSON value) as compact UTF-8 JSON text, at most 64 KiB."""
    if not isinstance(value, Mapping):
        raise InvalidInput(field, f"must be a mapping of data point names to values, not {_type_name(value)}")
    _check_json(field, value, "", 0)
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:  # e.g. an integer beyond the int-to-str digit limit
        raise InvalidInput(field, str(exc)) from exc
    if len(encoded.encode("utf-8")) > MAX_ATTRS_BYTES:
        raise InvalidInput(field, f"is more than {MAX_ATTRS_BYTES} bytes as JSON")
    return encoded


def json_document(field: str, value: Any) -> str:
    """A JSON document already known to be serialisable (e.g. a schema export), as compact UTF-8 text."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(field, f"cannot be stored as JSON: {exc}") from exc
