"""Running a virtual MCU: the board, its endpoint (pty or TCP), the JSON control API and the stdin commands.

:func:`serve_sim` assembles them from a :class:`SimConfig`, announces where they are, and serves until asked to
stop; every part it opened is closed on the way out, the reporter before the link it reports on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gizdev.codec.p0 import Product
from gizdev.errors import ConfigError, GizdevError
from gizdev.sim.control import ControlServer, SimController, StdinCommands, format_address
from gizdev.sim.endpoints import Endpoint, PtyEndpoint, TcpEndpoint
from gizdev.sim.mcu import PERIODIC_INTERVAL_S, READONLY_MIN_INTERVAL_S, FaultPlan, VirtualMcu

__all__ = ["Address", "SimConfig", "serve_sim"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Address:
    """A TCP address to listen on (port 0: a free one)."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything a running sim is made of."""

    product: Product
    values: dict[str, object] = field(default_factory=dict)
    faults: FaultPlan = field(default_factory=FaultPlan)
    periodic_s: float = PERIODIC_INTERVAL_S
    readonly_interval_s: float = READONLY_MIN_INTERVAL_S
    read_current_state: bool = False  # reads answer the state now, not the last reported one (not the SDK's rule)
    listen: Address | None = None  # None: a pty
    control: Address | None = Address("127.0.0.1", 0)  # None: no control API
    baud: int | None = None  # pace what the sim sends, as a UART at this speed would
    allow_remote: bool = False


async def serve_sim(
    config: SimConfig,
    stop: asyncio.Event,
    *,
    announce: Callable[[dict[str, Any]], None],
    answer: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Serve until ``stop`` is set (0) or the pty fails (1); ``announce`` gets where the sim is, once ready.

    ``answer`` (when given) receives the answer to each text command read on stdin; without it stdin is not read.
    A ``quit`` command sets ``stop``.
    """
    try:
        mcu = VirtualMcu(
            config.product,
            values=config.values,
            periodic_interval_s=config.periodic_s,
            readonly_min_interval_s=config.readonly_interval_s,
            read_current_state=config.read_current_state,
            faults=config.faults,
        )
    except GizdevError as exc:
        raise ConfigError(f"--set: {exc}") from None
    controller = SimController(mcu, on_quit=stop.set)
    async with contextlib.AsyncExitStack() as stack:
        endpoint: Endpoint
        if config.listen is None:
            endpoint = PtyEndpoint(mcu, config.baud)
        else:
            endpoint = TcpEndpoint(
                mcu, config.listen.host, config.listen.port, config.baud, allow_remote=config.allow_remote
            )
        stack.push_async_callback(endpoint.close)
        where = await endpoint.open()
        # Registered after the endpoint, so it runs before it: the reporter stops, then the link closes.
        stack.push_async_callback(mcu.close)
        where["control"] = None
        if config.control is not None:
            server = ControlServer(
                controller, config.control.host, config.control.port, allow_remote=config.allow_remote
            )
            stack.push_async_callback(server.close)
            where["control"] = format_address(*await server.start())
        mcu.start()
        announce(where)
        _LOGGER.info("sim: %s (%s) ready: %s", config.product.name, config.product.product_key, json.dumps(where))
        if answer is not None:
            commands = StdinCommands(controller, answer)
            commands.start()
            stack.callback(commands.close)
        loop = asyncio.get_running_loop()
        failed = loop.create_task(endpoint.failed(), name="sim-endpoint")
        stopped = loop.create_task(stop.wait(), name="sim-stop")
        try:
            await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (failed, stopped):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        _LOGGER.info("sim: stopping")
        if failed.done() and not failed.cancelled():
            _LOGGER.error("sim: %s", failed.result())
            return 1
    return 0
