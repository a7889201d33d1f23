"""ModuleConnection: pulled cables (server gone, pty transport dropped) end in a reconnect and a new handshake."""

from __future__ import annotations

import asyncio
import time

import pytest

from gizdev.codec.p0 import load_product
from gizdev.errors import AckTimeout, LinkClosed
from gizdev.link import ModuleSession
from gizdev.link.connection import ModuleConnection
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_pty_pair
from tests.conftest import product_path
from tests.link.helpers import run


def drain_kinds(session: ModuleSession) -> list[str]:
    kinds = []
    while not session.events.empty():
        kinds.append(session.events.get_nowait().kind)
    return kinds


def test_socket_peer_gone_and_back() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        product = load_product(product_path("gokit"))
        mcu = VirtualMcu(product)
        mcu.start()
        server = await loop.create_server(mcu.protocol_factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = ModuleSession(product, heartbeat_interval=0.1)
        connection = ModuleConnection(session, f"socket://127.0.0.1:{port}", backoff_max=0.4)
        connection.start()
        try:
            await connection.wait_ready(5)
            await session.write({"LED_R": 5})
            mcu.inject(silent=True)  # the next write hangs on its ACK while the cable is pulled
            pending = asyncio.ensure_future(session.write({"LED_R": 6}))
            await asyncio.sleep(0.05)
            server.close()
            assert mcu.session.link is not None
            mcu.session.link.close()
            await server.wait_closed()
            with pytest.raises((LinkClosed, AckTimeout)):
                await pending
            await asyncio.sleep(0.3)  # a few refused connection attempts
            assert not connection.ready.is_set()
            mcu.inject(silent=False)
            server = await loop.create_server(mcu.protocol_factory, "127.0.0.1", port)
            started = time.monotonic()
            await connection.wait_ready(10)
            assert time.monotonic() - started < 1.5  # backoff capped at 0.4 s
            assert connection.connects == 2
            assert await session.read() == mcu.state
            assert drain_kinds(session) == ["mcu_online", "mcu_offline", "mcu_online"]
        finally:
            await connection.close()
            await mcu.close()
            server.close()
            await server.wait_closed()

    run(scenario())


def test_pty_link_dropped_and_reopened() -> None:
    async def scenario() -> None:
        product = load_product(product_path("gokit"))
        mcu = VirtualMcu(product)
        mcu.start()
        with open_pty_pair() as pty:
            await pty.connect_master(mcu.protocol_factory)
            session = ModuleSession(product)
            connection = ModuleConnection(session, pty.slave_path, backoff_max=0.2)
            connection.start()
            try:
                await connection.wait_ready(5)
                first = session.link
                assert first is not None
                first.close()  # as if the USB adapter went away under us
                await first.wait_closed()
                await asyncio.sleep(0)
                await connection.wait_ready(5)
                assert session.link is not first and connection.connects == 2
                await session.write({"Motor_Speed": 3})
                assert mcu.state["Motor_Speed"] == 3
            finally:
                await connection.close()
                await mcu.close()

    run(scenario())


def test_nothing_to_open_keeps_retrying_quietly() -> None:
    async def scenario() -> None:
        product = load_product(product_path("gokit"))
        session = ModuleSession(product)
        connection = ModuleConnection(session, "socket://127.0.0.1:1", backoff_max=0.05)
        connection.start()
        try:
            await asyncio.sleep(0.4)
            assert not connection.ready.is_set()
            assert connection.connects == 0
            assert connection.last_error is not None and "127.0.0.1:1" in str(connection.last_error)
        finally:
            await connection.close()

    run(scenario())
