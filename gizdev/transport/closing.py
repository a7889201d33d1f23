"""Closing a port without hanging on a peer that stopped reading: flush for a grace period, then abort."""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["CLOSE_GRACE_S", "close_within"]

CLOSE_GRACE_S = 1.0  # how long a closing port may take to flush what it still has to write


class _Closes(Protocol):
    async def wait_closed(self) -> object: ...


async def close_within(protocol: _Closes, transport: asyncio.BaseTransport, grace_s: float = CLOSE_GRACE_S) -> None:
    """Close ``transport`` and wait until ``protocol`` has seen it; after ``grace_s`` the transport is aborted."""
    transport.close()
    try:
        async with asyncio.timeout(grace_s):
            await protocol.wait_closed()
    except TimeoutError:
        transport.abort()  # type: ignore[attr-defined]  # every transport of ours (fd, socket, pty) has it
        await protocol.wait_closed()
