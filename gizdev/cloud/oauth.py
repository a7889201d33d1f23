"""Third-party sign-up (§3.2 ``authData``): ask the provider whether a token belongs to the uid the app sent.

Each provider is called exactly as its own API is, at the URL the server is configured with
(``gizdev cloud serve --oauth-endpoint qq=URL``):

* qq: ``GET URL?access_token=T`` → JSONP text ``callback( {"client_id": "…", "openid": "…"} );``; the token is
  good for the person whose ``openid`` it names (an error is ``callback( {"error": …} );``).
* baidu: ``GET URL?access_token=T`` → ``{"uid": "…", "uname": "…"}`` (an error is ``{"error_code": …}``).
* sina: ``POST URL`` with the form ``access_token=T`` → ``{"uid": …, "appkey": …, "expire_in": …}``, ``uid`` a
  number or a string (an error is a 4xx with ``{"error": …}``).

Outcomes: the provider names this uid → confirmed. It names another uid, answers an error document or a 4xx →
denied: 9031 for qq, 9015 with a detail for the others (the table's only provider-specific code is qq's). No answer
in time, a refused connection, a 5xx or an answer that is not the provider's shape → the token could not be
checked: 9015 with a detail saying so, never 9008/500 (nothing of ours failed, and the app should try again). A
provider that is not configured is refused with 9015 before anything is sent. The answer is read up to
``MAX_ANSWER_BYTES`` only; redirects are not followed (the configured URL is the provider's API, not a page).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from gizdev.cloud.errors import ApiError, Code

__all__ = ["MAX_ANSWER_BYTES", "PROVIDERS", "confirm", "parse_endpoint"]

PROVIDERS = ("baidu", "sina", "qq")
MAX_ANSWER_BYTES = 16 * 1024  # the providers answer a few hundred bytes; more is not their answer
_JSONP = re.compile(r"\s*callback\s*\(\s*(\{.*\})\s*\)\s*;?\s*", re.DOTALL)


class _Unverifiable(Exception):
    """The provider gave no usable answer; the reason is for the client's detail."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    text: str


def parse_endpoint(text: str) -> tuple[str, str]:
    """``SRC=URL`` (the ``--oauth-endpoint`` option) as ``(src, url)``; ValueError with the reason."""
    src, sep, url = text.partition("=")
    if not sep or src not in PROVIDERS:
        raise ValueError(f"expects SRC=URL with SRC one of {', '.join(PROVIDERS)}, not {text!r}")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the {src} endpoint must be an http:// or https:// URL, not {url!r}")
    return src, url


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(4096):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise _Unverifiable(f"the answer is over {MAX_ANSWER_BYTES} bytes")
    return bytes(body)


async def _call(src: str, url: str, token: str, timeout_s: float) -> _Answer:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            if src == "sina":
                request = session.post(url, data={"access_token": token}, allow_redirects=False)
            else:
                request = session.get(url, params={"access_token": token}, allow_redirects=False)
            async with request as response:
                body = await _read_bounded(response)
                status = response.status
    except TimeoutError:
        raise _Unverifiable(f"no answer within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise _Unverifiable(f"cannot reach it ({type(exc).__name__})") from None
    try:
        return _Answer(status, body.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Unverifiable("the answer is not UTF-8 text") from None


def _document(text: str, *, jsonp: bool) -> dict[str, Any]:
    if jsonp:
        match = _JSONP.fullmatch(text)
        if match is None:
            raise _Unverifiable("the answer is not callback( {...} );")
        text = match.group(1)
    try:
        document = json.loads(text)
    except ValueError:
        raise _Unverifiable("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise _Unverifiable("the answer is not a JSON object")
    return document


def _named_uid(src: str, answer: _Answer) -> str | None:
    """The uid the provider confirms the token for; None if it refuses the token."""
    if answer.status >= 500 or (answer.status >= 300 and answer.status < 400):
        raise _Unverifiable(f"it answered HTTP {answer.status}")
    if answer.status >= 400:
        return None  # baidu and sina refuse a bad token with a 4xx
    document = _document(answer.text, jsonp=src == "qq")
    if "error" in document or "error_code" in document:
        return None
    field = "openid" if src == "qq" else "uid"
    named = document.get(field)
    if isinstance(named, bool) or not isinstance(named, str | int):
        raise _Unverifiable(f"the answer has no {field}")
    return str(named)


def _denied(src: str, uid: str) -> ApiError:
    if src == "qq":
        return ApiError(Code.QQ_OAUTH_KEY_INVALID, "qq did not confirm this token for this openid (authData.uid)")
    return ApiError(Code.FORM_INVALID, f"authData: {src} did not confirm this token for uid {uid}")


async def confirm(src: str, uid: str, token: str, *, endpoints: Mapping[str, str], timeout_s: float) -> None:
    """Return if provider ``src`` confirms that ``token`` is ``uid``'s; raise :class:`ApiError` otherwise."""
    url = endpoints.get(src)
    if url is None:
        raise ApiError(
            Code.FORM_INVALID,
            f"authData.src: sign-up through {src} is not configured on this server "
            f"(gizdev cloud serve --oauth-endpoint {src}=URL)",
        )
    try:
        named = _named_uid(src, await _call(src, url, token, timeout_s))
    except _Unverifiable as exc:
        raise ApiError(
            Code.FORM_INVALID, f"authData: the token could not be checked with {src}: {exc}; nothing was created"
        ) from None
    if named != uid:
        raise _denied(src, uid)
