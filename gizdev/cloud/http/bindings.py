"""Bindings between users and devices: ``GET/POST/DELETE /app/bindings`` (Open API §3.9, the did+passcode form) and
``PUT /app/bindings/{did}`` (remark, alias, labels).

Every call reaches only devices of the products the calling app serves (``auth.check_served``): a device of
another product is "failed" in a batch, 9014 on its own, and absent from the list.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.auth import require_app, require_user
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.http.forms import invalid, json_object, optional_string, query_count, query_flag, required_string
from gizdev.cloud.security import safe_equal
from gizdev.cloud.storage import App, Binding, Device, InvalidInput, NotFound

__all__ = ["device_item", "routes"]

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_DEVICES_PER_CALL = 100
MAX_LIMIT = 1000
MAX_REMARK_LEN = 256
MAX_ALIAS_LEN = 128  # the storage's limit
MAX_LABELS = 20  # the storage's limits for dev_label
MAX_LABEL_LEN = 64

PROTOC_WIFI = 3  # §3.9 protoc: 1 BT, 2 BLE, 3 WiFi, 4 cellular, 5 NB-IoT; every device here speaks MQTT over IP
# §3.9 proto_ver "01", "01_01", "03", "04" [our reading]: the version field every frame of the device carries,
# 00 00 00 03 on MQTT and on the LAN alike (§1.6, §2); a frame of another version is not one this cloud decodes, so
# every device that talks to it speaks "03", and so do its LAN clients (lan_prot_ver).
PROTO_VER = "03"
LAN_PROT_VER = "03"


def device_item(
    ctx: CloudContext, binding: Binding, *, show_proto_ver: bool = False, show_lan_prot_ver: bool = False
) -> dict[str, Any]:
    """One entry of ``{"devices": [...]}``: every DeviceItem field of §3.9 (``proto_ver`` and ``lan_prot_ver``
    only when asked, as the query flags of the same names say), plus the MCU's versions."""
    device = binding.device
    settings = ctx.settings
    item: dict[str, Any] = {
        "product_key": device.product_key,
        "product_name": binding.product_name,
        "did": device.did,
        "mac": device.mac.lower(),
        "is_online": ctx.bus.is_online(device.did),  # the bus applies the broker's events: fresher than any row
        "passcode": device.passcode,
        "host": settings.mqtt_host,
        "port": settings.mqtt_port,
        "port_s": settings.mqtt_tls_port,
        "ws_port": settings.ws_port,
        "wss_port": settings.wss_port,
        "remark": binding.remark,
        "is_disabled": device.is_disabled or binding.is_disabled,
        "type": device.device_type,
        "dev_alias": binding.dev_alias,
        "dev_label": list(binding.dev_label),
        "protoc": PROTOC_WIFI,
        "wifi_soft_version": device.wifi_soft_version,
        "mcu_soft_version": device.mcu_soft_version,
        "mcu_hard_version": device.mcu_hard_version,
        "is_sandbox": False,  # a self-hosted cloud is the production service of its products
        "role": binding.role,
        "mesh_id": "",  # no mesh networks, no sub-devices behind gateways here
        "gw_did": "",
    }
    if show_proto_ver:
        item["proto_ver"] = PROTO_VER
    if show_lan_prot_ver:
        item["lan_prot_ver"] = LAN_PROT_VER
    return item


def _given(entry: dict[str, Any], name: str, max_len: int) -> str | None:
    """The optional text field ``name`` of a request entry; None when it is absent (or null)."""
    return None if entry.get(name) is None else optional_string(entry, name, max_len=max_len)


def _device_entries(body: dict[str, Any]) -> list[dict[str, Any]]:
    entries = body.get("devices")
    if not isinstance(entries, list) or not entries:
        raise invalid("devices must be a non-empty list")
    if len(entries) > MAX_DEVICES_PER_CALL:
        raise invalid(f"at most {MAX_DEVICES_PER_CALL} devices per call")
    if not all(isinstance(entry, dict) for entry in entries):
        raise invalid("every entry of devices must be an object")
    return entries


@routes.get("/app/bindings")
async def list_bindings(request: web.Request) -> web.Response:
    ctx = context_of(request)
    app = await require_app(request)
    user = await require_user(request, app)
    limit = query_count(request, "limit", 20, low=1, high=MAX_LIMIT)
    skip = query_count(request, "skip", 0, low=0, high=10**9)
    show_disabled = query_flag(request, "show_disabled")
    show_proto_ver = query_flag(request, "show_proto_ver")
    show_lan_prot_ver = query_flag(request, "lan_prot_ver")
    found = await ctx.storage.list_bindings(
        user.uid, limit=limit, skip=skip, show_disabled=show_disabled, product_keys=app.product_keys
    )
    items = [
        device_item(ctx, binding, show_proto_ver=show_proto_ver, show_lan_prot_ver=show_lan_prot_ver)
        for binding in found
    ]
    return web.json_response({"devices": items})


