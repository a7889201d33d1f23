"""The aiohttp application: routes of every module, and the one error boundary."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from gizdev import __version__
from gizdev.cloud.errors import ApiError, Code, error_list, error_response
from gizdev.cloud.http import (
    app_tokens,
    bindings,
    broker_auth,
    codes,
    console,
    control,
    devdata,
    device_api,
    realtime,
    reset,
    scheduler,
    status,
    users,
)
from gizdev.cloud.http.api import Api, Auth, Call, Empty, Endpoint, install_app_token_check, openapi_document
from gizdev.cloud.http.context import CONTEXT, CloudContext
from gizdev.cloud.throttle import Throttled

if TYPE_CHECKING:
    from gizdev.metrics import HttpMetrics

__all__ = ["make_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes the Gizwits error body (errors.error_response is the only mapping)."""
    headers: dict[str, str] = {}
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        status, body = error_response(ApiError(Code.FORM_INVALID, f"request body over {request.client_max_size} bytes"))
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        # aiohttp's router answers these in plain text ("404: Not Found"); clients parse the JSON body of every
        # error. §3.12 has no code for "no such API", so 9015 "form invalid!": the request as sent is not one
        # this server takes, which is what 9015 means to an app; the HTTP status keeps the distinction.
        _, body = error_response(ApiError(Code.FORM_INVALID, f"no API at {request.method} {request.path}"))
        status = exc.status
        if isinstance(exc, web.HTTPMethodNotAllowed):
            headers["Allow"] = exc.headers["Allow"]
            body["detail_message"] = f"{request.path} does not take {request.method}; it takes {headers['Allow']}"
    except web.HTTPException:
        raise  # any other answer aiohttp makes on its own
    except Exception as exc:
        status, body = error_response(exc)
        if isinstance(exc, Throttled):
            headers["Retry-After"] = str(exc.retry_after_s)
    return web.json_response(body, status=status, headers=headers)


documents = Api("documents")


@documents.endpoint(
    "GET", "/errors", summary="Every error code this server answers", auth=Auth.NONE, responses={200: None}
)
async def list_errors(call: Call[Empty, Empty]) -> web.Response:
    return web.json_response(error_list())


#: Modules whose endpoints are declared (gizdev.cloud.http.api); the others are added by their route tables alone.
DECLARED: tuple[Api, ...] = (
    device_api.api,
    users.api,
    bindings.api,
    control.api,
    devdata.api,
    status.api,
    app_tokens.api,
    codes.api,
    reset.api,
    scheduler.api,
    broker_auth.api,
    documents,
    console.api,
)


def declared_endpoints() -> list[Endpoint]:
    return [endpoint for module in DECLARED for endpoint in module.endpoints]


@documents.endpoint(
    "GET", "/openapi.json", summary="This document: every declared endpoint", auth=Auth.NONE, responses={200: None}
)
async def openapi(call: Call[Empty, Empty]) -> web.Response:
    return web.json_response(openapi_document(declared_endpoints(), title="gizdev local cloud", version=__version__))


def metrics_middleware(metrics: HttpMetrics) -> Middleware:
    """Observe every request (route pattern, not the path: a DID in a path must not make a label per device)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info.route.resource
            route = info.canonical if info is not None else "unmatched"
            metrics.observe(request.method, route, status, time.perf_counter() - started)

    return observe


def make_app(ctx: CloudContext, metrics: HttpMetrics | None = None) -> web.Application:
    """The cloud's HTTP application for ``ctx`` (request bodies capped at ``ctx.settings.max_body_bytes``)."""
    middlewares: list[Middleware] = [console.headers_middleware, error_boundary]
    if metrics is not None:
        middlewares.insert(0, metrics_middleware(metrics))  # outside the boundary: sees the status it answered
    app = web.Application(middlewares=middlewares, client_max_size=ctx.settings.max_body_bytes)
    app[CONTEXT] = ctx
    app.add_routes(console.routes)  # the console's static files (its API is declared)
    for declared in DECLARED:
        app.add_routes(declared.routes)
    install_app_token_check(app, app_tokens.check_app_token)

    async def finish_background(_app: web.Application) -> None:
        await ctx.background.drain()  # mails a request started (reset links): a moment to finish, then cancelled

    app.on_shutdown.append(finish_background)
    if ctx.realtime is not None:
        realtime.install(app)
    return app
