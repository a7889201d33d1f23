"""The HTTP device API as GAgent uses it (cloud protocol §1.2, §1.3; gagent-wire-observations §2).

Bodies are form-encoded both ways. GAgent reads the reply with one ``recv`` into 1 KiB and searches it as text
(``did=`` then 22 characters; ``host=`` up to ``&``, ``port=`` up to ``&``), so replies are short, form-encoded and
``port`` is never the last parameter. Errors answer with the Open API error body and status (9015, 9014, ...),
which GAgent treats as "not 201/200".

MQTT passwords. A device of the plain API logs in to the broker with its passcode (the vendor's rule, §1.4), and
the passcode is what every bound user reads in ``GET /app/bindings``: any of them can log in as the device. A
device registered through the encrypted API therefore gets a password of its own, made by the cloud (96 random
bits) and sent sealed with the product secret in the registration reply, after the DID:
``hex(AES(did=<did>&mqtt_password=<password>))``. The field ``mqtt_password`` is ours (no source shows the
vendor's reply carrying one): a client of the encrypted API that ignores it cannot log in. Each encrypted
registration issues a new password (a device that lost its state registers again and gets one); the cloud keeps
only the broker's digest of it. ``HttpSettings.refuse_plain_registration`` refuses ``POST /dev/devices`` (9048).

OTA checks (``POST /dev/ota/v4.1/update_and_check/<did>``) carry the versions of the module (``type=1``) and of
the MCU (``type=2``, its hardware and software version from the MCU's device info): they are kept for the
bindings list (``wifi_soft_version``, ``mcu_soft_version``, ``mcu_hard_version``). There is no firmware to offer.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from gizdev.cloud.broker.files import hash_password
from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.auth import client_address
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.http.forms import form_fields, invalid
from gizdev.cloud.security import new_mqtt_password, safe_equal
from gizdev.cloud.storage import Device, InvalidInput, NotFound, Registration
from gizdev.errors import ConfigError
from gizdev.protocol.device_api import MQTT_PASSWORD_FIELD, OTA_TYPE_MCU, OTA_TYPE_WIFI, decrypt_form, encrypt_form

__all__ = ["routes"]

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()

FORM_TYPE = "application/x-www-form-urlencoded"
DEVICE_TYPES = ("normal", "center_control")


def _form_reply(text: str, status: int = 200) -> web.Response:
    return web.Response(status=status, body=text.encode("ascii"), content_type=FORM_TYPE)


async def _register(
    ctx: CloudContext,
    mac: str,
    product_key: str,
    passcode: str,
    *,
    mqtt_password: str | None = None,
    device_type: str = "normal",
) -> Registration:
    """Register (encrypted when the device gets ``mqtt_password``) and open the broker to it."""
    encrypted = mqtt_password is not None
    digest = None if mqtt_password is None else hash_password(mqtt_password)
    registration = await ctx.storage.register_device(
        mac, product_key, passcode, encrypted=encrypted, device_type=device_type, mqtt_password_hash=digest
    )
    if ctx.accounts is not None:
        if digest is None:
            await ctx.accounts.add_device(registration.did, passcode, product_key)
        else:
            await ctx.accounts.add_device(registration.did, digest, product_key, hashed=True)
    _LOGGER.info(
        "device %s %s (mac %s, product %s%s)",
        registration.did,
        "registered" if registration.created else "registered again",
        registration.device.mac,
        product_key,
        ", encrypted API" if encrypted else "",
    )
    return registration


async def _count_registration(ctx: CloudContext, request: web.Request) -> None:
    # Well-formed registrations only (a garbled form costs nothing): each may create a DID and a broker account.
    limit = ctx.settings.limits.device_registrations_per_address
    await ctx.throttle.take(f"register-address:{client_address(request)}", limit, "device registrations")


def _provision_text(ctx: CloudContext) -> str:
    host = ctx.settings.mqtt_host
    return urlencode(
        {
            "host": host,
            "port": ctx.settings.mqtt_port,
            "server_ts": ctx.now(),
            "log_host": host,
            "log_port": 0,
            "biz_log": 0,
            "sys_log": 0,
        }
    )


@routes.post("/dev/devices")
async def register(request: web.Request) -> web.Response:
    ctx = context_of(request)
    form = await form_fields(request)
    for name in ("passcode", "mac", "product_key"):
        if not form.get(name):
            raise invalid(f"{name} is required")
    if ctx.settings.refuse_plain_registration:
        raise ApiError(
            Code.DEVICE_ENCRYPT_ENABLED,
            "this cloud registers devices through the encrypted device API only: POST /dev/{product_key}/device",
        )
    await _count_registration(ctx, request)
    registration = await _register(ctx, form["mac"], form["product_key"], form["passcode"])
    return _form_reply(f"did={registration.did}", status=201)


async def _usable_device(ctx: CloudContext, did: str) -> Device:
    try:
        device = await ctx.storage.get_device(did)
    except (NotFound, InvalidInput):
        raise ApiError(Code.DEVICE_NOT_FOUND) from None
    if device.is_disabled:
        raise ApiError(Code.DEVICE_DISABLED)
    return device


@routes.get("/dev/devices/{did:[^/]+}")  # any DID text reaches the handler: 9014, not a bare 404
async def provision(request: web.Request) -> web.Response:
    ctx = context_of(request)
    device = await _usable_device(ctx, request.match_info["did"])
    if device.encrypted:
        raise ApiError(Code.DEVICE_ENCRYPT_ENABLED, "this device provisions through /dev/{product_key}/device")
    return _form_reply(_provision_text(ctx))


@routes.delete("/dev/devices")
async def disable(request: web.Request) -> web.Response:
    ctx = context_of(request)
    form = await form_fields(request)
    did, passcode = form.get("did"), form.get("passcode")
    if not did or not passcode:
        raise invalid("did and passcode are required")
    try:
        device = await ctx.storage.get_device(did)
    except (NotFound, InvalidInput):
        raise ApiError(Code.DEVICE_NOT_FOUND) from None
    if device.encrypted:
        raise ApiError(Code.DEVICE_ENCRYPT_ENABLED)
    await ctx.storage.disable_device(did, passcode=passcode)
    ctx.device_access.drop_where(lambda key: key[1] == did)
    if ctx.accounts is not None:
        await ctx.accounts.remove_device(did)
    _LOGGER.info("device %s disabled by its own request", did)
    return _form_reply("")


# -- the encrypted variant (§1.3) -------------------------------------------------------------------------------


async def _product_secret(ctx: CloudContext, product_key: str) -> str:
    try:
        return (await ctx.storage.get_product(product_key)).product_secret
    except (NotFound, InvalidInput):
        raise ApiError(Code.PRODUCT_KEY_INVALID) from None


def _sealed_fields(secret: str, sealed: str) -> dict[str, str]:
    try:
        text = decrypt_form(secret, sealed)
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=16)
    except ValueError as exc:  # strict parsing; a FormCipherError passes through to errors.py (9015)
        raise invalid(f"data: the decrypted form is malformed ({exc})") from None
    except ConfigError as exc:
        raise ApiError(Code.SERVER_ERROR) from exc
    fields = dict(pairs)
    if len(fields) != len(pairs):  # as for plain forms: a field given twice is ambiguous, not "the last one wins"
        raise invalid("data: a field is given twice in the decrypted form")
    return fields


@routes.post("/dev/{product_key}/device")
async def register_sealed(request: web.Request) -> web.Response:
    ctx = context_of(request)
    product_key = request.match_info["product_key"]
    secret = await _product_secret(ctx, product_key)
    form = await form_fields(request)
    if not form.get("data"):
        raise invalid("data is required")
    fields = _sealed_fields(secret, form["data"])
    for name in ("mac", "passcode"):
        if not fields.get(name):
            raise invalid(f"data: {name} is required")
    device_type = fields.get("type", "normal")
    if device_type not in DEVICE_TYPES:
        raise invalid(f"data: type must be one of {', '.join(DEVICE_TYPES)}")
    await _count_registration(ctx, request)
    password = new_mqtt_password()
    registration = await _register(
        ctx, fields["mac"], product_key, fields["passcode"], mqtt_password=password, device_type=device_type
    )
    reply = urlencode({"did": registration.did, MQTT_PASSWORD_FIELD: password})  # did first: parsers search it
    return _form_reply(encrypt_form(secret, reply), status=201)


@routes.get("/dev/{product_key}/device")
async def provision_sealed(request: web.Request) -> web.Response:
    ctx = context_of(request)
    product_key = request.match_info["product_key"]
    secret = await _product_secret(ctx, product_key)
    sealed = request.query.get("did", "")
    if not sealed:
        raise invalid("did is required")
    did = decrypt_form(secret, sealed)
    device = await _usable_device(ctx, did)
    if device.product_key != product_key:
        raise ApiError(Code.DEVICE_NOT_FOUND)
    return _form_reply(encrypt_form(secret, _provision_text(ctx)))


# -- OTA: the device's versions are kept; this cloud has no firmware to offer ----------------------------------

_OTA_PARTS = {str(OTA_TYPE_WIFI): False, str(OTA_TYPE_MCU): True}  # the form's type -> "is it the MCU's?"


@routes.post("/dev/ota/v4.1/update_and_check/{did:[^/]+}")
async def ota_check(request: web.Request) -> web.Response:
    ctx = context_of(request)
    form = await form_fields(request)
    for name in ("passcode", "type", "hard_version", "soft_version"):
        if not form.get(name):
            raise invalid(f"{name} is required")
    if form["type"] not in _OTA_PARTS:
        raise invalid(f"type must be {OTA_TYPE_WIFI} (the module) or {OTA_TYPE_MCU} (the MCU)")
    device = await _usable_device(ctx, request.match_info["did"])
    if not safe_equal(device.passcode, form["passcode"]):
        raise ApiError(Code.DID_PASSCODE_INVALID)
    await ctx.storage.record_versions(  # a version that is not a plain identifier: InvalidInput, 9015
        device.did, mcu=_OTA_PARTS[form["type"]], hard_version=form["hard_version"], soft_version=form["soft_version"]
    )
    # GAgent treats any non-200 as "no update" and goes on to MQTT (gagent-wire-observations §2, step 3-4).
    return web.Response(status=404, text="no firmware update", content_type="text/plain")
