"""Real HTTP servers on loopback answering as the OAuth providers' token checks do (qq, baidu, sina).

Shapes, as the providers document them:

* qq ``GET /oauth2.0/me?access_token=T`` → ``callback( {"client_id":"…","openid":"…"} );`` (JSONP text; a bad
  token: ``callback( {"error":100016,"error_description":"access token check failed"} );``).
* baidu ``GET /rest/2.0/passport/users/getLoggedInUser?access_token=T`` → ``{"uid":"…","uname":"…"}`` (a bad
  token: ``{"error_code":110,"error_msg":"Access token invalid or no longer valid"}``).
* sina ``POST /oauth2/get_token_info`` with the form ``access_token=T`` → ``{"uid":1234567,"appkey":"…",
  "expire_in":…}`` (a bad token: HTTP 400 ``{"error":"invalid_access_token","error_code":21332}``).

``tokens[src]`` maps the tokens each provider knows to the person they belong to; ``modes[src]`` makes one
misbehave: "garbage" (HTML), "slow" (answers after ``SLOW_S``), "500", "huge" (a 1 MiB body), "reset" (drops the
connection). Every request is recorded in ``calls`` as (method, path, query, form).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web

from tests.loop_thread import LoopThread

__all__ = ["PATHS", "SLOW_S", "Providers"]

PATHS = {
    "qq": "/oauth2.0/me",
    "baidu": "/rest/2.0/passport/users/getLoggedInUser",
    "sina": "/oauth2/get_token_info",
}
SLOW_S = 3.0


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]


@dataclass
class Providers:
    tokens: dict[str, dict[str, str]] = field(default_factory=lambda: {src: {} for src in PATHS})
    modes: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _thread: LoopThread | None = None

    @property
    def endpoints(self) -> dict[str, str]:
        return {src: f"http://127.0.0.1:{self.port}{path}" for src, path in PATHS.items()}

    def start(self) -> None:
        self._thread = LoopThread("oauth-providers", self._start, self._stop)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.close()

    async def _start(self) -> None:
        app = web.Application()
        for src, path in PATHS.items():
            app.router.add_route("POST" if src == "sina" else "GET", path, self._handler(src))
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _handler(self, src: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.StreamResponse:
            form = {key: str(value) for key, value in (await request.post()).items()}
            self.calls.append(Call(request.method, request.path, dict(request.query), form))
            mode = self.modes.get(src, "ok")
            if mode == "garbage":
                return web.Response(text="<html><body>Service Unavailable</body></html>", content_type="text/html")
            if mode == "slow":
                await asyncio.sleep(SLOW_S)
            if mode == "500":
                return web.Response(status=500, text="internal error")
            if mode == "huge":
                return web.json_response({"uid": "x" * (1024 * 1024)})
            if mode == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            token = form.get("access_token") if src == "sina" else request.query.get("access_token")
            person = self.tokens[src].get(token or "")
            return _answer(src, person)

        return handle


def _answer(src: str, person: str | None) -> web.Response:
    if src == "qq":
        document = (
            {"client_id": "101010101", "openid": person}
            if person is not None
            else {"error": 100016, "error_description": "access token check failed"}
        )
        return web.Response(text=f"callback( {json.dumps(document)} );\n", content_type="text/html")
    if src == "baidu":
        if person is None:
            return web.json_response({"error_code": 110, "error_msg": "Access token invalid or no longer valid"})
        return web.json_response({"uid": person, "uname": "bob", "portrait": "e2c1776c31393837313031"})
    if person is None:
        return web.json_response({"error": "invalid_access_token", "error_code": 21332}, status=400)
    return web.json_response({"uid": int(person), "appkey": "1234567890", "scope": "", "expire_in": 157679471})
