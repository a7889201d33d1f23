"""Users and their tokens (Open API §3.2-§3.4): sign-up, updates, login, logout, the account.

``POST /app/users`` takes one of the sign-up bodies of §3.2 — which fields are present says which one (a body that
mixes them is 9015): ``phone_id`` (anonymous; the same phone_id again logs that account in), ``username`` +
``password``, ``email`` + ``password`` (a notification mail is sent), ``phone`` + ``password`` + ``code``, ``phone``
+ ``code`` (no password; the same phone with a new code again logs that account in), ``authData`` (the provider
confirms the token first, every time; the same ``src`` + ``uid`` again logs that account in). With a user token,
``username`` + ``password`` and ``phone`` + ``password`` + ``code`` are the two conversions of §3.3 instead (the old
SDKs send them by POST), answered as ``PUT`` answers them.

``PUT /app/users`` takes exactly one pattern of §3.3 per call. An account without a password (anonymous,
third-party, password-less phone) becomes a named one and keeps its uid, tokens and bindings; its ``phone_id`` is
let go, so that an anonymous sign-up with it makes a new account rather than reaching this one.

SMS codes are checked before the phone's availability is told (the code proves the phone is the caller's), and
before anything is written; a refused request changes nothing. Names are compared in their canonical forms
(gizdev.cloud.names). Failed logins are throttled per account and per client address before the password hash is
computed, so a locked account costs no KDF time, and an unknown name is counted the same way as a known one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from aiohttp import web
from pydantic import AfterValidator, Field

from gizdev.cloud import oauth
from gizdev.cloud.codes import Purpose
from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, Reply, Text
from gizdev.cloud.http.auth import TOKEN_HEADER, client_address, optional_user
from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.http.forms import invalid
from gizdev.cloud.http.passwords import hash_new_password as _hash
from gizdev.cloud.messages import Message, SendFailed
from gizdev.cloud.names import Email, Phone, Username, email_key, phone_key, username_key
from gizdev.cloud.security import new_token, token_digest, verify_password
from gizdev.cloud.storage import AlreadyExists, App, NotFound, User

__all__ = ["api", "routes"]

_LOGGER = logging.getLogger(__name__)
api = Api("users")
routes = api.routes

MAX_PHONE_ID_LEN = 128
MAX_PASSWORD_FIELD_LEN = 1024  # the password policy has the real limit; this only bounds what is parsed
MAX_CODE_LEN = 32


_BIRTHDAY = re.compile(r"(?:[0-9]{4}-)?[0-9]{2}-[0-9]{2}")


def _birthday(value: str) -> str:
    """YYYY-MM-DD or MM-DD, a real date (MM-DD: of a leap year, so 02-29 is a birthday)."""
    try:
        if not _BIRTHDAY.fullmatch(value):
            raise ValueError
        dt.date.fromisoformat(value if len(value) == 10 else f"2000-{value}")
    except ValueError:
        raise ValueError("must be a date, YYYY-MM-DD or MM-DD") from None
    return value


Birthday = Annotated[str, AfterValidator(_birthday)]
SmsCode = Annotated[Text, Field(min_length=1, max_length=MAX_CODE_LEN)]
Password = Annotated[Text, Field(min_length=1, max_length=MAX_PASSWORD_FIELD_LEN)]


class AuthData(Body):
    src: Literal["baidu", "sina", "qq"]
    uid: Text = Field(min_length=1, max_length=128)
    token: Text = Field(min_length=1, max_length=2048)


class CreateUser(Body):
    """The sign-up variants of §3.2; which fields are present says which one is meant."""

    phone_id: Text | None = Field(default=None, min_length=1, max_length=MAX_PHONE_ID_LEN)
    username: Username | None = None
    password: Password | None = None
    email: Email | None = None
    phone: Phone | None = None
    code: SmsCode | None = None
    authData: AuthData | None = None  # noqa: N815  (the vendor's spelling)
    lang: Text | None = Field(default=None, max_length=16)


class UpdateUser(Body):
    """The update patterns of §3.3; exactly one per call."""

    username: Username | None = None
    password: Password | None = None
    phone: Phone | None = None
    code: SmsCode | None = None
    old_pwd: Password | None = None
    new_pwd: Password | None = None
    email: Email | None = None
    name: Text | None = Field(default=None, max_length=128)
    gender: Literal["M", "F", "N"] | None = None
    birthday: Birthday | None = None
    address: Text | None = Field(default=None, max_length=256)
    lang: Text | None = Field(default=None, min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    remark: Text | None = Field(default=None, max_length=1024)


class Login(Body):
    username: Text = Field(min_length=1, max_length=512)  # a username, an email or a phone (§3.4)
    password: Text = Field(min_length=1, max_length=MAX_PASSWORD_FIELD_LEN)
    lang: Text | None = Field(default=None, max_length=16)


class TokenReply(Reply):
    uid: str
    token: str
    expire_at: int


class UpdatedReply(Reply):
    updatedAt: str  # noqa: N815  (the vendor's spelling)


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


# --- patterns: which fields make which request --------------------------------------------------------------

SIGN_UPS: Mapping[str, frozenset[str]] = {
    "anonymous": frozenset({"phone_id"}),
    "username": frozenset({"username", "password"}),
    "email": frozenset({"email", "password"}),
    "phone": frozenset({"phone", "password", "code"}),
    "phone_code": frozenset({"phone", "code"}),
    "third_party": frozenset({"authData"}),
}
CONVERSIONS: Mapping[str, frozenset[str]] = {
    "to_username": frozenset({"username", "password"}),
    "to_phone": frozenset({"phone", "password", "code"}),
}
UPDATES: Mapping[str, frozenset[str]] = {
    **CONVERSIONS,
    "password": frozenset({"old_pwd", "new_pwd"}),
    "email": frozenset({"email"}),
    "phone": frozenset({"phone", "code"}),
}
PROFILE = frozenset({"name", "gender", "birthday", "address", "lang", "remark"})


def _spoken(fields: frozenset[str]) -> str:
    return " + ".join(sorted(fields))


def _pattern(body: Body, patterns: Mapping[str, frozenset[str]], *, profile: bool = False) -> str:
    """The name of the pattern whose fields are exactly the body's (``lang`` aside, on sign-ups), or "profile" for
    profile fields alone when ``profile``; 9015 naming the choices otherwise."""
    given = frozenset(body.model_fields_set) - (frozenset() if profile else {"lang"})
    for name, fields in patterns.items():
        if given == fields:
            missing = sorted(field for field in fields if getattr(body, field) is None)
            if missing:
                raise invalid(f"{missing[0]}: must not be null")
            return name
    if profile and given and given <= PROFILE:
        return "profile"
    choices = "; ".join(_spoken(fields) for fields in patterns.values())
    if profile:
        choices += "; profile fields (" + ", ".join(sorted(PROFILE)) + ")"
    shown = ", ".join(sorted(given)) or "no fields"
    raise invalid(f"give exactly one of: {choices} (this body has {shown})")


# --- shared steps -----------------------------------------------------------------------------------------------


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


async def _find(ctx: CloudContext, appid: str, field: str, value: str) -> User | None:
    try:
        return await ctx.storage.find_user(appid, field, value)
    except NotFound:
        return None


_TAKEN = {"username": Code.USERNAME_UNAVAILABLE, "email": Code.EMAIL_UNAVAILABLE, "phone": Code.PHONE_UNAVAILABLE}


def _updated_at(ctx: CloudContext) -> UpdatedReply:
    # The seed's shape: "2011-11-07T21:25:10.623Z" (UTC, milliseconds, Z).
    now = dt.datetime.fromtimestamp(ctx.clock(), dt.UTC)
    return UpdatedReply(updatedAt=now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z")


def _answer(reply: Reply, status: int) -> web.Response:
    return web.json_response(text=reply.model_dump_json(), status=status)


# --- sign-up ----------------------------------------------------------------------------------------------------


async def _anonymous(call: Call[CreateUser, Empty], phone_id: str) -> User:
    # Anonymous users "log in" by creating themselves again (§3.2): the same phone_id is the same account.
    ctx, app = call.ctx, call.app
    found = await _find(ctx, app.appid, "phone_id", phone_id)
    if found is not None:
        return found
    limit = ctx.settings.limits.anonymous_sign_ups_per_address
    await ctx.throttle.take(f"sign-up-address:{client_address(call.request)}", limit, "anonymous sign-ups")
    try:
        user = await ctx.storage.create_user(app.appid, phone_id=phone_id)
    except AlreadyExists:  # a concurrent request created it first
        return await ctx.storage.find_user(app.appid, "phone_id", phone_id)
    _LOGGER.info("app %s: anonymous user %s created", app.appid, user.uid)
    return user


NameField = Literal["username", "email", "phone"]


async def _named(ctx: CloudContext, app: App, field: NameField, value: str, pw: str) -> User:
    """A new user named ``value`` in ``field`` with password ``pw`` (checked against the policy); 9019/9022/9018
    when the name is taken (told before the KDF runs)."""
    _refuse_email_shaped(field, value)
    ctx.settings.password_policy.check(pw)
    if await _find(ctx, app.appid, field, value) is not None:
        raise ApiError(_TAKEN[field])
    password_hash = await _hash(ctx, pw)
    try:
        names: dict[str, str] = {field: value}
        user = await ctx.storage.create_user(app.appid, password_hash=password_hash, **names)
    except AlreadyExists:  # taken by a concurrent sign-up
        raise ApiError(_TAKEN[field]) from None
    _LOGGER.info("app %s: user %s created (%s)", app.appid, user.uid, field)
    return user


def _refuse_email_shaped(field: str, value: str) -> None:
    # Login takes an email-shaped name as an email (§3.4): such a username could lock its owner out of her mail.
    if field == "username" and _is_email(value):
        raise invalid("username: looks like an email address; sign up with email and password instead")


async def _notify_sign_up(ctx: CloudContext, app: App, email: str) -> None:
    # The account exists whatever happens to the mail: a notification that cannot be sent is logged, not answered.
    if ctx.messages is None:
        _LOGGER.warning("app %s: no sender configured, sign-up mail to %s not sent", app.appid, email)
        return
    text = f"An account for {email} was created in {app.name or app.appid}. If that was not you, ignore this mail."
    try:
        await ctx.messages.send(Message(channel="email", to=email, subject="Your new account", text=text))
    except SendFailed as exc:
        _LOGGER.warning("app %s: sign-up mail to %s not sent: %s", app.appid, email, exc)


async def _by_phone_code(ctx: CloudContext, app: App, phone: str, code: str) -> User:
    # §3.2 "password-less phone": the SMS code proves the phone, so it logs in the phone's account, or makes one.
    await ctx.codes.use(Purpose.SMS, phone, code)
    found = await _find(ctx, app.appid, "phone", phone)
    if found is not None:
        return found
    try:
        user = await ctx.storage.create_user(app.appid, phone=phone)
    except AlreadyExists:
        return await ctx.storage.find_user(app.appid, "phone", phone)
    _LOGGER.info("app %s: user %s created (phone, no password)", app.appid, user.uid)
    return user


async def _third_party(ctx: CloudContext, app: App, auth: AuthData) -> User:
    # The provider is asked every time: knowing someone's uid must never be enough to log in as them.
    settings = ctx.settings
    endpoints, timeout_s = settings.oauth_endpoints, settings.oauth_timeout_s
    await oauth.confirm(auth.src, auth.uid, auth.token, endpoints=endpoints, timeout_s=timeout_s)
    try:
        return await ctx.storage.find_identity_user(app.appid, auth.src, auth.uid)
    except NotFound:
        pass
    try:
        user = await ctx.storage.create_identity_user(app.appid, auth.src, auth.uid)
    except AlreadyExists:
        return await ctx.storage.find_identity_user(app.appid, auth.src, auth.uid)
    _LOGGER.info("app %s: user %s created (%s)", app.appid, user.uid, auth.src)
    return user


async def _sign_up(call: Call[CreateUser, Empty], kind: str) -> User:
    ctx, app, body = call.ctx, call.app, call.body
    if kind == "anonymous":
        assert body.phone_id is not None
        return await _anonymous(call, body.phone_id)
    if kind == "third_party":
        assert body.authData is not None
        return await _third_party(ctx, app, body.authData)
    if kind == "phone_code":
        assert body.phone is not None and body.code is not None
        return await _by_phone_code(ctx, app, body.phone, body.code)
    assert body.password is not None
    if kind == "username":
        assert body.username is not None
        return await _named(ctx, app, "username", body.username, body.password)
    if kind == "email":
        assert body.email is not None
        user = await _named(ctx, app, "email", body.email, body.password)
        await _notify_sign_up(ctx, app, body.email)
        return user
    assert body.phone is not None and body.code is not None
    ctx.settings.password_policy.check(body.password)  # before the code is spent
    await ctx.codes.use(Purpose.SMS, body.phone, body.code)
    return await _named(ctx, app, "phone", body.phone, body.password)


@api.endpoint(
    "POST",
    "/app/users",
    summary="Create a user (anonymous, username, email, phone, third party); the anonymous and third-party users' "
    "login; with a user token, an account without a password gets a username or phone and a password",
    auth=Auth.APP,
    body=CreateUser,
    responses={201: TokenReply, 200: UpdatedReply},
    errors=(
        Code.USERNAME_UNAVAILABLE,
        Code.EMAIL_UNAVAILABLE,
        Code.PHONE_UNAVAILABLE,
        Code.CODE_EXPIRED,
        Code.CODE_INVALID,
        Code.QQ_OAUTH_KEY_INVALID,
        Code.USER_INVALID,
        Code.TOKEN_INVALID,
        Code.REQUEST_THROTTLED,
    ),
)
async def create_user(call: Call[CreateUser, Empty]) -> web.Response:
    if TOKEN_HEADER in call.request.headers:
        given = frozenset(call.body.model_fields_set) - {"lang"}
        if given in CONVERSIONS.values():
            # The old SDKs' conversion (§3.3): only then does the token matter; a sign-up ignores a stale one.
            user = await optional_user(call.request, call.app)
            assert user is not None
            kind = _pattern(call.body, CONVERSIONS)
            return _answer(await _convert(call.ctx, user.uid, kind, call.body), 200)
    kind = _pattern(call.body, SIGN_UPS)
    user = await _sign_up(call, kind)
    return _answer(await _issue_token(call.ctx, user), 201)


# --- updates ----------------------------------------------------------------------------------------------------


async def _convert(ctx: CloudContext, uid: str, kind: str, body: CreateUser | UpdateUser) -> UpdatedReply:
    """An account without a password gets a username (or a phone, proved by a code) and a password; it keeps its
    uid, tokens and bindings, and lets go of its phone_id."""
    user = await ctx.storage.get_user_by_uid(uid)  # as stored: the session cache may not have seen a conversion
    if user.password_hash is not None:
        raise invalid("this account has a password already: change it with old_pwd and new_pwd")
    assert body.password is not None
    ctx.settings.password_policy.check(body.password)
    field: Literal["username", "phone"]
    if kind == "to_username":
        assert body.username is not None
        field, value = "username", body.username
        _refuse_email_shaped(field, value)
    else:
        assert body.phone is not None and body.code is not None
        field, value = "phone", body.phone
        await ctx.codes.use(Purpose.SMS, body.phone, body.code)
    taken = await _find(ctx, user.appid, field, value)
    if taken is not None and taken.uid != user.uid:
        raise ApiError(_TAKEN[field])
    password_hash = await _hash(ctx, body.password)
    names: dict[str, str | None] = {field: value, "phone_id": None}
    try:
        await ctx.storage.update_user(user.uid, is_anonymous=False, password_hash=password_hash, **names)
    except AlreadyExists:
        raise ApiError(_TAKEN[field]) from None
    _LOGGER.info("user %s: now has a %s and a password", user.uid, field)
    return _updated_at(ctx)


def _login_keys(call_address: str, appid: str, account: str) -> tuple[str, str]:
    return f"login-account:{appid}:{account}", f"login-address:{call_address}"


async def _check_login_limits(ctx: CloudContext, keys: tuple[str, str]) -> None:
    limits = ctx.settings.limits
    await ctx.throttle.check(keys[1], limits.login_per_address, "failed logins from this address")
    await ctx.throttle.check(keys[0], limits.login_per_account, "failed logins of this account")


async def _record_login_failure(ctx: CloudContext, keys: tuple[str, str]) -> None:
    for key in keys:
        await ctx.throttle.record(key)


async def _change_password(call: Call[UpdateUser, Empty]) -> None:
    ctx, user, body = call.ctx, call.user, call.body
    assert body.old_pwd is not None and body.new_pwd is not None
    ctx.settings.password_policy.check(body.new_pwd)
    # A stolen token must not be a way to guess the password: the login limits apply to the old password.
    keys = _login_keys(client_address(call.request), user.appid, user.uid)
    await _check_login_limits(ctx, keys)
    current = await ctx.storage.get_user_by_uid(user.uid)
    if not await _verify(ctx, current.password_hash, body.old_pwd):
        await _record_login_failure(ctx, keys)
        raise ApiError(Code.USERNAME_PASSWORD_ERROR, "old_pwd is not this account's password")
    await ctx.storage.update_user(user.uid, password_hash=await _hash(ctx, body.new_pwd))
    # Every other session of the account ends; the one that changed the password goes on.
    revoked = await ctx.storage.delete_tokens(user.uid, keep=token_digest(call.request.headers[TOKEN_HEADER]))
    _LOGGER.info("user %s: password changed, %d other token(s) revoked", user.uid, revoked)


async def _change_contact(ctx: CloudContext, user: User, field: Literal["email", "phone"], value: str) -> None:
    try:
        names: dict[str, str | None] = {field: value}
        await ctx.storage.update_user(user.uid, is_anonymous=None, **names)
    except AlreadyExists:
        raise ApiError(_TAKEN[field]) from None


@api.endpoint(
    "PUT",
    "/app/users",
    summary="Update the calling user: conversions of an account without a password, password, email, phone, "
    "profile (exactly one per call)",
    auth=Auth.USER,
    body=UpdateUser,
    responses={200: UpdatedReply},
    errors=(
        Code.USERNAME_UNAVAILABLE,
        Code.EMAIL_UNAVAILABLE,
        Code.PHONE_UNAVAILABLE,
        Code.USERNAME_PASSWORD_ERROR,
        Code.CODE_EXPIRED,
        Code.CODE_INVALID,
        Code.REQUEST_THROTTLED,
    ),
)
async def update_user(call: Call[UpdateUser, Empty]) -> UpdatedReply:
    ctx, user, body = call.ctx, call.user, call.body
    kind = _pattern(body, UPDATES, profile=True)
    if kind in CONVERSIONS:
        reply = await _convert(ctx, user.uid, kind, body)
    else:
        if kind == "password":
            await _change_password(call)
        elif kind == "email":
            assert body.email is not None
            await _change_contact(ctx, user, "email", body.email)
        elif kind == "phone":
            assert body.phone is not None and body.code is not None
            await ctx.codes.use(Purpose.SMS, body.phone, body.code)  # sent to the new number
            await _change_contact(ctx, user, "phone", body.phone)
        else:
            profile: dict[str, str | None] = {field: getattr(body, field) for field in body.model_fields_set}
            if any(value is None for value in profile.values()):
                raise invalid("profile fields must not be null")
            await ctx.storage.update_user(user.uid, is_anonymous=None, **profile)
        reply = _updated_at(ctx)
    ctx.sessions.drop(token_digest(call.request.headers[TOKEN_HEADER]))  # this session sees the change at once
    return reply


# --- login, logout, the account ---------------------------------------------------------------------------------


def _is_email(name: str) -> bool:
    try:
        email_key(name)
    except ValueError:
        return False
    return True


async def _account_named(ctx: CloudContext, appid: str, name: str) -> tuple[str, User | None]:
    """The canonical form of ``name`` and the account it names (§3.4: a username, an email or a phone).

    An email-shaped name is looked up as an email only (usernames cannot be email-shaped, so no username can stand
    in front of someone's address), a phone-shaped one as a phone first (a phone is proved by an SMS code, a
    username by nothing), then as a username."""
    try:
        candidates = [("username", username_key(name))]
    except ValueError as exc:
        raise invalid(f"username: {exc}") from None
    if _is_email(name):
        candidates = [("email", email_key(name))]
    else:
        with contextlib.suppress(ValueError):  # not phone-shaped
            candidates.insert(0, ("phone", phone_key(name)))
    for field, key in candidates:
        found = await _find(ctx, appid, field, key)
        if found is not None:
            return key, found
    return candidates[0][1], None


@api.endpoint(
    "POST",
    "/app/login",
    summary="Log in with a username, email or phone (in username) and the password",
    auth=Auth.APP,
    body=Login,
    responses={200: TokenReply},
    errors=(Code.USERNAME_PASSWORD_ERROR, Code.USER_INVALID, Code.REQUEST_THROTTLED),
)
async def login(call: Call[Login, Empty]) -> TokenReply:
    ctx, app, body = call.ctx, call.app, call.body
    if len(body.password) > ctx.settings.password_policy.max_length:
        raise invalid(f"password is longer than {ctx.settings.password_policy.max_length} characters")
    key, user = await _account_named(ctx, app.appid, body.username)
    keys = _login_keys(client_address(call.request), app.appid, user.uid if user else key)
    await _check_login_limits(ctx, keys)  # before the KDF: a locked account costs nothing
    # An unknown user costs a dummy verification too, so timing does not tell which accounts exist.
    if not await _verify(ctx, user.password_hash if user else None, body.password) or user is None:
        await _record_login_failure(ctx, keys)
        raise ApiError(Code.USERNAME_PASSWORD_ERROR)
    await ctx.throttle.clear(keys[0])
    return await _issue_token(ctx, user)


@api.endpoint(
    "DELETE",
    "/app/logout",
    summary="End the calling session: its token stops working",
    auth=Auth.USER,
    responses={204: None},
)
async def logout(call: Call[Empty, Empty]) -> web.Response:
    digest = token_digest(call.request.headers[TOKEN_HEADER])
    await call.ctx.storage.delete_token(digest)
    call.ctx.sessions.drop(digest)
    return web.Response(status=204)


@api.endpoint("GET", "/app/users", summary="The calling user's account", auth=Auth.USER, responses={200: UserReply})
async def get_user(call: Call[Empty, Empty]) -> UserReply:
    user = await call.ctx.storage.get_user_by_uid(call.user.uid)  # fresh: the session cache may hold an older row
    return UserReply(
        uid=user.uid,
        username=user.username or "",
        phone=user.phone or "",
        email=user.email or "",
        name=user.name,
        gender=user.gender,
        birthday=user.birthday,
        address=user.address,
        lang=user.lang,
        remark=user.remark,
        is_anonymous=user.is_anonymous,
    )
