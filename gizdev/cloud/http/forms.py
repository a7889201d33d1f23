"""Reading request bodies and query strings: every malformed input becomes 9015 "form invalid!" with a detail."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code

__all__ = [
    "MAX_FORM_FIELDS",
    "form_fields",
    "json_object",
    "optional_string",
    "parse_json_object",
    "query_count",
    "query_flag",
    "read_body",
    "required_string",
]

MAX_FORM_FIELDS = 16
MAX_JSON_DEPTH = 32


def invalid(detail: str) -> ApiError:
    return ApiError(Code.FORM_INVALID, detail)


async def read_body(request: web.Request) -> bytes:
    """The raw body, at most the application's ``client_max_size`` (aiohttp refuses more with 413 → 9015)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise invalid(f"request body over {request.client_max_size} bytes") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 9015 for anything else (bad UTF-8, bad JSON, NaN, not an object, too deep)."""
    return parse_json_object(await read_body(request), "the body")


def parse_json_object(data: bytes | str, what: str) -> dict[str, Any]:
    """``data`` as a JSON object (a request body, a WebSocket message); 9015 naming ``what`` for anything else."""
    if not data.strip():
        raise invalid(f"{what} must be a JSON object")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        document = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise invalid(f"{what} is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(document, dict):
        raise invalid(f"{what} must be a JSON object")
    if _depth(document) > MAX_JSON_DEPTH:
        raise invalid(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    return document


async def form_fields(request: web.Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (as devices send it) as a dict; 9015 if malformed."""
    body = await read_body(request)
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid(f"the form is malformed: {str(exc)[:120]}") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise invalid(f"field {key!r} given twice")
        fields[key] = value
    return fields


def required_string(body: Mapping[str, Any], name: str, *, max_len: int = 256, min_len: int = 1) -> str:
    value = body.get(name)
    if value is None:
        raise invalid(f"{name} is required")
    return _string(name, value, max_len=max_len, min_len=min_len)


def optional_string(body: Mapping[str, Any], name: str, *, max_len: int = 256, default: str = "") -> str:
    value = body.get(name)
    if value is None:
        return default
    return _string(name, value, max_len=max_len, min_len=0)


def _string(name: str, value: object, *, max_len: int, min_len: int) -> str:
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if len(value) < min_len:
        raise invalid(f"{name} must not be empty")
    if len(value) > max_len:
        raise invalid(f"{name} is longer than {max_len} characters")
    if "\x00" in value:
        raise invalid(f"{name} contains a NUL character")
    return value


def query_count(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.getall(name, [])
    if not raw:
        return default
    if len(raw) > 1:
        raise invalid(f"{name} given twice")
    text = raw[0]
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise invalid(f"{name} must be a whole number")
    value = int(text)
    if not low <= value <= high:
        raise invalid(f"{name} must be between {low} and {high}")
    return value


def query_flag(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.getall(name, [])
    if not raw:
        return default
    if len(raw) > 1 or raw[0] not in ("0", "1", "true", "false"):
        raise invalid(f"{name} must be 0 or 1")
    return raw[0] in ("1", "true")
