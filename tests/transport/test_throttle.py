"""The baud-rate throttle: real wire timing through a pty and a socket, smooth rather than bursty."""

from __future__ import annotations

import asyncio

import pytest

from gizdev.transport import BaudThrottle, bits_per_byte, open_port, open_pty_pair
from tests.transport.helpers import Recorder, run

BAUD = 19200
COUNT = 480
EXPECTED_S = COUNT * 10 / BAUD  # 0.25 s at 8N1


def assert_wire_timing(proto: Recorder, started: float) -> None:
    """The bytes took about as long as a UART needs, and arrived spread out, not in one lump."""
    elapsed = proto.chunks[-1][0] - started
    # The lower bound is the physics (the last byte cannot start before 479 byte times); the upper bound is
    # generous for a busy machine but far from "one burst per second".
    assert EXPECTED_S * 0.85 <= elapsed <= EXPECTED_S * 1.6, elapsed
    assert len(proto.chunks) >= 10
    assert max(len(chunk) for _, chunk in proto.chunks) <= COUNT // 5
    halfway = started + EXPECTED_S / 2
    by_halfway = sum(len(chunk) for when, chunk in proto.chunks if when <= halfway)
    assert COUNT * 0.3 <= by_halfway <= COUNT * 0.7, by_halfway


def test_throttled_pty_delivers_at_the_baud_rate() -> None:
    payload = bytes(range(240)) * 2

    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder, throttle_baud=BAUD)
            slave, slave_proto = await pair.connect_slave(Recorder)
            started = asyncio.get_running_loop().time()
            master.write(payload)
            assert master.get_write_buffer_size() > COUNT - 10  # held back by the throttle, not by the pty
            assert await slave_proto.wait_bytes(COUNT) == payload
            assert_wire_timing(slave_proto, started)
            master.close()
            slave.close()
            await master_proto.wait_lost()
            await slave_proto.wait_lost()

    run(main())


def test_unthrottled_pty_is_much_faster() -> None:
    """The control for the test above: without the throttle the same bytes arrive at once."""

    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder)
            started = asyncio.get_running_loop().time()
            master.write(b"u" * COUNT)
            await slave_proto.wait_bytes(COUNT)
            assert slave_proto.chunks[-1][0] - started < EXPECTED_S / 3
            master.close()
            slave.close()
            await master_proto.wait_lost()
            await slave_proto.wait_lost()

    run(main())


def test_throttled_pty_slave_opened_by_path() -> None:
    """The usual test setup: a virtual MCU on the master, the code under test on the slave path, real timing."""

    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            port, proto = await open_port(pair.slave_path, Recorder, baudrate=BAUD, throttle_baud=BAUD)
            started = asyncio.get_running_loop().time()
            port.write(b"s" * COUNT)
            await master_proto.wait_bytes(COUNT)
            assert_wire_timing(master_proto, started)
            port.close()
            master.close()
            await proto.wait_lost()
            await master_proto.wait_lost()

    run(main())


def test_throttled_socket_delivers_at_the_baud_rate() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        receiver = Recorder()  # the server side records arrival times per chunk
        server = await loop.create_server(lambda: receiver, "127.0.0.1", 0)
        url = f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            client, client_proto = await open_port(url, Recorder, throttle_baud=BAUD)
            started = loop.time()
            client.write(b"t" * COUNT)
            await receiver.wait_bytes(COUNT)
            assert_wire_timing(receiver, started)
            client.close()
            assert await client_proto.wait_lost() is None
            await receiver.lost  # the server side saw our close
        finally:
            server.close()
            await server.wait_closed()

    run(main())


def test_close_waits_for_throttled_bytes() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder, throttle_baud=BAUD)
            loop = asyncio.get_running_loop()
            started = loop.time()
            slave.write(b"c" * COUNT)
            slave.close()
            assert await slave_proto.wait_lost() is None
            assert loop.time() - started >= EXPECTED_S * 0.85  # close() flushed at the wire rate
            assert isinstance(await master_proto.wait_lost(), Exception)  # then the slave went away
            assert master_proto.data == b"c" * COUNT
            master.close()

    run(main())


def test_an_idle_wire_banks_no_credit() -> None:
    """After a pause the first byte leaves at once, but the rest still follows at the wire rate."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sent: list[tuple[float, bytes]] = []
        throttle = BaudThrottle(loop, lambda data: sent.append((loop.time(), data)), BAUD)
        throttle.push(b"a")
        assert [data for _, data in sent] == [b"a"]  # an idle wire sends immediately
        await asyncio.sleep(0.2)
        started = loop.time()
        throttle.push(b"b" * 96)
        assert sent[-1][1] == b"b"
        drained = loop.create_future()
        throttle.when_drained(lambda: drained.set_result(loop.time()))
        finished = await drained
        assert finished - started >= 95 * throttle.byte_time_s * 0.9
        assert b"".join(data for _, data in sent) == b"a" + b"b" * 96
        assert throttle.pending == 0

    run(main())


def test_clear_stops_the_throttle() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        sent = bytearray()
        throttle = BaudThrottle(loop, sent.extend, 1200)
        throttle.push(b"x" * 100)
        throttle.clear()
        await asyncio.sleep(0.05)
        assert sent == b"x" and throttle.pending == 0

    run(main())


@pytest.mark.parametrize(
    ("settings", "bits"),
    [((8, "N", 1), 10), ((8, "E", 1), 11), ((8, "E", 2), 12), ((7, "N", 1), 9), ((8, "N", 1.5), 10.5)],
)
def test_bits_per_byte(settings: tuple[int, str, float], bits: float) -> None:
    assert bits_per_byte(*settings) == bits


def test_throttle_rejects_a_zero_baud_rate() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="positive"):
            BaudThrottle(asyncio.get_running_loop(), print, 0)

    run(main())
