"""The cloud's own MQTT connection: log in as the service user with aiomqtt (MQTT 3.1.1)."""

from __future__ import annotations

import contextlib
import secrets
import ssl
from collections.abc import AsyncIterator

import aiomqtt

from gizdev.cloud.broker.settings import BrokerSettings
from gizdev.errors import BrokerError

__all__ = ["service_client"]


@contextlib.asynccontextmanager
async def service_client(
    settings: BrokerSettings,
    *,
    identifier: str | None = None,
    keepalive_s: int = 60,
    timeout_s: float = 10.0,
) -> AsyncIterator[aiomqtt.Client]:
    """Connect as ``settings.username`` and yield the aiomqtt client; BrokerError if the broker refuses or is away.

    With the managed broker client ids are pinned to usernames, so the service user has one connection at a time
    (a second one takes the first one's place): open one client and share it. The client does not reconnect by
    itself; after a broker restart, enter ``service_client`` again.
    """
    name = settings.username or "gizdev"
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier or f"{name}-{secrets.token_hex(4)}",
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
        keepalive=keepalive_s,
        timeout=timeout_s,
        tls_context=ssl.create_default_context() if settings.tls else None,
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(client)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"cannot log in to {settings} as {name}: {exc}") from exc
        yield client
