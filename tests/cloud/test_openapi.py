"""``/openapi.json``: written from the endpoint declarations, and the server keeps to it (schemathesis).

The document is built from the same declarations the handlers validate with (gizdev/cloud/http/api.py), so this
module builds it at import, gives it to schemathesis, and checks every generated request against a running cloud:
no 500, and every answer's status, content type and body as the document says.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import Field
from schemathesis.checks import positive_data_acceptance

from gizdev import __version__
from gizdev.cloud.http.api import (
    MAX_PATH_PARAM,
    MAX_REQUEST_LINE,
    Api,
    Auth,
    Empty,
    EmptyReply,
    Query,
    openapi_document,
)
from gizdev.cloud.http.app import declared_endpoints
from tests.cloud.server_fixtures import CloudThread, make_cloud, world_searchable_dir

DOCUMENT = openapi_document(declared_endpoints(), title="gizdev local cloud", version=__version__)
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module", name="fuzzed")
def fuzzed_cloud(mosquitto_binary: str) -> Iterator[tuple[CloudThread, dict[str, str]]]:
    """One cloud for every generated request (SQLite): an app and a user, whose headers each request carries."""
    base = world_searchable_dir()
    cloud = make_cloud(f"sqlite+aiosqlite:///{base / 'cloud.db'}", base / "data", mosquitto_binary=mosquitto_binary)
    try:
        appid = cloud.add_app()
        reply = cloud.api("POST", "/app/users", {"phone_id": "openapi-fuzzer"}, appid=appid)
        assert reply.status == 201, reply
        yield cloud, {"X-Gizwits-Application-Id": appid, "X-Gizwits-User-token": reply.body["token"]}
    finally:
        cloud.close()
        shutil.rmtree(base, ignore_errors=True)


def test_the_served_document_is_the_declared_one(fuzzed: tuple[CloudThread, dict[str, str]]) -> None:
    cloud, _ = fuzzed
    reply = cloud.request("GET", "/openapi.json")
    assert reply.status == 200
    assert reply.body == DOCUMENT
    assert reply.body["openapi"].startswith("3.")
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], f"{method.upper()} {path} documents no answer"


def test_every_served_route_is_declared(fuzzed: tuple[CloudThread, dict[str, str]]) -> None:
    cloud, _ = fuzzed
    declared = {(endpoint.method, endpoint.openapi_path) for endpoint in declared_endpoints()}
    app = cloud.server.http_app
    assert app is not None
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert declared <= served
    undeclared = {
        route for route in served - declared if not route[1].startswith(_NOT_HTTP) and route[1] not in _STATIC
    }
    assert not undeclared, f"served but missing from /openapi.json: {sorted(undeclared)}"


_WIDEST = "\U0010fffd"  # four UTF-8 bytes: twelve once percent-encoded


def _longest_value(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return max((_longest_value(option) for option in schema["anyOf"] if option.get("type") != "null"), key=len)
    if schema.get("type") == "string":
        return _WIDEST * int(schema["maxLength"])
    if schema.get("type") == "integer":
        return str(schema["maximum"])
    return "false"


def test_the_longest_documented_url_of_every_endpoint_reaches_its_handler(
    fuzzed: tuple[CloudThread, dict[str, str]],
) -> None:
    """Every path and query parameter at its documented longest: an answer in JSON, never aiohttp's plain 400."""
    cloud, fuzzer = fuzzed
    appid = fuzzer["X-Gizwits-Application-Id"]
    own = cloud.api("POST", "/app/users", {"phone_id": "longest-url"}, appid=appid)  # DELETE /app/logout ends it
    assert own.status == 201, own
    headers = {"X-Gizwits-Application-Id": appid, "X-Gizwits-User-token": own.body["token"]}
    for endpoint in declared_endpoints():
        path = re.sub(r"\{\w+(:[^}]*)?\}", quote(_WIDEST * MAX_PATH_PARAM, safe=""), endpoint.path)
        if endpoint.query is not None:
            properties = endpoint.query.model_json_schema()["properties"]
            path += "?" + urlencode({name: _longest_value(prop) for name, prop in properties.items()})
        reply = cloud.request(endpoint.method, path, headers=headers)
        seen = f"{endpoint.method} {endpoint.path}: {reply.status} {reply.raw[:200]!r}"
        responses = DOCUMENT["paths"][endpoint.openapi_path][endpoint.method.lower()]["responses"]
        assert str(reply.status) in responses, seen
        if "application/json" in responses[str(reply.status)].get("content", {}):
            assert isinstance(reply.body, dict), seen
        elif "text/html" in responses[str(reply.status)].get("content", {}):
            assert isinstance(reply.body, str) and reply.body.startswith("<!DOCTYPE html>"), seen


class _Unbounded(Query):
    name: str


class _Long(Query):
    first: str = Field(max_length=MAX_REQUEST_LINE // 24)
    second: str = Field(max_length=MAX_REQUEST_LINE // 24)


def test_a_declaration_whose_longest_url_would_not_be_read_is_refused() -> None:
    api = Api(tag="test")
    with pytest.raises(ValueError, match="name is unbounded"):
        api.endpoint("GET", "/x", summary="", auth=Auth.NONE, query=_Unbounded, responses={200: EmptyReply})
    with pytest.raises(ValueError, match="longest URL"):
        api.endpoint("GET", "/x", summary="", auth=Auth.NONE, query=_Long, responses={200: EmptyReply})
    with pytest.raises(ValueError, match="longest URL"):
        api.endpoint("GET", "/x/{a}/{b}/{c}/{d}/{e}/{f}", summary="", auth=Auth.NONE, responses={200: EmptyReply})
    api.endpoint("GET", "/x/{a}", summary="", auth=Auth.NONE, body=Empty, responses={200: EmptyReply})
    assert len(api.endpoints) == 1


# Not HTTP operations: the realtime WebSocket API (cloud protocol §4, tested in test_realtime*.py).
_NOT_HTTP = ("/ws/",)
# Not API operations: the web console's page and its files (test_console*.py).
_STATIC = {"/console", "/console/", "/console/{name}"}


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_answers(case: Any, fuzzed: tuple[CloudThread, dict[str, str]]) -> None:
    cloud, headers = fuzzed
    # Every check but positive_data_acceptance: a request the schema allows may still be refused by a rule the
    # schema cannot say (a username already taken, a password the policy refuses), with a documented 4xx.
    case.call_and_validate(
        base_url=f"http://127.0.0.1:{cloud.http_port}", headers=headers, excluded_checks=[positive_data_acceptance]
    )
