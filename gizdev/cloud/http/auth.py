"""Who is calling: the application (``X-Gizwits-Application-Id``) and the user (``X-Gizwits-User-token``)."""

from __future__ import annotations

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.security import token_digest
from gizdev.cloud.storage import App, InvalidInput, NotFound, User

__all__ = [
    "APP_HEADER",
    "TOKEN_HEADER",
    "app_for_id",
    "check_served",
    "client_address",
    "optional_user",
    "require_app",
    "require_user",
    "user_for_token",
]

APP_HEADER = "X-Gizwits-Application-Id"
TOKEN_HEADER = "X-Gizwits-User-token"
_MAX_HEADER = 128


def client_address(request: web.Request) -> str:
    """The peer's address, what abuse limits count by (the cloud listens on its own, not behind a proxy)."""
    return request.remote or "unknown"


async def require_app(request: web.Request) -> App:
    """The calling application; 9003 if the header is missing or names no application."""
    appid = request.headers.get(APP_HEADER, "")
    if not appid:
        raise ApiError(Code.APPID_INVALID, f"{APP_HEADER} is missing")
    return await app_for_id(context_of(request), appid)


async def app_for_id(ctx: CloudContext, appid: str) -> App:
    """The application ``appid``; 9003 if it names none (the header check, and the WebSocket login's)."""
    if len(appid) > _MAX_HEADER:
        raise ApiError(Code.APPID_INVALID)
    app = ctx.apps.get(appid)
    if app is None:
        try:
            app = await ctx.storage.get_app(appid)
        except (NotFound, InvalidInput):
            raise ApiError(Code.APPID_INVALID) from None
        ctx.apps.put(appid, app)
    return app


def check_served(app: App, product_key: str) -> None:
    """9014 for a device of a product ``app`` is not linked to (``gizdev cloud app link``): through that app the
    device does not exist, so the answer is the one for a DID that names nothing, and tells an attacker nothing.

    The app's products come with the app (``ctx.apps``, cached for its TTL): a link or unlink made by the admin
    CLI, another process, is seen within that time.
    """
    if product_key not in app.product_keys:
        raise ApiError(Code.DEVICE_NOT_FOUND)


async def optional_user(request: web.Request, app: App) -> User | None:
    """The user of the token header if one is sent (9004 if it is not valid for ``app``), else None."""
    if TOKEN_HEADER not in request.headers:
        return None
    return await require_user(request, app)


async def require_user(request: web.Request, app: App) -> User:
    """The user whose token is sent; 9004 if it is missing, unknown, expired, issued for another app, or its user
    is disabled."""
    token = request.headers.get(TOKEN_HEADER, "")
    if not token:
        raise ApiError(Code.TOKEN_INVALID, f"{TOKEN_HEADER} is missing")
    return await user_for_token(context_of(request), app, token)


async def user_for_token(ctx: CloudContext, app: App, token: str) -> User:
    """The user of ``token`` (the header's check, and the WebSocket login's); 9004 as :func:`require_user`."""
    if len(token) > _MAX_HEADER:
        raise ApiError(Code.TOKEN_INVALID)
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
