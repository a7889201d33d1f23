"""Bindings between users and devices: ``GET/POST/DELETE /app/bindings`` (Open API §3.9, the did+passcode form)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gizdev.cloud.http.auth import require_app, require_user
from gizdev.cloud.http.context import CloudContext, context_of
from gizdev.cloud.http.forms import invalid, json_object, optional_string, query_count, query_flag, required_string
from gizdev.cloud.security import safe_equal
from gizdev.cloud.storage import Binding, InvalidInput, NotFound

__all__ = ["device_item", "routes"]

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()

MAX_DEVICES_PER_CALL = 100
MAX_LIMIT = 1000
MAX_REMARK_LEN = 256
MAX_ALIAS_LEN = 128  # the storage's limit


def device_item(ctx: CloudContext, binding: Binding) -> dict[str, Any]:
    """One entry of ``{"devices": [...]}``: the fields of the seed document, then the newer ones."""
    device = binding.device
    return {
        "product_key": device.product_key,
        "did": device.did,
        "mac": device.mac.lower(),
        "is_online": device.is_online,
        "passcode": device.passcode,
        "host": ctx.settings.mqtt_host,
        "port": ctx.settings.mqtt_port,
        "remark": binding.remark,
        "is_disabled": device.is_disabled or binding.is_disabled,
        "type": "normal",
        "product_name": binding.product_name,
        "dev_alias": binding.dev_alias,
        "dev_label": [],
        "role": "normal",
    }


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
    found = await ctx.storage.list_bindings(user.uid, limit=limit, skip=skip, show_disabled=show_disabled)
    return web.json_response({"devices": [device_item(ctx, binding) for binding in found]})


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
        try:
            device = await ctx.storage.get_device(did)
        except (NotFound, InvalidInput):
            failed.append(did)
            continue
        if device.is_disabled or not safe_equal(device.passcode, passcode):
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
        try:
            await ctx.storage.unbind(user.uid, did)
        except (NotFound, InvalidInput):
            failed.append(did)
            continue
        _LOGGER.info("user %s unbound device %s", user.uid, did)
        ctx.binding_events.binding_changed(user.uid, did, False)
        success.append(did)
    return web.json_response({"success": success, "failed": failed})
