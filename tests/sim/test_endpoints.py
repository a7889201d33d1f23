"""The sim's endpoints and its assembly in process: a pty a module reopens, a TCP port whose newest connection
wins, and serve_sim announcing, answering and stopping on quit."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from gizdev.codec.p0 import load_product
from gizdev.link import ModuleSession
from gizdev.link.connection import ModuleConnection
from gizdev.sim.endpoints import PtyEndpoint, TcpEndpoint
from gizdev.sim.mcu import VirtualMcu
from gizdev.sim.serve import Address, SimConfig, serve_sim
from gizdev.transport import open_port
from tests.conftest import product_path
from tests.link.helpers import run

GOKIT = product_path("gokit")


async def _read_state(port: str) -> dict[str, Any]:
    product = load_product(GOKIT)
    session = ModuleSession(product, name=port)
    transport, link = await open_port(port, session.protocol_factory)
    try:
        await session.handshake(3)
        return dict(await session.read())
    finally:
        await session.close()
        transport.close()
        await link.wait_closed()


def test_pty_endpoint_serves_module_after_module() -> None:
    async def scenario() -> None:
        mcu = VirtualMcu(load_product(GOKIT), values={"LED_R": 7})
        endpoint = PtyEndpoint(mcu)
        try:
            where = await endpoint.open()
            assert where == {"pty": endpoint.path}
            assert (await _read_state(endpoint.path))["LED_R"] == 7
            mcu.set_values({"LED_R": 8})
            assert (await _read_state(endpoint.path))["LED_R"] == 8  # the slave path reopened
        finally:
            await mcu.close()
            await endpoint.close()

    run(scenario())


def test_tcp_endpoint_newest_connection_replaces_the_last() -> None:
    async def scenario() -> None:
        mcu = VirtualMcu(load_product(GOKIT))
        endpoint = TcpEndpoint(mcu, "127.0.0.1", 0)
        try:
            assert (await endpoint.open()) == {"listen": endpoint.url}
            host, _, port = endpoint.url.removeprefix("socket://").rpartition(":")
            first = socket.create_connection((host, int(port)))
            first.setblocking(False)
            try:
                await asyncio.sleep(0.1)  # accepted and served
                assert (await _read_state(endpoint.url))["LED_R"] == 0  # a second module takes over
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(5):
                    assert await loop.sock_recv(first, 1) == b""  # the first one was cut off
            finally:
                first.close()
        finally:
            await mcu.close()
            await endpoint.close()

    run(scenario())


def test_serve_sim_announces_serves_and_stops_on_quit() -> None:
    async def scenario() -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        config = SimConfig(load_product(GOKIT), values={"LED_R": 3}, listen=Address("127.0.0.1", 0))
        stop = asyncio.Event()
        announced: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(serve_sim(config, stop, announce=announced.set_result))
        where = await announced
        connection = ModuleConnection(ModuleSession(load_product(GOKIT)), where["listen"])
        connection.start()
        try:
            await connection.wait_ready(10)
            state = await connection.session.read()
            assert state["LED_R"] == 3
        finally:
            await connection.close()
        host, _, port = where["control"].rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b'{"cmd": "quit", "id": 1}\n')
        answers = [json.loads(await reader.readline())]
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(5):
            status = await serving
        return status, where, answers

    status, where, answers = run(scenario())
    assert status == 0 and where["listen"].startswith("socket://127.0.0.1:")
    assert answers == [{"ok": True, "quit": True, "id": 1}]