async def _served_device(ctx: CloudContext, app: App, did: str) -> Device | None:
    """The device ``did`` if it exists and ``app`` serves its product, else None."""
    try:
        device = await ctx.storage.get_device(did)
    except (NotFound, InvalidInput):
        return None
    return device if device.product_key in app.product_keys else None


@routes.post("/app/bindings")
async def bind(request: web.Request) -> web.Response:
    ctx = context_of(request)
    app = await require_app(request)
    user = await require_user(request, app)
    entries = _device_entries(await json_object(request))
    # Validate the whole request before binding anything: a bad entry must not leave half of it applied.
    wanted = [
        (
            required_string(entry, "did", max_len=64),
            required_string(entry, "passcode", max_len=64),
            _given(entry, "remark", MAX_REMARK_LEN),
            _given(entry, "dev_alias", MAX_ALIAS_LEN),
        )
        for entry in entries
    ]
    success: list[str] = []
    failed: list[str] = []
    for did, passcode, remark, dev_alias in wanted:
        device = await _served_device(ctx, app, did)
        if device is None or device.is_disabled or not safe_equal(device.passcode, passcode):
            failed.append(did)
            continue
        ctx.device_access.drop((user.uid, did))
        # Binding again is not an error (the device is bound, as asked), and what it says is what the app wants
        # now: a new remark or alias replaces the old one; one not sent is kept.
        await ctx.storage.bind(user.uid, did, remark, dev_alias=dev_alias, rebind=True)
        _LOGGER.info("user %s bound device %s", user.uid, did)
        ctx.binding_events.binding_changed(user.uid, did, True)
        success.append(did)
    return web.json_response({"success": success, "failed": failed})


@routes.delete("/app/bindings")
async def unbind(request: web.Request) -> web.Response:
    ctx = context_of(request)
    app = await require_app(request)
    user = await require_user(request, app)
    entries = _device_entries(await json_object(request))
    dids = [required_string(entry, "did", max_len=64) for entry in entries]
    success: list[str] = []
    failed: list[str] = []
    for did in dids:
        ctx.device_access.drop((user.uid, did))
        if await _served_device(ctx, app, did) is None:
            failed.append(did)
            continue
        try:
            await ctx.storage.unbind(user.uid, did)
        except (NotFound, InvalidInput):
            failed.append(did)
            continue
        _LOGGER.info("user %s unbound device %s", user.uid, did)
        ctx.binding_events.binding_changed(user.uid, did, False)
        success.append(did)
    return web.json_response({"success": success, "failed": failed})


def _labels(body: dict[str, Any]) -> list[str] | None:
    labels = body.get("dev_label")
    if labels is None:
        return None
    if not isinstance(labels, list) or len(labels) > MAX_LABELS:
        raise invalid(f"dev_label must be a list of at most {MAX_LABELS} strings")
    return [required_string({"dev_label": label}, "dev_label", max_len=MAX_LABEL_LEN) for label in labels]


@routes.put("/app/bindings/{did:[^/]+}")  # any DID text reaches the handler: 9014, not a bare 404
async def update_binding(request: web.Request) -> web.Response:
    """§3.9: ``{"remark"?, "dev_alias"?, "dev_label"?}``, at least one; answers with the fields it set."""
    ctx = context_of(request)
    app = await require_app(request)
    user = await require_user(request, app)
    body = await json_object(request)
    remark = _given(body, "remark", MAX_REMARK_LEN)
    dev_alias = _given(body, "dev_alias", MAX_ALIAS_LEN)
    labels = _labels(body)
    if remark is None and dev_alias is None and labels is None:
        raise invalid("give remark, dev_alias and/or dev_label")
    did = request.match_info["did"]
    device = await _served_device(ctx, app, did)
    if device is None:
        raise ApiError(Code.DEVICE_NOT_FOUND)
    try:
        binding = await ctx.storage.update_binding(
            user.uid, device.did, remark=remark, dev_alias=dev_alias, dev_label=labels
        )
    except NotFound:
        raise ApiError(Code.DEVICE_NOT_BOUND) from None
    answer: dict[str, Any] = {}
    if remark is not None:
        answer["remark"] = binding.remark
    if dev_alias is not None:
        answer["dev_alias"] = binding.dev_alias
    if labels is not None:
        answer["dev_label"] = list(binding.dev_label)
    return web.json_response(answer)
