"""The relay on real pseudo-terminals: bytes arrive unchanged, in order and complete, whatever the observer does."""

from __future__ import annotations

import asyncio
import functools
import os
import random

import pytest

from gizdev.board.sniff import Direction, Relay
from gizdev.errors import TransportError
from gizdev.transport import open_pty_pair
from tests.board.sniff.helpers import RecordingObserver, Wire, pty_wire, until
from tests.transport.helpers import Recorder, run

MCU, MODULE = Direction.MCU_TO_MODULE, Direction.MODULE_TO_MCU


def hostile_chunks(rng: random.Random, count: int) -> list[bytes]:
    """Chunks with every byte value, runs of 0xFF, half frame headers and stuffing pairs: nothing a relay may touch."""
    pieces = [b"\xff", b"\xff\xff", b"\xff\x55", b"\xff\xff\x00\x05", b"\x00", b"\r\n", b"\x11\x13", bytes(range(256))]
    return [
        b"".join(rng.choice(pieces) if rng.random() < 0.3 else rng.randbytes(rng.randrange(1, 300)) for _ in range(4))
        for _ in range(count)
    ]


async def _both_ways(wire: Wire, rng: random.Random) -> tuple[bytes, bytes]:
    assert wire.mcu_transport and wire.module_transport and wire.mcu_end and wire.module_end
    up, down = hostile_chunks(rng, 60), hostile_chunks(rng, 60)
    for a, b in zip(up, down, strict=True):
        wire.mcu_transport.write(a)
        wire.module_transport.write(b)
        if rng.random() < 0.3:
            await asyncio.sleep(0.001)
    sent_up, sent_down = b"".join(up), b"".join(down)
    async with asyncio.timeout(10):
        await wire.module_end.wait_bytes(len(sent_up))
        await wire.mcu_end.wait_bytes(len(sent_down))
    return sent_up, sent_down


@pytest.mark.parametrize("fail", [False, True], ids=["observer-ok", "observer-raises"])
def test_bytes_arrive_unchanged_in_order_both_ways(fail: bool) -> None:
    async def main() -> None:
        observer = RecordingObserver(fail=fail)
        async with pty_wire(observer) as wire:
            sent_up, sent_down = await _both_ways(wire, random.Random(6))
            assert wire.module_end is not None and wire.mcu_end is not None
            await asyncio.sleep(0.05)  # anything extra (a duplicate, an echo) would show up by now
            assert bytes(wire.module_end.data) == sent_up
            assert bytes(wire.mcu_end.data) == sent_down
            # The observer saw exactly the relayed bytes, each way, even when it raised every time.
            assert observer.seen(MCU) == sent_up
            assert observer.seen(MODULE) == sent_down
            assert wire.relay.stats.mcu_to_module_bytes == len(sent_up)
            assert wire.relay.stats.module_to_mcu_bytes == len(sent_down)
            if fail:
                assert wire.relay.stats.observer_failures >= len(observer.chunks)
            else:
                assert wire.relay.stats.observer_failures == 0

    run(main(), timeout=30)


def test_idle_is_reported_once_per_burst_per_direction() -> None:
    async def main() -> None:
        observer = RecordingObserver()
        async with pty_wire(observer, idle_s=0.03) as wire:
            assert wire.mcu_transport is not None and wire.module_end is not None
            for burst in range(3):
                for _ in range(5):  # bytes 5 ms apart: one burst, not five
                    wire.mcu_transport.write(b"\x01")
                    await asyncio.sleep(0.005)
                await until(
                    functools.partial(_has_idles, observer.idles, burst + 1), what=f"idle after burst {burst + 1}"
                )
                await asyncio.sleep(0.1)
                assert observer.idles == [MCU] * (burst + 1)
            assert bytes(wire.module_end.data) == b"\x01" * 15

    run(main())


class _Greeter(Recorder):
    """A board that talks the moment the sniffer connects, before the sniffer's other port is open."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(b"hello from the first port")


def test_bytes_that_arrive_while_the_other_port_opens_are_forwarded() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ends: dict[str, Recorder] = {}

        def factory(name: str) -> Recorder:
            ends[name] = _Greeter() if name == "mcu" else Recorder()
            return ends[name]

        mcu_server = await loop.create_server(lambda: factory("mcu"), "127.0.0.1", 0)
        module_server = await loop.create_server(lambda: factory("module"), "127.0.0.1", 0)
        observer = RecordingObserver()
        relay = Relay(observer)
        try:
            await relay.open(
                f"socket://127.0.0.1:{mcu_server.sockets[0].getsockname()[1]}",
                f"socket://127.0.0.1:{module_server.sockets[0].getsockname()[1]}",
            )
            await until(lambda: "module" in ends, what="the module-side connection")
            await ends["module"].wait_bytes(len(b"hello from the first port"))
            assert bytes(ends["module"].data) == b"hello from the first port"
            assert observer.seen(MCU) == b"hello from the first port"
        finally:
            await relay.close()
            for server in (mcu_server, module_server):
                server.close()
                await server.wait_closed()
            for end in ends.values():
                await end.lost

    run(main())


def test_a_side_going_away_stops_the_relay_with_the_reason() -> None:
    async def main() -> None:
        observer = RecordingObserver()
        async with pty_wire(observer) as wire:
            assert wire.module_transport is not None and wire.mcu_end is not None
            # Hang up the module's end: the relay's slave read on pty B sees EOF/EIO.
            wire.module_transport.abort()
            await wire.module_end.lost if wire.module_end else None
            wire.module_transport = None
            async with asyncio.timeout(5):
                reason = await wire.relay.wait_closed()
            assert isinstance(reason, TransportError)
            assert wire.module_pty.slave_path in str(reason)
            assert wire.relay.stopped

    run(main())


def test_socket_ports_work_too() -> None:
    """socket://HOST:PORT on both sides (ser2net-style adapters): the test plays both boards as TCP servers."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ends: dict[str, Recorder] = {}

        def factory(name: str) -> Recorder:
            ends[name] = Recorder()
            return ends[name]

        mcu_server = await loop.create_server(lambda: factory("mcu"), "127.0.0.1", 0)
        module_server = await loop.create_server(lambda: factory("module"), "127.0.0.1", 0)
        observer = RecordingObserver()
        relay = Relay(observer)
        try:
            await relay.open(
                f"socket://127.0.0.1:{mcu_server.sockets[0].getsockname()[1]}",
                f"socket://127.0.0.1:{module_server.sockets[0].getsockname()[1]}",
            )
            await until(lambda: len(ends) == 2, what="both connections")
            payload = os.urandom(5000)
            assert ends["mcu"].transport is not None
            ends["mcu"].transport.write(payload)
            await ends["module"].wait_bytes(len(payload))
            assert bytes(ends["module"].data) == payload
            assert observer.seen(MCU) == payload
        finally:
            await relay.close()
            for server in (mcu_server, module_server):
                server.close()
                await server.wait_closed()
            for end in ends.values():
                await end.lost

    run(main())


def test_an_unopenable_port_is_a_transport_error_and_nothing_stays_open() -> None:
    async def main() -> None:
        observer = RecordingObserver()
        relay = Relay(observer)
        with open_pty_pair() as pair, pytest.raises(TransportError, match="/nonexistent/tty"):
            await relay.open(pair.slave_path, "/nonexistent/tty")
        await relay.close()

    run(main())


def _has_idles(idles: list[Direction], count: int) -> bool:
    return len(idles) == count
