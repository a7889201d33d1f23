"""Who is calling: the application (``X-Gizwits-Application-Id``) and the user (``X-Gizwits-User-token``)."""

from __future__ import annotations

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.context import context_of
from gizdev.cloud.security import token_digest
from gizdev.cloud.storage import App, InvalidInput, NotFound, User

__all__ = ["APP_HEADER", "TOKEN_HEADER", "client_address", "optional_user", "require_app", "require_user"]

APP_HEADER = "X-Gizwits-Application-Id"
TOKEN_HEADER = "X-Gizwits-User-token"
_MAX_HEADER = 128


def client_address(request: web.Request) -> str:
    """The peer's address, what abuse limits count by (the cloud listens on its own, not behind a proxy)."""
    return request.remote or "unknown"


async def require_app(request: web.Request) -> App:
    """The calling application; 9003 if the header is missing or names no application."""
    appid = request.headers.get(APP_HEADER, "")
    if not appid or len(appid) > _MAX_HEADER:
        raise ApiError(Code.APPID_INVALID, f"{APP_HEADER} is missing" if not appid else None)
    ctx = context_of(request)
    app = ctx.apps.get(appid)
    if app is None:
        try:
            app = await ctx.storage.get_app(appid)
        except (NotFound, InvalidInput):
            raise ApiError(Code.APPID_INVALID) from None
        ctx.apps.put(appid, app)
    return app


async def optional_user(request: web.Request, app: App) -> User | None:
    """The user of the token header if one is sent (9004 if it is not valid for ``app``), else None."""
    if TOKEN_HEADER not in request.headers:
        return None
    return await require_user(request, app)


async def require_user(request: web.Request, app: App) -> User:
    """The user whose token is sent; 9004 if it is missing, unknown, expired, issued for another app, or its user
    is disabled."""
    token = request.headers.get(TOKEN_HEADER, "")
    if not token or len(token) > _MAX_HEADER:
        raise ApiError(Code.TOKEN_INVALID, f"{TOKEN_HEADER} is missing" if not token else None)
    ctx = context_of(request)
    # Kept for a second only (SESSION_CACHE_S): a disabled user (`gizdev cloud user disable`, often from another
    # process) is refused within it; a burst of requests with one token costs one indexed query.
    digest = token_digest(token)
    cached = ctx.sessions.get(digest)
    if cached is None:
        found = await ctx.storage.lookup_session(digest, now=ctx.now())
        if found is None:
            raise ApiError(Code.TOKEN_INVALID)
        cached = (found[0].appid, found[1])
        ctx.sessions.put(digest, cached)
    if cached[0] != app.appid:
        raise ApiError(Code.TOKEN_INVALID)
    return cached[1]
