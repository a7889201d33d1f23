"""The absolute URLs this cloud hands out: captcha pictures (to the app that asked) and reset links (in mails)."""

from __future__ import annotations

import re

from aiohttp import web

from gizdev.cloud.http.context import CloudContext

__all__ = ["link_base", "request_base"]

_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def link_base(ctx: CloudContext) -> str:
    """Where links in mails point: the configured public URL, else the listener. Never the request's Host
    header, which whoever asks for a reset mail chooses (and would receive the victim's link at)."""
    return (ctx.settings.public_url or ctx.origin).rstrip("/")


def request_base(ctx: CloudContext, request: web.Request) -> str:
    """Where the caller reaches this cloud: the configured public URL, else the scheme and Host it used (the
    answer goes back to the caller only, so a forged Host fools no one else); a malformed Host: the listener."""
    if ctx.settings.public_url:
        return ctx.settings.public_url.rstrip("/")
    host = request.headers.get("Host", "")
    if not _HOST.fullmatch(host):
        return ctx.origin.rstrip("/")
    return f"{request.scheme}://{host}"
