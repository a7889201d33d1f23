"""Device data for apps: ``GET /app/devdata/{did}/latest`` (§3.8) and ``GET /app/datapoint`` (§3.13)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import MAX_PATH_PARAM, Api, Auth, Call, Empty, Query, Reply
from gizdev.cloud.http.auth import check_served, optional_user
from gizdev.cloud.http.control import lookup_device
from gizdev.cloud.storage import InvalidInput, NotFound
from gizdev.schema.loader import schema_to_json

__all__ = ["LATEST_WINDOW_S", "api", "routes"]

api = Api("devdata")
routes = api.routes

LATEST_WINDOW_S = 24 * 3600  # "the last reported values within the last 24 hours" (§3.8)


class Latest(Reply):
    did: str
    updated_at: int  # Unix seconds; 0 when nothing was reported in the last 24 hours
    attr: dict[str, Any]


@api.endpoint(
    "GET",
    "/app/devdata/{did:[^/]+}/latest",  # any DID text reaches the handler: 9014, not a bare 404
    summary="The device's last reported data point values (within 24 hours)",
    auth=Auth.APP,
    responses={200: Latest},
    errors=(Code.TOKEN_INVALID, Code.DEVICE_NOT_FOUND, Code.DEVICE_NOT_BOUND),
)
async def latest(call: Call[Empty, Empty]) -> web.Response:
    ctx, app, request = call.ctx, call.app, call.request
    # The vendor serves this with the app id alone (§3.8, and the seed's example); a token, when sent, must be
    # valid and the device bound to its user.
    user = await optional_user(request, app)
    device = await lookup_device(ctx, call.path("did"))
    check_served(app, device.product_key)  # without a token, the app's products are all that guards the data
    if user is not None:
        if not await ctx.storage.is_bound(user.uid, device.did):
            raise ApiError(Code.DEVICE_NOT_BOUND)
        ctx.bus.activity.record(device.did, user.uid)
    data = await ctx.storage.get_latest(device.did)
    if data is None or data.updated_at < ctx.now() - LATEST_WINDOW_S:
        return web.json_response({"did": device.did, "updated_at": 0, "attr": {}})
    return web.json_response({"did": device.did, "updated_at": data.updated_at, "attr": data.attrs})


class ProductQuery(Query):
    # any other text is a key that names no product: 9002
    product_key: str = Field(min_length=1, max_length=MAX_PATH_PARAM)


@api.endpoint(
    "GET",
    "/app/datapoint",
    summary="A product's data points (the console's export format)",
    auth=Auth.APP,
    query=ProductQuery,
    responses={200: None},
    errors=(Code.PRODUCT_KEY_INVALID, Code.DATAPOINT_DATA_NOT_FOUND),
)
async def datapoint(call: Call[Empty, ProductQuery]) -> web.Response:
    ctx = call.ctx
    try:
        product = await ctx.storage.get_product(call.query.product_key)
    except (NotFound, InvalidInput):
        raise ApiError(Code.PRODUCT_KEY_INVALID) from None
    if product.schema is None:
        raise ApiError(Code.DATAPOINT_DATA_NOT_FOUND)
    return web.json_response(schema_to_json(product.schema))
