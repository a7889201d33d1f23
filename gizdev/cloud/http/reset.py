"""Password reset (cloud protocol §3.7): ``POST /app/reset_password`` (and ``PUT``, as the old SDK sends it), and
the reset page its mails link to.

``{email}``: a mail with a one-time link (random, kept as a digest, ``CodeSettings.reset_link_ttl_s``) to
``/reset_password/{uid}/{token}`` on this cloud; the page's form posts ``new_pwd`` back to the same URL.
``{phone, code, new_pwd}``: the SMS code (``POST /app/sms_code`` sent it) changes the password at once. Either way
every token of the user is revoked. An address or number without an account gets the same answer, in about the
same time: the mail is written and sent after the answer, and the phone variant hashes the new password whether
or not there is an account to give it to.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
from typing import Any, cast

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from pydantic import Field

from gizdev.cloud.codes import Purpose
from gizdev.cloud.errors import ApiError, Code, PasswordPolicyError
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, EmptyReply, Text
from gizdev.cloud.http.auth import client_address
from gizdev.cloud.http.codes import MAX_CODE_LEN, spend_code
from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.http.forms import invalid
from gizdev.cloud.http.passwords import hash_new_password
from gizdev.cloud.http.urls import link_base
from gizdev.cloud.messages import Message, SendFailed
from gizdev.cloud.names import Email, Phone
from gizdev.cloud.storage import NotFound, User

__all__ = ["RESET_PAGE", "RedactingAccessLogger", "api"]

_LOGGER = logging.getLogger(__name__)
api = Api("password reset")

# Any segment reaches the page (a mangled link gets the page's own "not valid", not a JSON error); the handler
# checks the shapes.
RESET_PAGE = "/reset_password/{uid}/{token}"
_UID = re.compile(r"[0-9a-f]{32}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_PASSWORD_FIELD_LEN = 1024  # the policy has the real limit; this bounds what is parsed

# The page needs no script, style, image or frame: forbid them all; the form may post only back here.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the URL carries the token
    "Cache-Control": "no-store",
}


class ResetPassword(Body):
    email: Email | None = None
    phone: Phone | None = None
    code: Text | None = Field(default=None, min_length=1, max_length=MAX_CODE_LEN)
    new_pwd: Text | None = Field(default=None, max_length=MAX_PASSWORD_FIELD_LEN)


class ResetForm(Body):
    new_pwd: Text = Field(max_length=MAX_PASSWORD_FIELD_LEN)


async def _set_password(ctx: CloudContext, user: User, password_hash: str) -> None:
    await ctx.storage.update_user(user.uid, password_hash=password_hash)
    revoked = await ctx.storage.delete_tokens(user.uid)
    ctx.sessions.drop_where(lambda _digest: True)  # this process's second of cached sessions: forget them now
    _LOGGER.info("user %s: password reset, %d tokens revoked", user.uid, revoked)


async def _user_with(ctx: CloudContext, appid: str, field: str, value: str) -> User | None:
    try:
        user = await ctx.storage.find_user(appid, field, value)
    except NotFound:
        return None
    return None if user.is_disabled else user


async def _mail_link(ctx: CloudContext, user: User, email: str) -> None:
    token = secrets.token_urlsafe(32)  # 256 bits, 43 characters
    ttl_s = ctx.settings.codes.reset_link_ttl_s
    await ctx.codes.issue_text(Purpose.RESET_LINK, user.uid, token, ttl_s=ttl_s, now=ctx.now())
    link = f"{link_base(ctx)}/reset_password/{user.uid}/{token}"
    minutes = max(1, ttl_s // 60)
    text = (
        "Someone (hopefully you) asked to reset the password of your account.\n\n"
        f"Choose a new password here within {minutes} minutes; the link works once:\n\n{link}\n\n"
        "If it was not you, ignore this mail: your password stays as it is.\n"
    )
    message = Message(channel="email", to=email, subject="Reset your password", text=text, link=link)
    try:
        if ctx.messages is None:
            raise SendFailed("this cloud has no mail carrier configured")
        await ctx.messages.send(message)
    except SendFailed as exc:
        await ctx.codes.discard(Purpose.RESET_LINK, user.uid, token)
        _LOGGER.error("reset mail to %s not sent: %s", email, exc)


async def _reset(call: Call[ResetPassword, Empty]) -> EmptyReply:
    ctx, app, body = call.ctx, call.app, call.body
    settings = ctx.settings.codes
    if body.email is not None:
        if body.phone is not None or body.code is not None or body.new_pwd is not None:
            raise invalid("give email alone, or phone, code and new_pwd")
        await ctx.throttle.take(f"reset-ip:{client_address(call.request)}", settings.resets_per_address, "resets")
        await ctx.throttle.take(f"reset-email:{body.email}", settings.resets_per_account, "resets for this email")
        user = await _user_with(ctx, app.appid, "email", body.email)
        if user is not None:  # after the answer: its time must not tell that the address has an account
            ctx.background.spawn(_mail_link(ctx, user, body.email), f"reset mail for user {user.uid}")
        return EmptyReply()
    if body.phone is None or body.code is None or body.new_pwd is None:
        missing = [name for name in ("phone", "code", "new_pwd") if getattr(body, name) is None]
        raise invalid(f"give email, or phone, code and new_pwd ({', '.join(missing)} missing)")
    ctx.settings.password_policy.check(body.new_pwd)
    await spend_code(ctx, call.request, Purpose.SMS, body.phone, body.code.strip())
    user = await _user_with(ctx, app.appid, "phone", body.phone)
    password_hash = await hash_new_password(ctx, body.new_pwd)  # also without an account: the same time
    if user is not None:
        await _set_password(ctx, user, password_hash)
    return EmptyReply()


_RESET_ERRORS = (Code.CODE_EXPIRED, Code.CODE_INVALID, Code.REQUEST_THROTTLED)
for _method in ("POST", "PUT"):
    api.endpoint(
        _method,
        "/app/reset_password",
        summary="{email}: mail a one-time reset link; {phone, code, new_pwd}: set the password with an SMS code",
        auth=Auth.APP,
        body=ResetPassword,
        responses={200: EmptyReply},
        errors=_RESET_ERRORS,
    )(_reset)


# --- the page the mail links to ------------------------------------------------------------------------------------

_REFUSED = {
    "expired": (410, "This link has expired", "Ask the app for a new password reset mail."),
    "used": (410, "This link has been used", "Each link works once. Ask the app for a new reset mail if needed."),
    "invalid": (404, "This link is not valid", "Check that the whole link was copied, or ask for a new mail."),
}


def _page(status: int, title: str, text: str, *, form: bool = False, min_length: int = 0) -> web.Response:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{html.escape(title)}</title></head>",
        f"<body><main><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>",
    ]
    if form:
        parts.append(
            '<form method="post"><p><label for="new_pwd">New password</label> '
            f'<input id="new_pwd" name="new_pwd" type="password" autocomplete="new-password" required '
            f'minlength="{int(min_length)}" maxlength="{MAX_PASSWORD_FIELD_LEN}"></p>'
            '<p><button type="submit">Set the new password</button></p></form>'
        )
    parts.append("</main></body></html>")
    return web.Response(
        text="\n".join(parts), status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def _refused(state: str) -> web.Response:
    status, title, text = _REFUSED.get(state, _REFUSED["invalid"])
    return _page(status, title, text)


def _form(ctx: CloudContext, status: int = 200, problem: str | None = None) -> web.Response:
    policy = ctx.settings.password_policy
    text = problem or f"At least {policy.min_length} characters. Every signed-in app will have to sign in again."
    return _page(status, "Choose a new password", text, form=True, min_length=policy.min_length)


# 422: the form again, with what the policy found wrong; a malformed form body is the JSON 9015 (400) of any body.
_PAGE_RESPONSES: dict[int, type | str | None] = {200: "text/html", 404: "text/html", 410: "text/html", 422: "text/html"}


async def _link_state(ctx: CloudContext, uid: str, token: str) -> str:
    if not (_UID.fullmatch(uid) and _TOKEN.fullmatch(token)):
        return "invalid"
    return await ctx.codes.check(Purpose.RESET_LINK, uid, token)


@api.endpoint(
    "GET",
    RESET_PAGE,
    summary="The reset page of a mailed link: a form for the new password, or why the link no longer works",
    auth=Auth.NONE,
    responses=_PAGE_RESPONSES,
)
async def reset_page(call: Call[Empty, Empty]) -> web.Response:
    state = await _link_state(call.ctx, call.path("uid"), call.path("token"))
    return _form(call.ctx) if state == "ok" else _refused(state)


@api.endpoint(
    "POST",
    RESET_PAGE,
    summary="The reset page's form: new_pwd sets the password (once per link) and signs every app out",
    auth=Auth.NONE,
    body=ResetForm,
    body_format="form",
    responses=_PAGE_RESPONSES,
)
async def reset_page_form(call: Call[ResetForm, Empty]) -> web.Response:
    ctx = call.ctx
    uid, token = call.path("uid"), call.path("token")
    state = await _link_state(ctx, uid, token)  # a wrong token is not counted as a guess
    if state != "ok":
        return _refused(state)
    try:
        ctx.settings.password_policy.check(call.body.new_pwd)
    except PasswordPolicyError as exc:
        return _form(ctx, 422, f"The password {exc.reason}.")
    try:
        await ctx.codes.use(Purpose.RESET_LINK, uid, token)  # the authority: a second, concurrent post fails here
        user = await ctx.storage.get_user_by_uid(uid)
    except ApiError as exc:
        return _refused("expired" if exc.code is Code.CODE_EXPIRED else "used")
    except NotFound:
        return _refused("invalid")
    await _set_password(ctx, user, await hash_new_password(ctx, call.body.new_pwd))
    return _page(200, "Your password has been changed", "Sign in with it in the app. This page can be closed.")


_LINK_PATH = re.compile(r"^/reset_password/[^/]*/[^/?]*")


class _RedactedRequest:
    """A request as the access log sees it, with its path replaced (a request cannot be cloned once read)."""

    def __init__(self, request: BaseRequest, path: str) -> None:
        self._request = request
        self.path = self.path_qs = self.raw_path = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


class RedactingAccessLogger(AccessLogger):
    """aiohttp's access log without the tokens of reset links (a log line must not be a way into an account)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path.startswith("/reset_password/"):
            redacted = _RedactedRequest(request, _LINK_PATH.sub("/reset_password/…", request.path, count=1))
            request = cast(BaseRequest, redacted)
        super().log(request, response, time)
