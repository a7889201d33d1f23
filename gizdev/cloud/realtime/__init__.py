"""The app realtime WebSocket API (``/ws/app/v1``, cloud protocol §4): the hub of logged-in clients and its limits.

The aiohttp handler that speaks the protocol is :mod:`gizdev.cloud.http.realtime`; this package knows no HTTP.
"""

from gizdev.cloud.realtime.hub import P0_TYPES, HubStats, RealtimeHub, Session, message, noti_attrs
from gizdev.cloud.realtime.sendqueue import SendQueue
from gizdev.cloud.realtime.settings import RealtimeSettings

__all__ = ["P0_TYPES", "HubStats", "RealtimeHub", "RealtimeSettings", "SendQueue", "Session", "message", "noti_attrs"]
