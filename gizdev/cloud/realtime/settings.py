"""The realtime WebSocket API's limits (cloud protocol §4)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RealtimeSettings"]


@dataclass(frozen=True, slots=True)
class RealtimeSettings:
    # A client that lets this many messages wait is dropped: pushes must never wait for one client.
    send_queue: int = 256
    # The largest message a client may send: a c2s_raw of the largest raw control (4 KiB as a JSON byte array)
    # or a c2s_write of every point of a big product fits; aiohttp closes the connection with 1009 above it.
    max_message_bytes: int = 64 * 1024
    login_timeout_s: float = 30.0  # from connecting to a successful login_req, pings or not
    max_heartbeat_s: int = 180  # the largest heartbeat_interval (D-ws)
    # Silence allowed: heartbeat_interval × this (a ping sent exactly on time may arrive a little late).
    heartbeat_slack: float = 1.5
    max_login_attempts: int = 3  # failed login_req before the connection is closed
    max_subscribe: int = 100  # devices in one subscribe_req
    # Messages a client may send: a burst, then this many a second (more are refused with 9041).
    rate_per_s: float = 20.0
    burst: int = 60
    close_timeout_s: float = 2.0  # for the last messages and the close handshake of a connection we end
