"""Application tokens (cloud protocol §3.5): ``POST /app/request_token`` and the check behind ``Auth.APP_TOKEN``.

An app proves it holds its secret with ``X-Gizwits-Application-Auth`` = lower-case hex MD5(appid + appsecret) and
gets a token for the code endpoints (captcha, SMS), sent as ``X-Gizwits-Application-Token``. The token is random
and kept as its digest only; it lasts ``CodeSettings.app_token_ttl_s``. Wrong signatures count against the client
address (9041 once there are too many).
"""

from __future__ import annotations

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import APP_AUTH_HEADER, APP_TOKEN_HEADER, Api, Auth, Call, Empty, Reply
from gizdev.cloud.http.auth import client_address
from gizdev.cloud.http.context import context_of
from gizdev.cloud.security import app_auth_digest, new_token, safe_equal, token_digest
from gizdev.cloud.storage import App

__all__ = ["api", "check_app_token"]

api = Api("app tokens")
_MAX_HEADER = 128


class AppTokenReply(Reply):
    token: str
    expired_at: int  # sic: the vendor's spelling here (user tokens have expire_at), §3.5


@api.endpoint(
    "POST",
    "/app/request_token",
    summary="An application token for the captcha and SMS endpoints (X-Gizwits-Application-Auth = md5(appid+secret))",
    auth=Auth.APP,
    responses={200: AppTokenReply},
    errors=(Code.APPLICATION_AUTH_INVALID, Code.REQUEST_THROTTLED),
)
async def request_token(call: Call[Empty, Empty]) -> AppTokenReply:
    ctx, app = call.ctx, call.app
    settings = ctx.settings.codes
    failures = f"app-auth-ip:{client_address(call.request)}"
    await ctx.throttle.check(failures, settings.failures_per_address, "wrong application signatures")
    given = call.request.headers.get(APP_AUTH_HEADER, "")
    if not safe_equal(given, app_auth_digest(app.appid, app.appsecret)):
        await ctx.throttle.record(failures)
        raise ApiError(Code.APPLICATION_AUTH_INVALID, f"{APP_AUTH_HEADER} is missing" if not given else None)
    await ctx.throttle.take(
        f"app-token-ip:{client_address(call.request)}", settings.app_tokens_per_address, "application tokens"
    )
    token = new_token()
    expired_at = ctx.now() + settings.app_token_ttl_s
    await ctx.storage.store_app_token(token_digest(token), app.appid, expired_at)
    return AppTokenReply(token=token, expired_at=expired_at)


async def check_app_token(request: web.Request, app: App) -> None:
    """9004 unless ``X-Gizwits-Application-Token`` is a live token of ``app`` (installed as Auth.APP_TOKEN)."""
    token = request.headers.get(APP_TOKEN_HEADER, "")
    if not token or len(token) > _MAX_HEADER:
        raise ApiError(Code.TOKEN_INVALID, f"{APP_TOKEN_HEADER} is missing" if not token else None)
    ctx = context_of(request)
    owner = await ctx.storage.app_of_token(token_digest(token), now=ctx.now())
    if owner is None or owner != app.appid:
        raise ApiError(Code.TOKEN_INVALID, f"{APP_TOKEN_HEADER} is not a live token of this application")
