"""Users and their tokens: ``POST /app/users``, ``POST /app/login``, ``GET /app/users`` (Open API §3.2-§3.4)."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, Reply, Text
from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.http.forms import invalid
from gizdev.cloud.http.passwords import hash_new_password as _hash
from gizdev.cloud.security import new_token, token_digest, verify_password
from gizdev.cloud.storage import AlreadyExists, App, NotFound, User

__all__ = ["api", "routes"]

_LOGGER = logging.getLogger(__name__)
api = Api("users")
routes = api.routes

MAX_USERNAME_LEN = 128
MAX_PHONE_ID_LEN = 128
MAX_PASSWORD_FIELD_LEN = 1024  # the password policy has the real limit; this only bounds what is parsed


class CreateUser(Body):
    """The sign-up variants of §3.2; which fields are present says which one is meant."""

    phone_id: Text | None = Field(default=None, min_length=1, max_length=MAX_PHONE_ID_LEN)
    username: Text | None = Field(default=None, min_length=1, max_length=MAX_USERNAME_LEN)
    password: Text | None = Field(default=None, max_length=MAX_PASSWORD_FIELD_LEN)
    email: Text | None = Field(default=None, max_length=254)
    phone: Text | None = Field(default=None, max_length=32)
    code: Text | None = Field(default=None, max_length=32)
    authData: dict[str, Text] | None = None  # noqa: N815  (the vendor's spelling)
    lang: Text | None = Field(default=None, max_length=16)


class Login(Body):
    username: Text = Field(min_length=1, max_length=MAX_USERNAME_LEN)
    password: Text = Field(min_length=1, max_length=MAX_PASSWORD_FIELD_LEN)
    lang: Text | None = Field(default=None, max_length=16)


class TokenReply(Reply):
    uid: str
    token: str
    expire_at: int


class UserReply(Reply):
    uid: str
    username: str
    phone: str
    email: str
    name: str
    gender: str
    birthday: str
    address: str
    lang: str
    remark: str
    is_anonymous: bool


# Sign-up variants of the vendor's API that need mail, SMS or OAuth providers this server does not have.
_UNSUPPORTED = {
    "email": "sign-up by email is not supported by this server yet; use username and password",
    "phone": "sign-up by phone needs SMS codes, which this server does not send; use username and password",
    "authData": "third-party (OAuth) sign-up is not supported by this server",
}


async def _issue_token(ctx: CloudContext, user: User) -> TokenReply:
    if user.is_disabled:
        # 9026 "user invalid!": the credentials are right (checked first, so this tells nothing to a guesser), the
        # account is not usable. Requests with its old tokens get 9004, as for any token that stopped working.
        raise ApiError(Code.USER_INVALID, "this user is disabled")
    token = new_token()
    expire_at = ctx.now() + ctx.settings.token_lifetime_s
    await ctx.storage.store_token(token_digest(token), user.uid, user.appid, expire_at)
    return TokenReply(uid=user.uid, token=token, expire_at=expire_at)


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


@api.endpoint(
    "POST",
    "/app/users",
    summary="Create a user (anonymous by phone_id, or username + password); also the anonymous users' login",
    auth=Auth.APP,
    body=CreateUser,
    responses={201: TokenReply},
    errors=(Code.USERNAME_UNAVAILABLE, Code.USER_INVALID),
)
async def create_user(call: Call[CreateUser, Empty]) -> TokenReply:
    ctx, app, body = call.ctx, call.app, call.body
    given = body.model_fields_set
    # A vendor sign-up variant (email + password, phone + code) names its own fields: say that the variant is
    # not offered, rather than that the username it never meant to send is missing.
    unsupported = next((reason for key, reason in _UNSUPPORTED.items() if key in given), None)
    if body.phone_id is not None:
        if body.username is not None or body.password is not None:
            raise invalid("give phone_id alone, or username and password")
        user = await _anonymous(ctx, app, body.phone_id)
    elif unsupported is not None and body.username is None:
        raise invalid(unsupported)
    elif body.username is not None or body.password is not None:
        if body.username is None:
            raise invalid("username is required")
        if body.password is None:
            raise invalid("password is required")
        ctx.settings.password_policy.check(body.password)
        try:
            await ctx.storage.get_user_by_username(app.appid, body.username)
        except NotFound:
            pass
        else:
            raise ApiError(Code.USERNAME_UNAVAILABLE)
        user = await ctx.storage.create_user(
            app.appid, username=body.username, password_hash=await _hash(ctx, body.password)
        )
        _LOGGER.info("app %s: user %s created", app.appid, user.uid)
    else:
        raise invalid("give phone_id, or username and password")
    return await _issue_token(ctx, user)


@api.endpoint(
    "POST",
    "/app/login",
    summary="Log in with username and password",
    auth=Auth.APP,
    body=Login,
    responses={200: TokenReply},
    errors=(Code.USERNAME_PASSWORD_ERROR, Code.USER_INVALID),
)
async def login(call: Call[Login, Empty]) -> TokenReply:
    ctx, app, body = call.ctx, call.app, call.body
    if len(body.password) > ctx.settings.password_policy.max_length:
        raise invalid(f"password is longer than {ctx.settings.password_policy.max_length} characters")
    try:
        user: User | None = await ctx.storage.get_user_by_username(app.appid, body.username)
    except NotFound:
        user = None
    # An unknown user costs a dummy verification too, so timing does not tell which usernames exist.
    if not await _verify(ctx, user.password_hash if user else None, body.password) or user is None:
        raise ApiError(Code.USERNAME_PASSWORD_ERROR)
    return await _issue_token(ctx, user)


@api.endpoint("GET", "/app/users", summary="The calling user's account", auth=Auth.USER, responses={200: UserReply})
async def get_user(call: Call[Empty, Empty]) -> UserReply:
    user = call.user
    return UserReply(
        uid=user.uid,
        username=user.username or "",
        phone="",
        email="",
        name="",
        gender="N",
        birthday="",
        address="",
        lang="en",
        remark="",
        is_anonymous=user.is_anonymous,
    )
