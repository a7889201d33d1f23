"""The web console at ``/console/``: static files shipped in the package (``gizdev/cloud/console/``), and two small
helpers of its own under ``/console/api/``.

The page is a client of the Open API like any app: it signs in with ``POST /app/login`` and sends the user's token
on every call, so it can do nothing the API would not let that user do. What it needs beyond the Open API:

* ``GET /console/api/apps``: the app ids and names to pick from at sign-in (never a secret, nor the products).
  An app id is an identifier every app build carries and sends in clear, not a credential; still, a list of them
  tells whoever can reach the port which apps to try passwords against, so it is answered only when the server
  says so (``HttpSettings.console_app_list``: on for a loopback listener unless switched off); typing an app id
  always works.
* ``POST /console/api/devices/{did}/check``: the server's verdict on a control without sending it, so that an
  out-of-range entry shows the server's own message and nothing reaches the device. It makes exactly the checks
  of ``POST /app/control`` up to, not including, the delivery (:func:`~gizdev.cloud.http.control.accessible_device`,
  :func:`~gizdev.cloud.http.control.attrs_p0`): the same codes and messages.

Every response under ``/console`` carries a Content-Security-Policy without inline scripts, ``X-Frame-Options:
DENY`` and ``nosniff`` (:func:`headers_middleware`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from gizdev.cloud.http.auth import require_app, require_user
from gizdev.cloud.http.context import context_of
from gizdev.cloud.http.control import accessible_device, attrs_p0
from gizdev.cloud.http.forms import json_object

__all__ = ["PREFIX", "SECURITY_HEADERS", "STATIC_DIR", "headers_middleware", "routes"]

PREFIX = "/console"
STATIC_DIR = Path(__file__).resolve().parent.parent / "console"

SECURITY_HEADERS = {
    # No inline script or style, nothing from elsewhere; the WebSocket API is on this same host and port.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # a new version of the package is seen at the next load
}

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _assets() -> dict[str, Path]:
    """The files served, by name: what the package ships, nothing else (no path from a request reaches the disk)."""
    return {path.name: path for path in STATIC_DIR.iterdir() if path.is_file() and path.suffix in _TYPES}


_ASSETS = _assets()


def _is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The console's security headers on every response under ``/console``, errors included (placed outside the
    error boundary, it sees the answer that boundary made)."""
    if not _is_console(request.path):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


@routes.get(PREFIX)
async def console_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently(PREFIX + "/")


@routes.get(PREFIX + "/")
async def index(request: web.Request) -> web.StreamResponse:
    return _file("index.html")


@routes.get(PREFIX + "/{name:[A-Za-z0-9_.-]+}")
async def asset(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["name"])


def _file(name: str) -> web.StreamResponse:
    path = _ASSETS.get(name)
    if path is None:
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix], charset="utf-8")


@routes.get(PREFIX + "/api/apps")
async def list_apps(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if not ctx.settings.console_app_list:
        return web.json_response({"listed": False, "apps": []})
    apps = await ctx.storage.list_apps()
    return web.json_response({"listed": True, "apps": [{"appid": app.appid, "name": app.name} for app in apps]})


@routes.post(PREFIX + "/api/devices/{did:[^/]+}/check")
async def check_control(request: web.Request) -> web.Response:
    """``POST /app/control``'s checks of ``{"attrs": {...}}`` without the delivery: ``{}`` if it would be sent."""
    ctx = context_of(request)
    app = await require_app(request)
    user = await require_user(request, app)
    body: dict[str, Any] = await json_object(request)
    device = await accessible_device(ctx, app, user.uid, request.match_info["did"])
    await attrs_p0(ctx, device, body.get("attrs"))
    return web.json_response({})
