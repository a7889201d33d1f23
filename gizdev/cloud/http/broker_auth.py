"""The broker's questions about logins and permissions: RabbitMQ's HTTP auth backend (``rabbitmq_auth_backend_http``).

RabbitMQ, configured with ``auth_http.http_method = post`` and these four paths, sends a form for every login
(``user``), virtual host (``vhost``), queue or exchange (``resource``) and topic (``topic``) and wants the text
``allow`` or ``deny`` with status 200; anything else counts as a refusal. The decisions are
:class:`gizdev.cloud.broker.access.BrokerAccess`'s, from the cloud's storage.

EMQX (5.x) can send the same forms (its HTTP authenticator and authorizer take body templates: see
``hw/deploy-scaled.md``); it asks with ``Accept: application/json`` and gets ``{"result": "allow"|"deny"}``, and its
``publish``/``subscribe`` actions are taken for ``write``/``read``.

Only the configured brokers may ask (loopback by default): another peer gets 403 ``deny``, and so does every
request while the cloud is not configured for an external broker's HTTP auth (the managed Mosquitto needs none).
A form that does not fit is 9015, which the broker takes as a refusal too. Wrong passwords for a device are
counted in the database (:class:`gizdev.cloud.throttle.Throttle`): past ``AbuseLimits.mqtt_logins_per_device``,
the device's logins are refused for the rest of the window, the right password included.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from gizdev.cloud.broker.access import BrokerAccess, Login
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, Text
from gizdev.cloud.http.context import context_of
from gizdev.cloud.throttle import Throttled

__all__ = ["api", "routes"]

api = Api("broker")
routes = api.routes

MAX_NAME_LEN = 255  # RabbitMQ's limit on names (short strings); routing keys are bounded the same way
MAX_PASSWORD_LEN = 1024

ALLOW = "allow"
DENY = "deny"
_ANSWERS = {200: "text/plain", 403: "text/plain"}
_ACTIONS = {"publish": "write", "subscribe": "read"}  # EMQX's words for RabbitMQ's


class UserQuestion(Body):
    username: Text = Field(max_length=MAX_NAME_LEN)
    password: Text = Field(default="", max_length=MAX_PASSWORD_LEN)  # missing for a certificate login
    client_id: Text | None = Field(default=None, max_length=MAX_NAME_LEN)  # given for MQTT connections
    vhost: Text | None = Field(default=None, max_length=MAX_NAME_LEN)


class VhostQuestion(Body):
    username: Text = Field(max_length=MAX_NAME_LEN)
    vhost: Text = Field(max_length=MAX_NAME_LEN)
    ip: Text | None = Field(default=None, max_length=64)


class ResourceQuestion(Body):
    username: Text = Field(max_length=MAX_NAME_LEN)
    vhost: Text = Field(max_length=MAX_NAME_LEN)
    resource: Text = Field(max_length=16)
    name: Text = Field(max_length=MAX_NAME_LEN)
    permission: Text = Field(max_length=16)


class TopicQuestion(ResourceQuestion):
    routing_key: Text = Field(max_length=MAX_NAME_LEN)


def _answer(request: web.Request, allowed: bool, *, status: int = 200) -> web.Response:
    word = ALLOW if allowed else DENY
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"result": word}, status=status)
    return web.Response(text=word, content_type="text/plain", status=status)


def _access(request: web.Request) -> BrokerAccess | None:
    """The settings if this peer may ask, else None (not configured, or not one of the brokers)."""
    access = context_of(request).settings.broker_access
    if access is None or not access.peer_allowed(request.remote):
        return None
    return access


@api.endpoint(
    "POST",
    "/broker/auth/user",
    summary="Broker HTTP auth: may this username and password log in?",
    auth=Auth.NONE,
    body=UserQuestion,
    body_format="form",
    responses=_ANSWERS,
)
async def user(call: Call[UserQuestion, Empty]) -> web.Response:
    access = _access(call.request)
    if access is None:
        return _answer(call.request, False, status=403)
    body = call.body
    throttle, key = call.ctx.throttle, f"mqtt-login:{body.username}"
    if not access.is_service(body.username):
        try:
            await throttle.check(key, call.ctx.settings.limits.mqtt_logins_per_device, "wrong MQTT passwords")
        except Throttled:
            return _answer(call.request, False)
    login = await access.login(call.ctx.storage, body.username, body.password, body.client_id)
    if login is Login.WRONG_PASSWORD:
        await throttle.record(key)
    return _answer(call.request, login is Login.ALLOWED)


@api.endpoint(
    "POST",
    "/broker/auth/vhost",
    summary="Broker HTTP auth: may this user use this virtual host?",
    auth=Auth.NONE,
    body=VhostQuestion,
    body_format="form",
    responses=_ANSWERS,
)
async def vhost(call: Call[VhostQuestion, Empty]) -> web.Response:
    access = _access(call.request)
    if access is None:
        return _answer(call.request, False, status=403)
    return _answer(call.request, access.vhost_allowed(call.body.vhost))


@api.endpoint(
    "POST",
    "/broker/auth/resource",
    summary="Broker HTTP auth: may this user configure, write or read this queue or exchange?",
    auth=Auth.NONE,
    body=ResourceQuestion,
    body_format="form",
    responses=_ANSWERS,
)
async def resource(call: Call[ResourceQuestion, Empty]) -> web.Response:
    access = _access(call.request)
    if access is None:
        return _answer(call.request, False, status=403)
    body = call.body
    allowed = access.resource_allowed(
        username=body.username, vhost=body.vhost, resource=body.resource, name=body.name, permission=body.permission
    )
    return _answer(call.request, allowed)


@api.endpoint(
    "POST",
    "/broker/auth/topic",
    summary="Broker HTTP auth: may this user publish on (write) or bind to (read) this routing key?",
    auth=Auth.NONE,
    body=TopicQuestion,
    body_format="form",
    responses=_ANSWERS,
)
async def topic(call: Call[TopicQuestion, Empty]) -> web.Response:
    access = _access(call.request)
    if access is None:
        return _answer(call.request, False, status=403)
    body = call.body
    allowed = await access.topic_allowed(
        call.ctx.storage,
        username=body.username,
        vhost=body.vhost,
        exchange=body.name,
        permission=_ACTIONS.get(body.permission, body.permission),
        routing_key=body.routing_key,
    )
    return _answer(call.request, allowed)
