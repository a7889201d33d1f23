"""Endpoint declarations: one per operation, used both to validate requests and to write ``/openapi.json``.

A handler is declared with :meth:`Api.endpoint`: its method and path, who may call it (:class:`Auth`), the pydantic
models of its JSON or form body and of its query string, the models of its answers and the error codes it may
give. The declaration does the checks before the handler runs (headers, then the body against its model: a body
that does not fit is 9015 "form invalid!" with the field and the reason) and hands the handler a :class:`Call` with
the parsed parts. :func:`openapi_document` writes the OpenAPI 3 document from the same declarations, so the
document cannot drift from what the server takes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.json_schema import models_json_schema

from gizdev.cloud.errors import ERROR_TABLE, ApiError, Code
from gizdev.cloud.http.auth import APP_HEADER, TOKEN_HEADER, require_app, require_user
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.http.forms import form_fields, invalid, json_object
from gizdev.cloud.storage import App, User

__all__ = [
    "APP_AUTH_HEADER",
    "APP_TOKEN_HEADER",
    "MAX_PATH_PARAM",
    "MAX_REQUEST_LINE",
    "Api",
    "Auth",
    "Body",
    "Call",
    "Empty",
    "EmptyReply",
    "Endpoint",
    "ErrorReply",
    "Flag",
    "Query",
    "Reply",
    "Text",
    "install_app_token_check",
    "openapi_document",
    "parse_model",
]

APP_TOKEN_HEADER = "X-Gizwits-Application-Token"
APP_AUTH_HEADER = "X-Gizwits-Application-Auth"
# What the document promises for a path parameter (a DID is 22 characters): longer ones are refused by the handler
# like any other DID that names nothing.
MAX_PATH_PARAM = 256
# The longest request line the server reads (aiohttp's default is 8190). Past it aiohttp's parser answers in plain
# text before any handler runs, so every declaration is checked to keep its longest documented URL within it.
MAX_REQUEST_LINE = 16384
# A character of a URL at its longest: four UTF-8 bytes, each percent-encoded.
_ENCODED_CHAR_BYTES = 12


def _no_control_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


#: A string field of a request: never carries a NUL (databases and logs disagree on what one means).
Text = Annotated[str, AfterValidator(_no_control_nul)]


def _flag(value: object) -> object:
    if isinstance(value, str) and value not in ("0", "1", "true", "false"):
        raise ValueError("must be 0 or 1")
    return value


#: A query-string switch: 0 / 1 (or false / true), as the vendor's clients send them.
Flag = Annotated[bool, BeforeValidator(_flag)]


class Body(BaseModel):
    """A request body. Strict: a JSON number is not a string, a string is not a number; unknown keys are ignored
    (the vendor's SDKs send fields this server has no use for, such as ``lang`` on login)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Query(BaseModel):
    """A query string: every value arrives as text, so numbers and flags are converted (lax)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Reply(BaseModel):
    """An answer's body; a handler may return one and the declaration serializes it with the success status."""

    model_config = ConfigDict(frozen=True)


class Empty(Body):
    """No fields (an endpoint that takes no body, or answers ``{}``)."""


class EmptyReply(Reply):
    """``{}``: the request was carried out and there is nothing to say (``/app/control``)."""


BodyT = TypeVar("BodyT", bound=BaseModel)
QueryT = TypeVar("QueryT", bound=BaseModel)


class Auth(enum.Enum):
    """Who may call an endpoint; the declaration checks the headers before the handler runs."""

    NONE = "none"  # devices and public documents: no Open API header
    APP = "app"  # X-Gizwits-Application-Id (9003 if missing or unknown)
    USER = "user"  # the app id and X-Gizwits-User-token (9004 if missing, unknown, expired or another app's)
    APP_TOKEN = "app_token"  # the app id and X-Gizwits-Application-Token from /app/request_token (codes, SMS)


@dataclass(frozen=True, slots=True)
class Call(Generic[BodyT, QueryT]):
    """One request as its declaration parsed it."""

    request: web.Request
    ctx: CloudContext
    body: BodyT
    query: QueryT
    caller_app: App | None = None
    caller: User | None = None

    @property
    def app(self) -> App:
        if self.caller_app is None:  # a handler declared with Auth.NONE asked for the app: a programming error
            raise RuntimeError("this endpoint is declared without an application")
        return self.caller_app

    @property
    def user(self) -> User:
        if self.caller is None:
            raise RuntimeError("this endpoint is declared without a user")
        return self.caller

    def path(self, name: str) -> str:
        return self.request.match_info[name]


HandlerResult = web.StreamResponse | BaseModel
Handler = Callable[[Call[Any, Any]], Awaitable[HandlerResult]]
#: Checks a header that only some endpoints need (the app token of the code endpoints); set by the module that
#: issues those tokens, so that this one does not depend on it.
AppTokenCheck = Callable[[web.Request, App], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # the aiohttp route, patterns included ("/app/control/{did:[^/]+}")
    summary: str
    auth: Auth
    body: type[BaseModel] | None
    body_format: Literal["json", "form"]
    query: type[BaseModel] | None
    responses: Mapping[int, type[BaseModel] | str | None]  # status → model, a media type ("text/plain"), or none
    errors: tuple[Code, ...]
    tag: str

    @property
    def openapi_path(self) -> str:
        return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", self.path)

    @property
    def success_status(self) -> int:
        return min(status for status in self.responses if status < 400)


_APP_TOKEN_CHECK: web.AppKey[AppTokenCheck] = web.AppKey("gizdev_app_token_check")


def install_app_token_check(app: web.Application, check: AppTokenCheck) -> None:
    app[_APP_TOKEN_CHECK] = check


def _validation_detail(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"[:300]


def parse_model(model: type[BodyT], document: object) -> BodyT:
    """``document`` as ``model``; 9015 with the first field that does not fit."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise invalid(_validation_detail(exc)) from None


def _query_document(request: web.Request) -> dict[str, str]:
    document: dict[str, str] = {}
    for key, value in request.query.items():
        if key in document:
            raise invalid(f"{key} given twice")
        document[key] = value
    return document


@dataclass
class Api:
    """The endpoints of one module: an aiohttp route table and the declarations behind it."""

    tag: str
    routes: web.RouteTableDef = field(default_factory=web.RouteTableDef)
    endpoints: list[Endpoint] = field(default_factory=list)

    def endpoint(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        auth: Auth,
        responses: Mapping[int, type[BaseModel] | str | None],
        body: type[BodyT] | None = None,
        body_format: Literal["json", "form"] = "json",
        query: type[QueryT] | None = None,
        errors: Iterable[Code] = (),
    ) -> Callable[[Callable[[Call[BodyT, QueryT]], Awaitable[HandlerResult]]], Handler]:
        declared = Endpoint(
            method=method.upper(),
            path=path,
            summary=summary,
            auth=auth,
            body=body,
            body_format=body_format,
            query=query,
            responses=dict(responses),
            errors=tuple(errors),
            tag=self.tag,
        )
        _check_request_line(declared)
        self.endpoints.append(declared)

        def register(handler: Callable[[Call[BodyT, QueryT]], Awaitable[HandlerResult]]) -> Handler:
            async def serve(request: web.Request) -> web.StreamResponse:
                call = await _parse(declared, request)
                result = await handler(call)
                if isinstance(result, BaseModel):
                    return web.json_response(text=result.model_dump_json(by_alias=True), status=declared.success_status)
                return result

            self.routes.route(declared.method, path)(serve)
            return handler  # the undecorated function stays callable

        return register


def _longest_value(name: str, schema: Mapping[str, Any]) -> int:
    """The most characters a query value of ``schema`` may have; a declaration without a bound is a mistake."""
    if "anyOf" in schema:
        return max(_longest_value(name, option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "null":
        return 0
    if kind == "boolean":
        return len("false")
    if kind == "integer" and "maximum" in schema and "minimum" in schema:
        return max(len(str(schema["maximum"])), len(str(schema["minimum"])))
    if kind == "string" and "maxLength" in schema:
        return int(schema["maxLength"])
    raise ValueError(f"query parameter {name} is unbounded: give it a maximum length or range")


def _check_request_line(endpoint: Endpoint) -> None:
    """Refuses a declaration whose longest documented URL would not reach its handler (see MAX_REQUEST_LINE)."""
    path_params = re.findall(r"\{(\w+)[:}]", endpoint.path)
    fixed = re.sub(r"\{[^}]*\}", "", endpoint.path)
    longest = len(f"{endpoint.method}  HTTP/1.1") + len(fixed) + len(path_params) * MAX_PATH_PARAM * _ENCODED_CHAR_BYTES
    if endpoint.query is not None:
        for name, prop in endpoint.query.model_json_schema().get("properties", {}).items():
            longest += len(f"&{name}=") + _longest_value(name, prop) * _ENCODED_CHAR_BYTES
    if longest > MAX_REQUEST_LINE:
        raise ValueError(
            f"{endpoint.method} {endpoint.path}: its longest URL is {longest} bytes, over the {MAX_REQUEST_LINE} "
            "the server reads; bound its parameters more tightly"
        )


async def _parse(declared: Endpoint, request: web.Request) -> Call[Any, Any]:
    ctx = context_of(request)
    app: App | None = None
    user: User | None = None
    if declared.auth is not Auth.NONE:
        app = await require_app(request)
    if declared.auth is Auth.USER:
        assert app is not None
        user = await require_user(request, app)
    elif declared.auth is Auth.APP_TOKEN:
        assert app is not None
        check = request.app.get(_APP_TOKEN_CHECK)
        if check is None:
            raise ApiError(Code.TOKEN_INVALID, "this server issues no application tokens")
        await check(request, app)
    body: BaseModel = Empty()
    if declared.body is not None:
        document: object = await form_fields(request) if declared.body_format == "form" else await json_object(request)
        body = parse_model(declared.body, document)
    query: BaseModel = Empty()
    if declared.query is not None:
        query = parse_model(declared.query, _query_document(request))
    return Call(request=request, ctx=ctx, body=body, query=query, caller_app=app, caller=user)


# --- the OpenAPI document ---------------------------------------------------------------------------------------


class ErrorReply(Reply):
    error_code: int
    error_message: str
    detail_message: str | None


_AUTH_ERRORS: dict[Auth, tuple[Code, ...]] = {
    Auth.NONE: (),
    Auth.APP: (Code.APPID_INVALID,),
    Auth.USER: (Code.APPID_INVALID, Code.TOKEN_INVALID),
    Auth.APP_TOKEN: (Code.APPID_INVALID, Code.TOKEN_INVALID),
}

_HEADERS: dict[Auth, tuple[str, ...]] = {
    Auth.NONE: (),
    Auth.APP: (APP_HEADER,),
    Auth.USER: (APP_HEADER, TOKEN_HEADER),
    Auth.APP_TOKEN: (APP_HEADER, APP_TOKEN_HEADER),
}


def _models(endpoints: Iterable[Endpoint]) -> list[type[BaseModel]]:
    seen: dict[type[BaseModel], None] = {ErrorReply: None}
    for endpoint in endpoints:
        for model in (endpoint.body, endpoint.query, *endpoint.responses.values()):
            if isinstance(model, type) and issubclass(model, BaseModel):
                seen[model] = None
    return list(seen)


def _ref(model: type[BaseModel], refs: Mapping[tuple[Any, Any], Any], mode: str) -> Any:
    return refs[(model, mode)]


def _operation(endpoint: Endpoint, refs: Mapping[tuple[Any, Any], Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": header, "in": "header", "required": True, "schema": {"type": "string"}}
        for header in _HEADERS[endpoint.auth]
    ]
    parameters += [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": MAX_PATH_PARAM}}
        for name in re.findall(r"\{(\w+)[:}]", endpoint.path)
    ]
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            parameters.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', endpoint.openapi_path).strip('_')}",
        "tags": [endpoint.tag],
        "parameters": parameters,
        "responses": {},
    }
    if endpoint.body is not None:
        media = "application/json" if endpoint.body_format == "json" else "application/x-www-form-urlencoded"
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": _ref(endpoint.body, refs, "validation")}},
        }
    for status, answer in endpoint.responses.items():
        described: dict[str, Any] = {"description": "OK"}
        if isinstance(answer, type):
            described["content"] = {"application/json": {"schema": _ref(answer, refs, "serialization")}}
        elif isinstance(answer, str):
            described["content"] = {answer: {"schema": {"type": "string"}}}
        operation["responses"][str(status)] = described
    codes = (*_AUTH_ERRORS[endpoint.auth], *endpoint.errors)
    if endpoint.body is not None or endpoint.query is not None:
        codes = (*codes, Code.FORM_INVALID)
    by_status: dict[int, list[Code]] = {}
    for code in dict.fromkeys((*codes, Code.SERVER_ERROR)):
        by_status.setdefault(ERROR_TABLE[code].http_status, []).append(code)
    for status, listed in sorted(by_status.items()):
        operation["responses"].setdefault(
            str(status),
            {
                "description": "; ".join(f"{int(code)} {ERROR_TABLE[code].message}" for code in listed),
                "content": {"application/json": {"schema": _ref(ErrorReply, refs, "serialization")}},
            },
        )
    return operation


def openapi_document(endpoints: Iterable[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``: one operation per declaration, schemas from their models."""
    listed = list(endpoints)
    models = _models(listed)
    pairs = [(model, mode) for model in models for mode in ("validation", "serialization")]
    refs, definitions = models_json_schema(pairs, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in listed:
        paths.setdefault(endpoint.openapi_path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": definitions.get("$defs", {})},
    }
