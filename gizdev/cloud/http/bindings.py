"""Bindings between users and devices: ``GET/POST/DELETE /app/bindings`` (Open API §3.9, the did+passcode form) and
``PUT /app/bindings/{did}`` (remark, alias, labels).

Every call reaches only devices of the products the calling app serves (``auth.check_served``): a device of
another product is "failed" in a batch, 9014 on its own, and absent from the list.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from gizdev.cloud.errors import ApiError, Code
from gizdev.cloud.http.api import Api, Auth, Body, Call, Empty, Flag, Query, Reply, Text
from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.http.forms import invalid
from gizdev.cloud.security import safe_equal
from gizdev.cloud.storage import App, Binding, Device, InvalidInput, NotFound

__all__ = ["api", "device_item", "routes"]

_LOGGER = logging.getLogger(__name__)
api = Api("bindings")
routes = api.routes

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


class BindingsQuery(Query):
    limit: int = Field(default=20, ge=1, le=MAX_LIMIT)
    skip: int = Field(default=0, ge=0, le=10**9)
    show_disabled: Flag = False  # 1: include devices that were disabled
    show_proto_ver: Flag = False  # 1: include proto_ver
    lan_prot_ver: Flag = False  # 1: include lan_prot_ver


class DeviceItem(Reply):
    """One device of ``GET /app/bindings`` (§3.9)."""

    product_key: str
    product_name: str
    did: str
    mac: str
    is_online: bool
    passcode: str
    host: str
    port: int
    port_s: int
    ws_port: int
    wss_port: int
    remark: str
    is_disabled: bool
    type: str
    dev_alias: str
    dev_label: list[str]
    protoc: int
    wifi_soft_version: str
    mcu_soft_version: str
    mcu_hard_version: str
    is_sandbox: bool
    role: str
    mesh_id: str
    gw_did: str
    proto_ver: str | None = None  # only with show_proto_ver=1
    lan_prot_ver: str | None = None  # only with lan_prot_ver=1


class DeviceList(Reply):
    devices: list[DeviceItem]


class BindEntry(Body):
    did: Text = Field(min_length=1, max_length=64)
    passcode: Text = Field(min_length=1, max_length=64)
    remark: Text | None = Field(default=None, max_length=MAX_REMARK_LEN)
    dev_alias: Text | None = Field(default=None, max_length=MAX_ALIAS_LEN)


class BindRequest(Body):
    devices: list[BindEntry] = Field(min_length=1, max_length=MAX_DEVICES_PER_CALL)


class UnbindEntry(Body):
    did: Text = Field(min_length=1, max_length=64)
    passcode: Text | None = Field(default=None, max_length=64)  # the legacy SDK sends it; not needed to unbind


class UnbindRequest(Body):
    devices: list[UnbindEntry] = Field(min_length=1, max_length=MAX_DEVICES_PER_CALL)


class BatchResult(Reply):
    success: list[str]
    failed: list[str]


class BindingUpdate(Body):
    remark: Text | None = Field(default=None, max_length=MAX_REMARK_LEN)
    dev_alias: Text | None = Field(default=None, max_length=MAX_ALIAS_LEN)
    dev_label: list[Annotated[Text, Field(min_length=1, max_length=MAX_LABEL_LEN)]] | None = Field(
        default=None, max_length=MAX_LABELS
    )


class BindingUpdated(Reply):
    """The fields the update set (only those)."""

    remark: str | None = None
    dev_alias: str | None = None
    dev_label: list[str] | None = None


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


@api.endpoint(
    "GET",
    "/app/bindings",
    summary="The caller's bound devices, newest binding first",
    auth=Auth.USER,
    query=BindingsQuery,
    responses={200: DeviceList},
)
async def list_bindings(call: Call[Empty, BindingsQuery]) -> web.Response:
    ctx, app, user, query = call.ctx, call.app, call.user, call.query
    found = await ctx.storage.list_bindings(
        user.uid, limit=query.limit, skip=query.skip, show_disabled=query.show_disabled, product_keys=app.product_keys
    )
    items = [
        device_item(ctx, binding, show_proto_ver=query.show_proto_ver, show_lan_prot_ver=query.lan_prot_ver)
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


@api.endpoint(
    "POST",
    "/app/bindings",
    summary="Bind devices by did and passcode (again: updates remark and alias)",
    auth=Auth.USER,
    body=BindRequest,
    responses={200: BatchResult},
)
async def bind(call: Call[BindRequest, Empty]) -> BatchResult:
    ctx, app, user = call.ctx, call.app, call.user
    success: list[str] = []
    failed: list[str] = []
    # The declaration validated the whole request before anything is bound: a bad entry leaves nothing applied.
    for entry in call.body.devices:
        did = entry.did
        device = await _served_device(ctx, app, did)
        if device is None or device.is_disabled or not safe_equal(device.passcode, entry.passcode):
            failed.append(did)
            continue
        ctx.device_access.drop((user.uid, did))
        # Binding again is not an error (the device is bound, as asked), and what it says is what the app wants
        # now: a new remark or alias replaces the old one; one not sent is kept.
        await ctx.storage.bind(user.uid, did, entry.remark, dev_alias=entry.dev_alias, rebind=True)
        _LOGGER.info("user %s bound device %s", user.uid, did)
        ctx.binding_events.binding_changed(user.uid, did, True)
        success.append(did)
    return BatchResult(success=success, failed=failed)


@api.endpoint(
    "DELETE",
    "/app/bindings",
    summary="Unbind devices",
    auth=Auth.USER,
    body=UnbindRequest,
    responses={200: BatchResult},
)
async def unbind(call: Call[UnbindRequest, Empty]) -> BatchResult:
    ctx, app, user = call.ctx, call.app, call.user
    success: list[str] = []
    failed: list[str] = []
    for entry in call.body.devices:
        did = entry.did
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
    return BatchResult(success=success, failed=failed)


@api.endpoint(
    "PUT",
    "/app/bindings/{did:[^/]+}",  # any DID text reaches the handler: 9014, not a bare 404
    summary="Set a binding's remark, alias and/or labels (at least one); answers with what it set",
    auth=Auth.USER,
    body=BindingUpdate,
    responses={200: BindingUpdated},
    errors=(Code.DEVICE_NOT_FOUND, Code.DEVICE_NOT_BOUND),
)
async def update_binding(call: Call[BindingUpdate, Empty]) -> web.Response:
    ctx, app, user, body = call.ctx, call.app, call.user, call.body
    if body.remark is None and body.dev_alias is None and body.dev_label is None:
        raise invalid("give remark, dev_alias and/or dev_label")
    device = await _served_device(ctx, app, call.path("did"))
    if device is None:
        raise ApiError(Code.DEVICE_NOT_FOUND)
    labels = None if body.dev_label is None else list(body.dev_label)
    try:
        binding = await ctx.storage.update_binding(
            user.uid, device.did, remark=body.remark, dev_alias=body.dev_alias, dev_label=labels
        )
    except NotFound:
        raise ApiError(Code.DEVICE_NOT_BOUND) from None
    answer: dict[str, Any] = {}
    if body.remark is not None:
        answer["remark"] = binding.remark
    if body.dev_alias is not None:
        answer["dev_alias"] = binding.dev_alias
    if labels is not None:
        answer["dev_label"] = list(binding.dev_label)
    return web.json_response(answer)
