"""Whether a listener's host keeps it to this machine (the metrics endpoint and the console's app list ask)."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """Whether a listener on ``host`` (an address, or "localhost") is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
