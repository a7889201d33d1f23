"""The aiohttp application: routes of every module, and the one error boundary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code, error_list, error_response
from gizdev.cloud.http import bindings, control, devdata, device_api, users
from gizdev.cloud.http.context import CONTEXT, CloudContext

__all__ = ["make_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes the Gizwits error body (errors.error_response is the only mapping)."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        status, body = error_response(ApiError(Code.FORM_INVALID, f"request body over {request.client_max_size} bytes"))
    except web.HTTPException:
        raise  # aiohttp's own answers: unknown path (404), wrong method (405)
    except Exception as exc:
        status, body = error_response(exc)
    return web.json_response(body, status=status)


async def list_errors(request: web.Request) -> web.Response:
    return web.json_response(error_list())


def make_app(ctx: CloudContext) -> web.Application:
    """The cloud's HTTP application for ``ctx`` (request bodies capped at ``ctx.settings.max_body_bytes``)."""
    app = web.Application(middlewares=[error_boundary], client_max_size=ctx.settings.max_body_bytes)
    app[CONTEXT] = ctx
    for module in (device_api, users, bindings, control, devdata):
        app.add_routes(module.routes)
    app.router.add_get("/errors", list_errors)
    return app
