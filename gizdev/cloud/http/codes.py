"""Captchas and SMS codes (cloud protocol §3.6): ``GET/POST/PUT /app/verify/codes``, ``POST /app/sms_code``, the
legacy ``POST /app/codes``, and the captcha pictures at ``GET /captcha/image/{id}/``.

Every endpoint but the picture needs an application token (``Auth.APP_TOKEN``, app_tokens.py). A captcha is drawn
once (the ``captcha`` library: distorted text on noise, PNG), kept as a picture row and a one-time code, and good
for one try within ``CodeSettings.captcha_ttl_s``. An SMS code is random (6 digits), good for one successful use
within ``sms_ttl_s``; codes sent are limited per phone and per client address, wrong guesses per client address.

A successful check spends the SMS code (§3.6: "becomes invalid right after a successful check"). So the verify
calls (``PUT /app/verify/codes``, ``POST /app/sms_code`` with a code) are for an app that only needs to know the
number is the user's; an app signing a user up or resetting a password sends the code straight to that call
(``POST /app/users``, ``POST /app/reset_password``), which checks it itself. Verifying first and then signing up
with the same code is refused with 9010.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets

from aiohttp import web
from captcha.image import ImageCaptcha
from pydantic import Field

from gizdev.cloud.codes import Purpose
from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, EmptyReply, Reply, Text
from gizdev.cloud.http.auth import client_address
from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.http.urls import request_base
from gizdev.cloud.messages import Message, SendFailed
from gizdev.cloud.names import Phone
from gizdev.cloud.throttle import Limit

__all__ = ["CAPTCHA_ALPHABET", "MAX_CODE_LEN", "api", "send_sms_code", "spend_code"]

_LOGGER = logging.getLogger(__name__)
api = Api("codes")

# Letters and digits that do not look alike in a distorted picture (no 0/O, 1/I, 5/S, 8/B...).
CAPTCHA_ALPHABET = "ACDEFGHJKLMNPQRTUVWXY2346789"
CAPTCHA_LENGTH = 5
CAPTCHA_SIZE = (160, 60)
MAX_CODE_LEN = 32
_CAPTCHA_ID = re.compile(r"[0-9a-f]{32}")


class CaptchaReply(Reply):
    captcha_url: str
    captcha_id: str


class SendWithCaptcha(Body):
    captcha_id: Text = Field(min_length=1, max_length=64)
    captcha_code: Text = Field(min_length=1, max_length=MAX_CODE_LEN)
    phone: Phone


class CheckSmsCode(Body):
    phone: Phone
    sms_code: Text = Field(min_length=1, max_length=MAX_CODE_LEN)


class SmsCode(Body):
    """``{phone}`` sends a code; ``{phone, code}`` checks one."""

    phone: Phone
    code: Text | None = Field(default=None, min_length=1, max_length=MAX_CODE_LEN)


def _draw(text: str) -> bytes:
    return ImageCaptcha(width=CAPTCHA_SIZE[0], height=CAPTCHA_SIZE[1]).generate(text, format="png").getvalue()


def _sms_keys(request: web.Request, phone: str) -> tuple[str, str]:
    return f"sms-phone:{phone}", f"sms-ip:{client_address(request)}"


async def _check_sms_limits(ctx: CloudContext, request: web.Request, phone: str) -> None:
    settings = ctx.settings.codes
    by_phone, by_address = _sms_keys(request, phone)
    await ctx.throttle.check(by_phone, Limit(1, settings.sms_interval_s), "codes sent to this phone")
    await ctx.throttle.check(by_phone, settings.sms_per_phone, "codes sent to this phone")
    await ctx.throttle.check(by_address, settings.sms_per_address, "codes sent from this address")


async def send_sms_code(ctx: CloudContext, request: web.Request, phone: str) -> None:
    """Send a new SMS code to ``phone`` (canonical form) within the rate limits; 9041 over them, 9037 if the
    carrier refuses (the code is then forgotten; the attempt still counts)."""
    await _check_sms_limits(ctx, request, phone)
    for key in _sms_keys(request, phone):
        await ctx.throttle.record(key)
    ttl_s = ctx.settings.codes.sms_ttl_s
    code = await ctx.codes.issue(Purpose.SMS, phone, ttl_s=ttl_s, now=ctx.now())
    hours = max(1, ttl_s // 3600)
    message = Message(
        channel="sms",
        to=phone,
        text=f"Your verification code is {code}. It is valid for {hours} h. Do not share it with anyone.",
        code=code,
    )
    try:
        if ctx.messages is None:
            raise SendFailed("this cloud has no SMS carrier configured")
        await ctx.messages.send(message)
    except SendFailed as exc:
        await ctx.codes.discard(Purpose.SMS, phone, code)
        _LOGGER.warning("SMS code to %s not sent: %s", phone, exc)
        # The carrier's own words stay in the log: they may name the gateway or quote its answer.
        raise ApiError(Code.SEND_SMS_FAILED, "the SMS carrier did not take the message; try again later") from exc


async def spend_code(ctx: CloudContext, request: web.Request, purpose: Purpose, subject: str, code: str) -> None:
    """Spend ``code``; a wrong one counts against the client address (9041 once there are too many). A captcha
    gets one try: the first wrong answer spends it."""
    failures = f"code-fail-ip:{client_address(request)}"
    await ctx.throttle.check(failures, ctx.settings.codes.failures_per_address, "wrong codes")
    try:
        if purpose is Purpose.CAPTCHA:
            await ctx.codes.use(purpose, subject, code, max_failures=1)
        else:
            await ctx.codes.use(purpose, subject, code)
    except ApiError:
        await ctx.throttle.record(failures)
        raise


@api.endpoint(
    "GET",
    "/app/verify/codes",
    summary="A new image captcha: its id and the URL of its picture",
    auth=Auth.APP_TOKEN,
    responses={200: CaptchaReply},
    errors=(Code.REQUEST_THROTTLED,),
)
async def new_captcha(call: Call[Empty, Empty]) -> CaptchaReply:
    ctx = call.ctx
    settings = ctx.settings.codes
    await ctx.throttle.take(f"captcha-ip:{client_address(call.request)}", settings.captchas_per_address, "captchas")
    captcha_id = secrets.token_hex(16)
    answer = "".join(secrets.choice(CAPTCHA_ALPHABET) for _ in range(CAPTCHA_LENGTH))
    png = await asyncio.to_thread(_draw, answer)
    now = ctx.now()
    await ctx.storage.put_captcha_image(captcha_id, png, expires_at=now + settings.captcha_ttl_s)
    await ctx.codes.issue_text(Purpose.CAPTCHA, captcha_id, answer, ttl_s=settings.captcha_ttl_s, now=now)
    if settings.insecure_test_captcha and ctx.messages is not None:
        # --insecure-test-captcha (development): the answer goes to the outbox for scripts to read.
        await ctx.messages.send(
            Message(channel="captcha", to=captcha_id, text=f"captcha {captcha_id}: {answer}", code=answer)
        )
    return CaptchaReply(
        captcha_url=f"{request_base(ctx, call.request)}/captcha/image/{captcha_id}/", captcha_id=captcha_id
    )


@api.endpoint(
    "GET",
    "/captcha/image/{captcha_id}/",
    summary="The picture of a captcha (PNG) while it is live; no headers needed (an <img> cannot send them)",
    auth=Auth.NONE,
    responses={200: "image/png"},
    errors=(Code.CODE_INVALID,),
)
async def captcha_image(call: Call[Empty, Empty]) -> web.Response:
    ctx = call.ctx
    captcha_id = call.path("captcha_id")
    png = await ctx.storage.get_captcha_image(captcha_id, now=ctx.now()) if _CAPTCHA_ID.fullmatch(captcha_id) else None
    if png is None:
        raise ApiError(Code.CODE_INVALID, "no such captcha, or it has expired or been used")
    return web.Response(
        body=png,
        content_type="image/png",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@api.endpoint(
    "POST",
    "/app/verify/codes",
    summary="Check an image captcha (one try) and send an SMS code to the phone",
    auth=Auth.APP_TOKEN,
    body=SendWithCaptcha,
    responses={201: EmptyReply},
    errors=(Code.CODE_EXPIRED, Code.CODE_INVALID, Code.SEND_SMS_FAILED, Code.REQUEST_THROTTLED),
)
async def send_code_with_captcha(call: Call[SendWithCaptcha, Empty]) -> EmptyReply:
    ctx, body = call.ctx, call.body
    await _check_sms_limits(ctx, call.request, body.phone)  # before the captcha is spent on a refused send
    if not _CAPTCHA_ID.fullmatch(body.captcha_id):
        raise ApiError(Code.CODE_INVALID, "no such captcha: captcha_id is not one this server gave out")
    try:
        await spend_code(ctx, call.request, Purpose.CAPTCHA, body.captcha_id, body.captcha_code.strip().upper())
    finally:
        await ctx.storage.delete_captcha_image(body.captcha_id)  # tried: its picture is of no more use
    await send_sms_code(ctx, call.request, body.phone)
    return EmptyReply()


@api.endpoint(
    "PUT",
    "/app/verify/codes",
    summary="Check an SMS code (a right one is spent)",
    auth=Auth.APP_TOKEN,
    body=CheckSmsCode,
    responses={200: EmptyReply},
    errors=(Code.CODE_EXPIRED, Code.CODE_INVALID, Code.REQUEST_THROTTLED),
)
async def check_sms_code(call: Call[CheckSmsCode, Empty]) -> EmptyReply:
    await spend_code(call.ctx, call.request, Purpose.SMS, call.body.phone, call.body.sms_code.strip())
    return EmptyReply()


async def _sms_code(call: Call[SmsCode, Empty]) -> web.Response:
    ctx, body = call.ctx, call.body
    if body.code is None:
        await send_sms_code(ctx, call.request, body.phone)
        return web.json_response({}, status=201)
    await spend_code(ctx, call.request, Purpose.SMS, body.phone, body.code.strip())
    return web.json_response({}, status=200)


for _path, _summary in (
    ("/app/sms_code", "{phone}: send an SMS code (201); {phone, code}: check one (200; a right one is spent)"),
    ("/app/codes", "The old SDK's path of POST /app/sms_code (same bodies, same answers)"),
):
    api.endpoint(
        "POST",
        _path,
        summary=_summary,
        auth=Auth.APP_TOKEN,
        body=SmsCode,
        responses={200: EmptyReply, 201: EmptyReply},
        errors=(Code.CODE_EXPIRED, Code.CODE_INVALID, Code.SEND_SMS_FAILED, Code.REQUEST_THROTTLED),
    )(_sms_code)
