"""Remote control: ``POST /app/control/{did}`` with ``attrs`` or ``raw`` (Open API §3.10).

Checks, in order: the form (9015), the device (9014), disabled (9023), the binding (9017), the values against the
product's schema (9029 no data points, 9025 a bad value), online (9042), then the publish (9021). Everything is
validated before anything is sent, so a request with one bad value sends nothing.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.auth import require_app, require_user
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.http.forms import invalid, json_object
from gizdev.cloud.storage import Device, InvalidInput, NotFound
from gizdev.errors import BrokerError, CodecError

__all__ = ["MAX_RAW_BYTES", "app_client_id", "attrs_p0", "lookup_device", "routes"]

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_RAW_BYTES = 4096  # GAgent's MQTT buffers are 4 KiB; a P0 this large cannot reach an MCU anyway


def app_client_id(uid: str) -> str:
    """The ``<clientid>`` of ``app2dev/<did>/<clientid>`` for a user: ≤ 23 characters (GA-h PHONECLIENTID)."""
    return f"usr{uid[:20]}"


async def lookup_device(ctx: CloudContext, did: str) -> Device:
    try:
        return await ctx.storage.get_device(did)
    except (NotFound, InvalidInput):
        raise ApiError(Code.DEVICE_NOT_FOUND) from None


async def attrs_p0(ctx: CloudContext, device: Device, attrs: object) -> bytes:
    """The P0 write of ``attrs`` with ``device``'s product codec: 9029 without data points, 9025 for a bad value."""
    if not isinstance(attrs, dict) or not attrs:
        raise invalid("attrs must be a non-empty object of data point values")
    codec = await ctx.products.get(device.product_key)
    if codec is None:
        raise ApiError(Code.DATAPOINT_DATA_NOT_FOUND)
    try:
        return codec.encode("write", codec.attrs_from_json(attrs))
    except CodecError as exc:
        raise ApiError(Code.ATTR_INVALID, str(exc)[:300]) from None


def _raw_p0(raw: object, coding: object) -> bytes:
    if coding is None:
        if not isinstance(raw, list):
            raise invalid("raw must be a list of bytes (or a string with binary_coding hex or base64)")
        if len(raw) > MAX_RAW_BYTES:
            raise invalid(f"raw is longer than {MAX_RAW_BYTES} bytes")
        if not all(type(item) is int and 0 <= item <= 255 for item in raw):
            raise invalid("raw must hold integers 0-255")
        data = bytes(raw)
    elif coding in ("hex", "base64"):
        if not isinstance(raw, str):
            raise invalid(f"raw must be a {coding} string when binary_coding is {coding}")
        if len(raw) > 2 * MAX_RAW_BYTES:
            raise invalid(f"raw is longer than {MAX_RAW_BYTES} bytes")
        try:
            data = bytes.fromhex(raw) if coding == "hex" else base64.b64decode(raw, validate=True)
        except (ValueError, binascii.Error):
            raise invalid(f"raw is not valid {coding}") from None
    else:
        raise invalid("binary_coding must be hex or base64")
    if not data:
        raise invalid("raw must not be empty")
    if len(data) > MAX_RAW_BYTES:
        raise invalid(f"raw is longer than {MAX_RAW_BYTES} bytes")
    return data


@routes.post("/app/control/{did:[^/]+}")  # any DID text reaches the handler: 9014, not aiohttp's bare 404
async def control(request: web.Request) -> web.Response:
    ctx = context_of(request)
    app = await require_app(request)
    user = await require_user(request, app)
    body: dict[str, Any] = await json_object(request)
    if "attrs" not in body and "raw" not in body:
        raise invalid("give attrs or raw")
    raw = _raw_p0(body["raw"], body.get("binary_coding")) if "raw" in body else None
    key = (user.uid, request.match_info["did"])
    access = ctx.device_access.get(key)
    if access is None:
        try:
            access = await ctx.storage.device_for_user(*key)
        except (NotFound, InvalidInput):
            raise ApiError(Code.DEVICE_NOT_FOUND) from None
        ctx.device_access.put(key, access)
    device, bound = access
    # Disabled first: disabling a device also disables its bindings, so the binding check would hide it.
    if device.is_disabled:
        raise ApiError(Code.DEVICE_DISABLED)
    if not bound:
        raise ApiError(Code.DEVICE_NOT_BOUND)
    frames = [await attrs_p0(ctx, device, body["attrs"])] if "attrs" in body else []
    if raw is not None:
        frames.append(raw)
    if not ctx.bus.is_online(device.did):  # the bus applies the broker's events: fresher than any row
        raise ApiError(Code.DEVICE_OFFLINE)
    try:
        for p0 in frames:
            await ctx.bus.send_control(device.did, p0, app_client_id(user.uid))
    except BrokerError as exc:
        raise ApiError(Code.SEND_COMMAND_FAILED, "the broker is not reachable") from exc
    ctx.bus.activity.record(device.did, user.uid)
    _LOGGER.debug("user %s controlled %s: %s", user.uid, device.did, " ".join(p0.hex() for p0 in frames))
    return web.json_response({})
