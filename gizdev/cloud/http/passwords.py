"""Hashing a new password in a request handler: off the event loop, a bounded number at once."""

from __future__ import annotations

import asyncio

from gizdev.cloud.http.context import CloudContext
from gizdev.cloud.security import hash_password

__all__ = ["hash_new_password"]


async def hash_new_password(ctx: CloudContext, password: str) -> str:
    """The argon2id hash of ``password`` with the server's KDF (the caller has applied the password policy)."""
    async with ctx.hashing:  # each hash holds the KDF's memory: bound how many run at once
        return await asyncio.to_thread(hash_password, password, ctx.settings.kdf)
