"""Users and their tokens: ``POST /app/users``, ``POST /app/login``, ``GET /app/users`` (Open API §3.2-§3.4)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.auth import require_app, require_user
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.http.forms import invalid, json_object, required_string
from gizdev.cloud.security import hash_password, new_token, token_digest, verify_password
from gizdev.cloud.storage import AlreadyExists, App, NotFound, User

__all__ = ["routes"]

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_USERNAME_LEN = 128
MAX_PHONE_ID_LEN = 128
# Sign-up variants of the vendor's API that need mail, SMS or OAuth providers this server does not have.
_UNSUPPORTED = {
    "email": "sign-up by email is not supported by this server yet; use username and password",
    "phone": "sign-up by phone needs SMS codes, which this server does not send; use username and password",
    "authData": "third-party (OAuth) sign-up is not supported by this server",
}


async def _issue_token(ctx: CloudContext, user: User) -> dict[str, Any]:
    if user.is_disabled:
        # 9026 "user invalid!": the credentials are right (checked first, so this tells nothing to a guesser), the
        # account is not usable. Requests with its old tokens get 9004, as for any token that stopped working.
        raise ApiError(Code.USER_INVALID, "this user is disabled")
    token = new_token()
    expire_at = ctx.now() + ctx.settings.token_lifetime_s
    await ctx.storage.store_token(token_digest(token), user.uid, user.appid, expire_at)
    return {"uid": user.uid, "token": token, "expire_at": expire_at}


async def _hash(ctx: CloudContext, password: str) -> str:
    async with ctx.hashing:  # each hash holds the KDF's memory: bound how many run at once
        return await asyncio.to_thread(hash_password, password, ctx.settings.kdf)


async def _verify(ctx: CloudContext, stored: str | None, password: str) -> bool:
    async with ctx.hashing:
        return await asyncio.to_thread(verify_password, stored, password, ctx.settings.kdf)


async def _anonymous(ctx: CloudContext, app: App, phone_id: str) -> User:
    # Anonymous users "log in" by creating themselves again (§3.2): the same phone_id is the same account.
    try:
        return await ctx.storage.get_user_by_phone(app.appid, phone_id)
    except NotFound:
        pass
    try:
        user = await ctx.storage.create_user(app.appid, phone_id=phone_id)
    except AlreadyExists:  # a concurrent request created it first
        return await ctx.storage.get_user_by_phone(app.appid, phone_id)
    _LOGGER.info("app %s: anonymous user %s created", app.appid, user.uid)
    return user


@routes.post("/app/users")
async def create_user(request: web.Request) -> web.Response:
    ctx = context_of(request)
    app = await require_app(request)
    body = await json_object(request)
    # A vendor sign-up variant (email + password, phone + code) names its own fields: say that the variant is
    # not offered, rather than that the username it never meant to send is missing.
    unsupported = next((reason for key, reason in _UNSUPPORTED.items() if key in body), None)
    if "phone_id" in body:
        if "username" in body or "password" in body:
            raise invalid("give phone_id alone, or username and password")
        user = await _anonymous(ctx, app, required_string(body, "phone_id", max_len=MAX_PHONE_ID_LEN))
    elif unsupported is not None and "username" not in body:
        raise invalid(unsupported)
    elif "username" in body or "password" in body:
        username = required_string(body, "username", max_len=MAX_USERNAME_LEN)
        password = body.get("password")
        if password is None:
            raise invalid("password is required")
        ctx.settings.password_policy.check(password)
        try:
            await ctx.storage.get_user_by_username(app.appid, username)
        except NotFound:
            pass
        else:
            raise ApiError(Code.USERNAME_UNAVAILABLE)
        user = await ctx.storage.create_user(app.appid, username=username, password_hash=await _hash(ctx, password))
        _LOGGER.info("app %s: user %s created", app.appid, user.uid)
    else:
        raise invalid("give phone_id, or username and password")
    return web.json_response(await _issue_token(ctx, user), status=201)


@routes.post("/app/login")
async def login(request: web.Request) -> web.Response:
    ctx = context_of(request)
    app = await require_app(request)
    body = await json_object(request)
    username = required_string(body, "username", max_len=MAX_USERNAME_LEN)
    password = required_string(body, "password", max_len=ctx.settings.password_policy.max_length)
    try:
        user: User | None = await ctx.storage.get_user_by_username(app.appid, username)
    except NotFound:
        user = None
    # An unknown user costs a dummy verification too, so timing does not tell which usernames exist.
    if not await _verify(ctx, user.password_hash if user else None, password) or user is None:
        raise ApiError(Code.USERNAME_PASSWORD_ERROR)
    return web.json_response(await _issue_token(ctx, user))


@routes.get("/app/users")
async def get_user(request: web.Request) -> web.Response:
    app = await require_app(request)
    user = await require_user(request, app)
    return web.json_response(
        {
            "uid": user.uid,
            "username": user.username or "",
            "phone": "",
            "email": "",
            "name": "",
            "gender": "N",
            "birthday": "",
            "address": "",
            "lang": "en",
            "remark": "",
            "is_anonymous": user.is_anonymous,
        }
    )
