"""``GET /status``: is this cloud healthy — for monitors and load balancers, so nothing secret in it."""

from __future__ import annotations

from gizdev import __version__
from gizdev.cloud.http.api import Api, Auth, Call, Empty, Reply

__all__ = ["api"]

api = Api("status")


class Health(Reply):
    version: str
    database: bool  # answered a query just now
    broker: bool  # the device bus is connected to the broker
    devices_online: int


class StatusReply(Reply):
    status: Health  # the vendor's shape is {"status": {"version": "2.15.1"}} (§3.12); the rest is ours


@api.endpoint(
    "GET", "/status", summary="Version and health of this cloud", auth=Auth.NONE, responses={200: StatusReply}
)
async def status(call: Call[Empty, Empty]) -> StatusReply:
    ctx = call.ctx
    health = Health(
        version=__version__,
        database=await ctx.storage.ping(),
        broker=ctx.bus.connected,
        devices_online=ctx.bus.online_count,
    )
    return StatusReply(status=health)
