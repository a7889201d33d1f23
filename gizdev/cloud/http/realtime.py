"""The app realtime WebSocket API: ``GET /ws/app/v1`` on the cloud's HTTP port (cloud protocol §4, D-ws).

One :class:`Client` per connection reads JSON text frames in order and answers through its bounded send queue; the
hub (:mod:`gizdev.cloud.realtime`) pushes device events into the same send queue. The checks are the HTTP API's:
the login's app id and token as ``X-Gizwits-Application-Id``/``X-Gizwits-User-token`` (:mod:`.auth`, and the
token is checked again, through the same one-second cache, on every later command, so a disabled user or a
deleted token ends the session), devices as ``/app/control`` (:mod:`.control`: 9014, 9023, 9017, 9029, 9025,
9042, 9021). Every refusal is an ``s2c_invalid_msg`` with the Open API code; nothing a client sends ends anything
but its own connection.

Frames to devices go out on ``app2dev/<did>/<client id>`` with a client id of the session's own, so that the
device's 0x0094 (on ``dev2app/<did>/<client id>``) reaches exactly the client whose 0x0093 it answers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.auth import app_for_id, user_for_token
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.http.control import MAX_RAW_BYTES, accessible_device, attrs_p0, deliver, raw_bytes
from gizdev.cloud.http.forms import invalid, parse_json_object, required_string
from gizdev.cloud.realtime import P0_TYPES, RealtimeHub, Session, message
from gizdev.cloud.realtime.ratelimit import TokenBucket
from gizdev.cloud.realtime.sendqueue import SendQueue
from gizdev.cloud.storage import App, Device, User
from gizdev.cloud.storage.store import MAX_PAGE
from gizdev.codec.envelope import BusinessCmd, decode_envelope, encode_envelope
from gizdev.errors import CodecError

__all__ = ["PATH", "Client", "install", "new_hub"]

_LOGGER = logging.getLogger(__name__)

PATH = "/ws/app/v1"
MAX_ID_LEN = 64
MAX_NAMES = 256  # data point names in one c2s_read
_OPEN = web.AppKey[set["Client"]]("gizdev_ws_clients")


def install(app: web.Application) -> None:
    """Serve the API on ``app`` (whose context has a hub); its connections are closed when the app shuts down."""
    app[_OPEN] = set()
    app.router.add_get(PATH, app_v1)
    app.on_shutdown.append(_close_all)


def new_hub(ctx: CloudContext) -> RealtimeHub:
    """A hub for ``ctx``, wired in as its realtime API and binding hook (the device bus's listener is the
    caller's to add)."""

    async def bound_mac(appid: str, uid: str, did: str) -> str | None:
        try:
            return (await accessible_device(ctx, await app_for_id(ctx, appid), uid, did)).mac
        except ApiError:
            return None

    hub = RealtimeHub(bind_lookup=bound_mac)
    ctx.realtime = hub
    ctx.binding_events = hub
    return hub


async def _close_all(app: web.Application) -> None:
    open_clients: set[Client] = app[_OPEN]
    clients = list(open_clients)
    await asyncio.gather(*(client.end(WSCloseCode.GOING_AWAY, "server shutdown") for client in clients))


async def app_v1(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    assert ctx.realtime is not None  # install() is only called with a hub
    settings = ctx.realtime_settings
    ws = web.WebSocketResponse(max_msg_size=settings.max_message_bytes, timeout=settings.close_timeout_s)
    if not ws.can_prepare(request).ok:
        raise invalid(f"{PATH} takes a WebSocket upgrade")
    await ws.prepare(request)
    client = Client(ctx, ctx.realtime, ws, request)
    request.app[_OPEN].add(client)
    try:
        await client.serve()
    finally:
        request.app[_OPEN].discard(client)
    return ws


def _error_text(exc: ApiError) -> str:
    return f"{exc.message} {exc.detail}" if exc.detail else exc.message


def _data_object(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise invalid("data must be an object")
    return data


def _sn(body: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if type(value) is not int or not 0 <= value <= 0xFFFF_FFFF:
        raise invalid(f"{name} must be an integer 0-4294967295")
    return value


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):  # some clients send the text (seen in the wild)
        return bool(value == "true")
    raise invalid(f"{name} must be true or false")


def _write_values(attrs: object) -> object:
    """c2s_write's values for the codec: binary points come as byte arrays (D-ws) or, as /app/control takes them,
    hex strings; a list of anything but 0-255 is refused here (9025), other values go to the codec as they are."""
    if not isinstance(attrs, dict):
        return attrs  # attrs_p0 refuses it
    values: dict[str, object] = {}
    for name, value in attrs.items():
        if isinstance(value, list):
            if len(value) > MAX_RAW_BYTES or not all(type(item) is int and 0 <= item <= 255 for item in value):
                raise ApiError(Code.ATTR_INVALID, f"{str(name)[:64]}: a byte array holds integers 0-255")
            values[name] = bytes(value)
        else:
            values[name] = value
    return values


class Client:
    """One WebSocket connection: login, then commands, until it closes, falls silent, or is dropped."""

    def __init__(self, ctx: CloudContext, hub: RealtimeHub, ws: web.WebSocketResponse, request: web.Request):
        self.ctx = ctx
        self.hub = hub
        self.ws = ws
        self.request = request
        self.settings = ctx.realtime_settings
        self.peer = request.remote or "?"
        self.queue = SendQueue(ws.send_str, self._overflowed, self.settings.send_queue)
        self.bucket = TokenBucket(self.settings.rate_per_s, self.settings.burst)
        self.session: Session | None = None
        self._app: App | None = None
        self._token = ""
        self._heartbeat_s = float(self.settings.max_heartbeat_s)
        self._failed_logins = 0
        self._ended = False

    # -- the connection -------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        login_deadline = loop.time() + self.settings.login_timeout_s
        try:
            while not self._ended:
                if self.session is None:
                    timeout = login_deadline - loop.time()
                else:
                    timeout = self._heartbeat_s * self.settings.heartbeat_slack
                try:
                    msg = await self.ws.receive(timeout=max(timeout, 0.001))
                except TimeoutError:
                    what = "no login" if self.session is None else f"silent for over {timeout:.0f} s"
                    _LOGGER.info("websocket client %s closed: %s", self._who(), what)
                    await self.end(WSCloseCode.POLICY_VIOLATION, "heartbeat timeout")
                    break
                if msg.type is WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._invalid(invalid("binary frames are not accepted: send JSON text"))
                elif msg.type is WSMsgType.ERROR:
                    _LOGGER.info("websocket client %s closed: %s", self._who(), self.ws.exception() or msg.data)
                    break
                else:  # the client closed, or the connection is gone
                    break
        finally:
            self._leave()
            await self.queue.flush(self.settings.close_timeout_s)
            await self._close(WSCloseCode.OK, "")

    async def end(self, code: int, reason: str) -> None:
        """Close the connection after what is queued for it went out."""
        if self._ended:
            return
        self._ended = True
        await self.queue.flush(self.settings.close_timeout_s)
        await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        """The close handshake, bounded: a peer that reads nothing could hold it (and its socket) forever."""
        try:
            async with asyncio.timeout(2 * self.settings.close_timeout_s):
                await self.ws.close(code=code, message=reason.encode())
        except Exception:  # timed out, or the connection is gone already
            self._abort()

    def _abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def _who(self) -> str:
        return f"{self.peer} (user {self.session.uid})" if self.session is not None else self.peer

    def _leave(self) -> None:
        if self.session is not None:
            self.hub.remove(self.session)
            _LOGGER.info("websocket session of user %s from %s ended", self.session.uid, self.peer)
            self.session = None

    def _overflowed(self) -> None:
        # Not reading: drop it now. Aborting the transport ends its receive loop; a close handshake would wait
        # on the very buffers it does not empty.
        if self.session is not None:
            self.hub.dropped(self.session)
            self.session = None
        else:
            _LOGGER.warning("websocket client %s dropped: it did not read its messages", self.peer)
        self._ended = True
        self._abort()

    def send(self, text: str) -> None:
        self.queue.put(text)

    def _invalid(self, exc: ApiError) -> None:
        _LOGGER.debug("websocket client %s: %s", self._who(), exc)
        self.send(message("s2c_invalid_msg", {"error_code": int(exc.code), "msg": _error_text(exc)}))

    # -- messages -------------------------------------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        if not self.bucket.take():
            self._invalid(ApiError(Code.REQUEST_THROTTLED, "too many messages"))
            return
        try:
            body = parse_json_object(text, "a message")
            cmd = body.get("cmd")
            if not isinstance(cmd, str):
                raise invalid("a message needs a cmd (a string)")
            command = _COMMANDS.get(cmd)
            if command is None:
                raise invalid(f"unknown cmd {cmd[:40]!r}")
            if self.session is None and cmd not in ("login_req", "ping"):
                raise ApiError(Code.TOKEN_INVALID, "send login_req first")
            await command(self, body)
        except ApiError as exc:
            self._invalid(exc)
        except Exception:
            _LOGGER.exception("websocket message from %s failed", self._who())
            self._invalid(ApiError(Code.SERVER_ERROR))

    def _app_of_session(self) -> App:
        assert self._app is not None, "only called once logged in"
        return self._app

    async def _user(self) -> tuple[Session, User]:
        """The session and its user, the token checked again (a disabled user's session ends here)."""
        assert self.session is not None and self._app is not None
        try:
            # The app again (cached): an admin's unlink of a product reaches open sessions within the cache's TTL.
            self._app = await app_for_id(self.ctx, self._app.appid)
            user = await user_for_token(self.ctx, self._app, self._token)
        except ApiError:
            _LOGGER.info("websocket session of user %s ended: its token is no longer valid", self.session.uid)
            self._invalid(ApiError(Code.TOKEN_INVALID, "the session's token is no longer valid"))
            self._leave()
            await self.end(WSCloseCode.POLICY_VIOLATION, "token invalid")
            raise ApiError(Code.TOKEN_INVALID) from None
        return self.session, user

    async def login(self, body: dict[str, Any]) -> None:
        if self.session is not None:
            raise invalid("already logged in")
        try:
            data = _data_object(body)
            appid = required_string(data, "appid", max_len=MAX_ID_LEN)
            uid = required_string(data, "uid", max_len=MAX_ID_LEN)
            token = required_string(data, "token", max_len=128)
            p0_type = data.get("p0_type", "attrs_v4")
            if p0_type not in P0_TYPES:
                raise invalid("p0_type must be attrs_v4 or custom")
            heartbeat = data.get("heartbeat_interval", self.settings.max_heartbeat_s)
            if type(heartbeat) is not int or not 1 <= heartbeat <= self.settings.max_heartbeat_s:
                raise invalid(f"heartbeat_interval must be a whole number of seconds 1-{self.settings.max_heartbeat_s}")
            auto_subscribe = _flag(data, "auto_subscribe", True)
            app = await app_for_id(self.ctx, appid)
            user = await user_for_token(self.ctx, app, token)
            if user.uid != uid:
                raise ApiError(Code.TOKEN_INVALID, "the token is not this uid's")
        except ApiError as exc:
            self._failed_logins += 1
            _LOGGER.info("websocket login from %s refused: %s", self.peer, exc)
            self.send(message("login_res", {"success": False}))
            self._invalid(exc)
            if self._failed_logins >= self.settings.max_login_attempts:
                _LOGGER.info("websocket client %s closed after %d failed logins", self.peer, self._failed_logins)
                await self.end(WSCloseCode.POLICY_VIOLATION, "login failed")
            return
        self._app, self._token, self._heartbeat_s = app, token, float(heartbeat)
        session = Session(uid, appid, str(p0_type), auto_subscribe, f"ws{secrets.token_hex(10)}", self.queue)
        self.session = session
        self.hub.add(session)
        _LOGGER.info(
            "websocket login: user %s of app %s from %s (p0_type %s, heartbeat %d s, auto_subscribe %s)",
            uid,
            appid,
            self.peer,
            p0_type,
            heartbeat,
            auto_subscribe,
        )
        self.send(message("login_res", {"success": True}))
        if auto_subscribe:
            await self._subscribe_bound(session)

    async def _subscribe_bound(self, session: Session) -> None:
        skip = 0
        while True:
            page = await self.ctx.storage.list_bindings(session.uid, limit=MAX_PAGE, skip=skip)
            served = self._app_of_session().product_keys
            for binding in page:
                if not binding.device.is_disabled and binding.device.product_key in served:
                    self._subscribed(session, binding.device)
            if len(page) < MAX_PAGE:
                return
            skip += len(page)

    def _subscribed(self, session: Session, device: Device) -> None:
        self.hub.subscribe(session, device.did, device.mac)
        self.ctx.bus.activity.record(device.did, session.uid)
        self.send(self.hub.online_status(device.did, self.ctx.bus.is_online(device.did)))

    async def subscribe(self, body: dict[str, Any]) -> None:
        entries = body.get("data")
        if not isinstance(entries, list) or not entries:
            raise invalid("data must be a non-empty list of {did}")
        if len(entries) > self.settings.max_subscribe:
            raise invalid(f"at most {self.settings.max_subscribe} devices per subscribe_req")
        if not all(isinstance(entry, dict) for entry in entries):
            raise invalid("every entry of data must be an object with a did")
        dids = [required_string(entry, "did", max_len=MAX_ID_LEN) for entry in entries]
        session, user = await self._user()
        success: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        devices: list[Device] = []
        for did in dids:
            try:
                devices.append(await accessible_device(self.ctx, self._app_of_session(), user.uid, did))
            except ApiError as exc:
                failed.append({"did": did, "error_code": int(exc.code), "msg": exc.message})
                continue
            success.append({"did": did, "error_code": 0, "msg": "ok"})
        self.send(message("subscribe_res", {"success": success, "failed": failed}))
        for device in devices:
            self._subscribed(session, device)

    async def _device(self, body: dict[str, Any], *, attrs_only: bool) -> tuple[Session, User, Device, dict[str, Any]]:
        session, user = await self._user()
        if attrs_only and session.custom:
            raise invalid(f"{body['cmd']} is not for p0_type custom: send c2s_raw")
        data = _data_object(body)
        did = required_string(data, "did", max_len=MAX_ID_LEN)
        return session, user, await accessible_device(self.ctx, self._app_of_session(), user.uid, did), data

    async def _to_device(self, session: Session, user: User, device: Device, p0: bytes, sn: int | None) -> None:
        if sn is None:
            frame = encode_envelope(BusinessCmd.TRANSMIT, p0)
        else:
            frame = encode_envelope(BusinessCmd.CONTROL, p0, sn=sn)
        await deliver(self.ctx, device, user.uid, [frame], session.client_id)

    async def read(self, body: dict[str, Any]) -> None:
        sn = _sn(body, "req_sn")
        session, user, device, data = await self._device(body, attrs_only=True)
        names = data.get("names")
        if names is not None and (
            not isinstance(names, list) or len(names) > MAX_NAMES or not all(isinstance(n, str) for n in names)
        ):
            raise invalid("names must be a list of data point names")
        codec = await self.ctx.products.get(device.product_key)
        if codec is None:
            raise ApiError(Code.DATAPOINT_DATA_NOT_FOUND)
        try:
            # Fixed-length products read the whole status: names are ignored (D-ws).
            p0 = codec.encode("read", names if codec.is_varlen and names else None)
        except CodecError as exc:
            raise ApiError(Code.ATTR_INVALID, str(exc)[:300]) from None
        await self._to_device(session, user, device, p0, sn)

    async def write(self, body: dict[str, Any]) -> None:
        sn = _sn(body, "req_sn")
        session, user, device, data = await self._device(body, attrs_only=True)
        p0 = await attrs_p0(self.ctx, device, _write_values(data.get("attrs")))
        await self._to_device(session, user, device, p0, sn)

    async def raw(self, body: dict[str, Any]) -> None:
        session, user, device, data = await self._device(body, attrs_only=False)
        frame = raw_bytes(data.get("raw"), data.get("binary_coding"))
        try:
            envelope = decode_envelope(frame)
        except CodecError as exc:
            raise invalid(f"raw must be a whole business frame 00 00 00 03 len flag cmd ...: {exc}") from None
        if envelope.cmd not in (BusinessCmd.TRANSMIT, BusinessCmd.CONTROL, BusinessCmd.CONTROL_REPLY):
            raise invalid(f"raw carries cmd 0x{envelope.cmd:04x}: only 0x0090, 0x0093 and 0x0094 go to a device")
        await deliver(self.ctx, device, user.uid, [frame], session.client_id)

    async def ack(self, body: dict[str, Any]) -> None:
        sn = _sn(body, "res_sn", required=True)
        session, user = await self._user()
        if session.custom:
            raise invalid("c2s_ack is not for p0_type custom: send c2s_raw")
        did = required_string(body, "did", max_len=MAX_ID_LEN)
        device = await accessible_device(self.ctx, self._app_of_session(), user.uid, did)
        frame = encode_envelope(BusinessCmd.CONTROL_REPLY, sn=sn)
        await deliver(self.ctx, device, user.uid, [frame], session.client_id)

    async def ping(self, body: dict[str, Any]) -> None:
        if self.session is not None:
            session, _user = await self._user()
            for did in session.dids:  # a client that keeps its heartbeat is an app online for its devices
                self.ctx.bus.activity.record(did, session.uid)
        self.send(message("pong"))


_COMMANDS: dict[str, Callable[[Client, dict[str, Any]], Awaitable[None]]] = {
    "login_req": Client.login,
    "subscribe_req": Client.subscribe,
    "c2s_read": Client.read,
    "c2s_write": Client.write,
    "c2s_raw": Client.raw,
    "c2s_ack": Client.ack,
    "ping": Client.ping,
}
