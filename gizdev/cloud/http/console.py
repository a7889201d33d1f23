"""The web console at ``/console/``: static files shipped in the package (``gizdev/cloud/console/``), and three small
endpoints of its own under ``/console/api/``.

The page is a client of the Open API like any app: it signs in with ``POST /app/login`` and sends the user's token
on every call, so it can do nothing the API would not let that user do. What it needs beyond the Open API:

* ``GET /console/api/apps``: the app ids and names to pick from at sign-in (never a secret, nor the products).
  An app id is an identifier every app build carries and sends in clear, not a credential; still, a list of them
  tells whoever can reach the port which apps to try passwords against, so it is answered only when the server
  says so (``HttpSettings.console_app_list``: on for a loopback listener unless switched off); typing an app id
  always works.
* ``GET /console/api/devices/{did}/presence``: when the cloud last heard from a device of the user's (the
  bindings list says whether it is online, not since when).
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

from gizdev.cloud.errors import Code
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, EmptyReply, Reply
from gizdev.cloud.http.control import accessible_device, attrs_p0

__all__ = ["PREFIX", "SECURITY_HEADERS", "STATIC_DIR", "api", "headers_middleware", "routes"]

PREFIX = "/console"
STATIC_DIR = Path(__file__).resolve().parent.parent / "console"

SECURITY_HEADERS = {
    # No inline script or style, nothing from elsewhere; the WebSocket API is on this same host and port.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
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
}

routes = web.RouteTableDef()  # the static files
api = Api("console")  # the console's own endpoints (declared: they are in /openapi.json)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _assets() -> dict[str, Path]:
    """The files served, by name: what the package ships, nothing else (no path from a request reaches the disk)."""
    if not STATIC_DIR.is_dir():  # an install without the package data: the API still works, /console/ is 404
        return {}
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


class ListedApp(Reply):
    appid: str
    name: str


class AppList(Reply):
    listed: bool  # false: the server does not list its apps (the app id is typed)
    apps: list[ListedApp]


class Presence(Reply):
    did: str
    is_online: bool
    last_seen: int  # Unix seconds the cloud last heard from the device; 0: never
    online_changed_at: int  # when it last came online or went offline; 0: never


class CheckControl(Body):
    attrs: dict[str, Any]


@api.endpoint(
    "GET",
    PREFIX + "/api/apps",
    summary="The console's sign-in: the app ids and names to pick from (when the server lists them)",
    auth=Auth.NONE,
    responses={200: AppList},
)
async def list_apps(call: Call[Empty, Empty]) -> AppList:
    if not call.ctx.settings.console_app_list:
        return AppList(listed=False, apps=[])
    apps = await call.ctx.storage.list_apps()
    return AppList(listed=True, apps=[ListedApp(appid=app.appid, name=app.name) for app in apps])


@api.endpoint(
    "GET",
    PREFIX + "/api/devices/{did}/presence",
    summary="When the cloud last heard from a device of the user's (the bindings list does not say)",
    auth=Auth.USER,
    responses={200: Presence},
    errors=(Code.DEVICE_NOT_FOUND, Code.DEVICE_DISABLED, Code.DEVICE_NOT_BOUND),
)
async def presence(call: Call[Empty, Empty]) -> Presence:
    device = await accessible_device(call.ctx, call.app, call.user.uid, call.path("did"))
    # The access check may come from its cache: the row again, for a last_seen of now.
    fresh = await call.ctx.storage.get_device(device.did)
    return Presence(
        did=fresh.did,
        is_online=call.ctx.bus.is_online(fresh.did),
        last_seen=fresh.last_seen or 0,
        online_changed_at=fresh.online_changed_at or 0,
    )


@api.endpoint(
    "POST",
    PREFIX + "/api/devices/{did}/check",
    summary="POST /app/control's checks of attrs without sending anything: {} if it would be sent",
    auth=Auth.USER,
    body=CheckControl,
    responses={200: EmptyReply},
    errors=(Code.DEVICE_NOT_FOUND, Code.DEVICE_DISABLED, Code.DEVICE_NOT_BOUND, Code.DATAPOINT_DATA_NOT_FOUND,
            Code.ATTR_INVALID),
)  # fmt: skip
async def check_control(call: Call[CheckControl, Empty]) -> EmptyReply:
    device = await accessible_device(call.ctx, call.app, call.user.uid, call.path("did"))
    await attrs_p0(call.ctx, device, call.body.attrs)
    return EmptyReply()
