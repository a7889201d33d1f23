"""Device data for apps: ``GET /app/devdata/{did}/latest`` (§3.8) and ``GET /app/datapoint`` (§3.13)."""

from __future__ import annotations

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.auth import check_served, optional_user, require_app
from gizdev.cloud.http.context import context_of
from gizdev.cloud.http.control import lookup_device
from gizdev.cloud.http.forms import invalid
from gizdev.cloud.storage import InvalidInput, NotFound
from gizdev.schema.loader import schema_to_json

__all__ = ["LATEST_WINDOW_S", "routes"]

routes = web.RouteTableDef()

LATEST_WINDOW_S = 24 * 3600  # "the last reported values within the last 24 hours" (§3.8)


@routes.get("/app/devdata/{did:[^/]+}/latest")  # any DID text reaches the handler: 9014, not a bare 404
async def latest(request: web.Request) -> web.Response:
    ctx = context_of(request)
    app = await require_app(request)
    # The vendor serves this with the app id alone (§3.8, and the seed's example); a token, when sent, must be
    # valid and the device bound to its user.
    user = await optional_user(request, app)
    device = await lookup_device(ctx, request.match_info["did"])
    check_served(app, device.product_key)  # without a token, the app's products are all that guards the data
    if user is not None:
        if not await ctx.storage.is_bound(user.uid, device.did):
            raise ApiError(Code.DEVICE_NOT_BOUND)
        ctx.bus.activity.record(device.did, user.uid)
    data = await ctx.storage.get_latest(device.did)
    if data is None or data.updated_at < ctx.now() - LATEST_WINDOW_S:
        return web.json_response({"did": device.did, "updated_at": 0, "attr": {}})
    return web.json_response({"did": device.did, "updated_at": data.updated_at, "attr": data.attrs})


@routes.get("/app/datapoint")
async def datapoint(request: web.Request) -> web.Response:
    ctx = context_of(request)
    await require_app(request)
    product_key = request.query.get("product_key", "")
    if not product_key:
        raise invalid("product_key is required")
    try:
        product = await ctx.storage.get_product(product_key)
    except (NotFound, InvalidInput):
        raise ApiError(Code.PRODUCT_KEY_INVALID) from None
    if product.schema is None:
        raise ApiError(Code.DATAPOINT_DATA_NOT_FOUND)
    return web.json_response(schema_to_json(product.schema))
