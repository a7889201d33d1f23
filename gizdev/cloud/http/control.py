"""Remote control: ``POST /app/control/{did}`` with ``attrs`` or ``raw`` (Open API §3.10).

Checks, in order: the form (9015), the device (9014), disabled (9023), the binding (9017), the values against the
product's schema (9029 no data points, 9025 a bad value), online (9042), then the publish (9021). Everything is
validated before anything is sent, so a request with one bad value sends nothing.

The checks are functions of their own (:func:`accessible_device`, :func:`attrs_p0`, :func:`deliver`): the realtime
WebSocket API's ``c2s_write``/``c2s_read``/``c2s_raw`` make the same ones, with the same codes.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from typing import Any, Literal

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, EmptyReply
from gizdev.cloud.http.auth import check_served
from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.http.forms import invalid
from gizdev.cloud.storage import App, Device, InvalidInput, NotFound
from gizdev.codec.envelope import BusinessCmd, encode_envelope
from gizdev.errors import BrokerError, CodecError

__all__ = [
    "MAX_RAW_BYTES",
    "accessible_device",
    "api",
    "app_client_id",
    "attrs_p0",
    "deliver",
    "lookup_device",
    "raw_bytes",
    "routes",
]

_LOGGER = logging.getLogger(__name__)
api = Api("control")
routes = api.routes

MAX_RAW_BYTES = 4096  # GAgent's MQTT buffers are 4 KiB; a P0 this large cannot reach an MCU anyway


def app_client_id(uid: str) -> str:
    """The ``<clientid>`` of ``app2dev/<did>/<clientid>`` for a user: ≤ 23 characters (GA-h PHONECLIENTID)."""
    return f"usr{uid[:20]}"


async def lookup_device(ctx: CloudContext, did: str) -> Device:
    try:
        return await ctx.storage.get_device(did)
    except (NotFound, InvalidInput):
        raise ApiError(Code.DEVICE_NOT_FOUND) from None


async def accessible_device(ctx: CloudContext, app: App, uid: str, did: str) -> Device:
    """The device ``did`` if ``uid`` of ``app`` may use it: 9014 no such device (or not of a product ``app``
    serves), 9023 disabled, 9017 not bound to ``uid``."""
    key = (uid, did)
    access = ctx.device_access.get(key)
    if access is None:
        try:
            access = await ctx.storage.device_for_user(*key)
        except (NotFound, InvalidInput):
            raise ApiError(Code.DEVICE_NOT_FOUND) from None
        ctx.device_access.put(key, access)
    device, bound = access
    check_served(app, device.product_key)  # before anything that tells the device exists
    # Disabled first: disabling a device also disables its bindings, so the binding check would hide it.
    if device.is_disabled:
        raise ApiError(Code.DEVICE_DISABLED)
    if not bound:
        raise ApiError(Code.DEVICE_NOT_BOUND)
    return device


async def attrs_p0(ctx: CloudContext, device: Device, attrs: object) -> bytes:
    """The P0 write (action 0x01) of app values for the device's product: 9015 not an object, 9029 no data points,
    9025 a value the product's codec refuses."""
    if not isinstance(attrs, dict) or not attrs:
        raise invalid("attrs must be a non-empty object of data point values")
    codec = await ctx.products.get(device.product_key)
    if codec is None:
        raise ApiError(Code.DATAPOINT_DATA_NOT_FOUND)
    try:
        return codec.encode("write", codec.attrs_from_json(attrs))
    except CodecError as exc:
        raise ApiError(Code.ATTR_INVALID, str(exc)[:300]) from None


def raw_bytes(raw: object, coding: object) -> bytes:
    """The bytes of a ``raw`` field: a list of 0-255, or a hex/base64 string with ``binary_coding``; 9015 if not."""
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


async def deliver(ctx: CloudContext, device: Device, uid: str, frames: Sequence[bytes], client_id: str) -> None:
    """Publish whole business frames to the device, which must be online (9042); 9021 if the broker is away.
    The user counts as an app online for the device (0x0210)."""
    # The bus applies the broker's events (fresher than any row); with workers sharing a broker, it also asks the
    # database for a device another worker heard.
    if not await ctx.bus.reachable(device.did):
        raise ApiError(Code.DEVICE_OFFLINE)
    try:
        for frame in frames:
            await ctx.bus.send_frame(device.did, frame, client_id)
    except BrokerError as exc:
        raise ApiError(Code.SEND_COMMAND_FAILED, "the broker is not reachable") from exc
    ctx.bus.activity.record(device.did, uid)


class ControlRequest(Body):
    """§3.10: data point values by name (``attrs``), and/or a raw P0 (``raw``: bytes 0-255, or a hex or base64
    string with ``binary_coding``)."""

    attrs: dict[str, Any] | None = None
    raw: list[int] | str | None = None
    binary_coding: Literal["hex", "base64"] | None = None


@api.endpoint(
    "POST",
    "/app/control/{did:[^/]+}",  # any DID text reaches the handler: 9014, not aiohttp's bare 404
    summary="Send data point values (attrs) or a raw P0 to a bound, online device",
    auth=Auth.USER,
    body=ControlRequest,
    responses={200: EmptyReply},
    errors=(
        Code.DEVICE_NOT_FOUND,
        Code.DEVICE_DISABLED,
        Code.DEVICE_NOT_BOUND,
        Code.DATAPOINT_DATA_NOT_FOUND,
        Code.ATTR_INVALID,
        Code.DEVICE_OFFLINE,
        Code.SEND_COMMAND_FAILED,
    ),
)
async def control(call: Call[ControlRequest, Empty]) -> web.Response:
    ctx, app, user, body = call.ctx, call.app, call.user, call.body
    if body.attrs is None and body.raw is None:
        raise invalid("give attrs or raw")
    raw = raw_bytes(body.raw, body.binary_coding) if body.raw is not None else None
    device = await accessible_device(ctx, app, user.uid, call.path("did"))
    p0s = [await attrs_p0(ctx, device, body.attrs)] if body.attrs is not None else []
    if raw is not None:
        p0s.append(raw)
    frames = [encode_envelope(BusinessCmd.TRANSMIT, p0) for p0 in p0s]
    await deliver(ctx, device, user.uid, frames, app_client_id(user.uid))
    _LOGGER.debug("user %s controlled %s: %s", user.uid, device.did, " ".join(p0.hex() for p0 in p0s))
    return web.json_response({})
