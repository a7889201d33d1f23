"""The in-memory pair: delivery through the loop, chunking, loss, corruption, delay, order, close semantics."""

from __future__ import annotations

import asyncio
import random

import pytest

from gizdev.errors import TransportError
from gizdev.transport import LinkKnobs, MemoryTransport, memory_pair
from tests.transport.helpers import Recorder, run

N_BYTES = 10_000


def payload(size: int = N_BYTES, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


class WriteOnConnect(Recorder):
    """Writes in connection_made, the way a link that starts with a handshake does."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(b"hello")


def test_bytes_flow_both_ways_through_the_loop_never_inside_write() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = memory_pair(a, b)
        assert a.transport is ta and b.transport is tb  # connection_made before memory_pair returns
        assert ta.get_extra_info("port") == "memory://a" and tb.get_extra_info("port") == "memory://b"
        assert isinstance(ta, asyncio.Transport)
        ta.write(b"ping")
        tb.write(bytearray(b"pong"))
        assert b.data == b"" and a.data == b""  # nothing was delivered inside write()
        assert await b.wait_bytes(4) == b"ping"
        assert await a.wait_bytes(4) == b"pong"
        assert (ta.counters.sent, ta.counters.delivered, tb.counters.sent) == (4, 4, 4)
        ta.close()
        await a.wait_lost()
        await b.wait_lost()

    run(main())


def test_a_write_in_connection_made_reaches_a_connected_peer() -> None:
    async def main() -> None:
        a, b = WriteOnConnect(), WriteOnConnect()
        ta, _ = memory_pair(a, b)
        assert await a.wait_bytes(5) == b"hello"
        assert await b.wait_bytes(5) == b"hello"
        assert a.violations == [] and b.violations == []
        ta.close()
        await b.wait_lost()

    run(main())


def test_byte_by_byte_chunking_preserves_content_and_order() -> None:
    data = payload(2000)

    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, _ = memory_pair(a, b, knobs_a_to_b=LinkKnobs(chunk_size=1))
        for start in range(0, len(data), 500):
            ta.write(data[start : start + 500])
        assert await b.wait_bytes(len(data)) == data
        assert len(b.chunks) == len(data)
        assert {len(chunk) for _, chunk in b.chunks} == {1}
        ta.close()
        await b.wait_lost()

    run(main())


def test_chunks_never_exceed_chunk_size() -> None:
    data = payload(1000)

    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, _ = memory_pair(a, b, knobs_a_to_b=LinkKnobs(chunk_size=7))
        ta.write(data)
        assert await b.wait_bytes(len(data)) == data
        assert max(len(chunk) for _, chunk in b.chunks) == 7
        assert len(b.chunks) == -(-len(data) // 7)
        ta.close()
        await b.wait_lost()

    run(main())


def test_other_tasks_run_between_chunks() -> None:
    """Chunks are separate loop callbacks, so a timer can fire in the middle of a frame, as on a real line."""

    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, _ = memory_pair(a, b, knobs_a_to_b=LinkKnobs(chunk_size=1))
        seen_at_tick: list[int] = []

        async def ticker() -> None:
            for _ in range(10):
                seen_at_tick.append(len(b.data))
                await asyncio.sleep(0)

        ta.write(b"x" * 100)
        await ticker()
        assert 0 < seen_at_tick[-1] < 100
        await b.wait_bytes(100)
        ta.close()
        await b.wait_lost()

    run(main())


async def lossy_run(knobs: LinkKnobs, data: bytes) -> tuple[bytes, MemoryTransport]:
    a, b = Recorder(), Recorder()
    ta, _ = memory_pair(a, b, knobs_a_to_b=knobs)
    for start in range(0, len(data), 100):
        ta.write(data[start : start + 100])
    ta.close()
    await b.wait_lost()
    return bytes(b.data), ta


def test_loss_drops_the_expected_fraction_reproducibly() -> None:
    data = payload()

    async def main() -> None:
        received, ta = await lossy_run(LinkKnobs(loss=0.1, seed=1), data)
        counters = ta.counters
        assert counters.sent == N_BYTES
        assert 800 <= counters.dropped <= 1200
        assert len(received) == N_BYTES - counters.dropped == counters.delivered
        assert counters.corrupted == 0
        # Every received byte is an original one, in order: the received bytes are a subsequence of the data.
        remaining = iter(data)
        assert all(byte in remaining for byte in received)
        again, _ = await lossy_run(LinkKnobs(loss=0.1, seed=1), data)
        other, _ = await lossy_run(LinkKnobs(loss=0.1, seed=2), data)
        assert again == received
        assert other != received

    run(main())


def test_corruption_changes_the_expected_fraction_to_different_bytes() -> None:
    data = payload()

    async def main() -> None:
        received, ta = await lossy_run(LinkKnobs(corruption=0.05, seed=3), data)
        assert len(received) == N_BYTES
        changed = sum(1 for sent, got in zip(data, received, strict=True) if sent != got)
        assert changed == ta.counters.corrupted  # a corrupted byte is never replaced by itself
        assert 350 <= changed <= 650
        assert ta.counters.dropped == 0

    run(main())


def test_loss_and_corruption_together() -> None:
    async def main() -> None:
        received, ta = await lossy_run(LinkKnobs(loss=0.2, corruption=0.2, chunk_size=3, seed=4), payload())
        counters = ta.counters
        assert 1700 <= counters.dropped <= 2300
        # Corruption applies to the survivors: about 20% of 8000.
        assert 1300 <= counters.corrupted <= 1900
        assert len(received) == counters.delivered == N_BYTES - counters.dropped

    run(main())


def test_delay_is_respected_and_order_preserved() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, b = Recorder(), Recorder()
        ta, tb = memory_pair(a, b, knobs_a_to_b=LinkKnobs(delay=0.1, chunk_size=2))
        started = loop.time()
        ta.write(b"first ")
        await asyncio.sleep(0.03)
        ta.write(b"second ")
        ta.write(b"third")
        tb.write(b"undelayed")  # the other direction has no delay
        assert await a.wait_bytes(9) == b"undelayed"
        assert loop.time() - started < 0.05
        assert b.data == b""
        assert await b.wait_bytes(18) == b"first second third"
        first_arrival = b.chunks[0][0] - started
        last_arrival = b.chunks[-1][0] - started
        assert 0.1 <= first_arrival < 0.3
        assert 0.13 <= last_arrival < 0.4
        ta.close()
        await b.wait_lost()

    run(main())


def test_close_reports_none_locally_and_peer_closed_remotely_after_pending_data() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = memory_pair(a, b, knobs_a_to_b=LinkKnobs(delay=0.05))
        ta.write(b"before close")
        ta.close()
        assert ta.is_closing() and not tb.is_closing()
        ta.write(b"after close")  # dropped, not an error
        tb.write(b"to a closed end")  # dropped on the wire: a's protocol already heard connection_lost
        assert await a.wait_lost() is None
        exc = await b.wait_lost()
        assert isinstance(exc, TransportError)
        assert "peer closed" in str(exc) and "memory://b" in str(exc)
        assert b.data == b"before close"  # bytes on the wire arrived before the close
        assert a.data == b""
        assert tb.is_closing()
        tb.close()  # nothing left to report
        await asyncio.sleep(0.01)
        assert len(a.lost_calls) == len(b.lost_calls) == 1

    run(main())


def test_abort_drops_bytes_on_the_wire() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, _ = memory_pair(a, b, knobs_a_to_b=LinkKnobs(delay=0.05))
        ta.write(b"never arrives")
        ta.abort()
        assert await a.wait_lost() is None
        assert isinstance(await b.wait_lost(), TransportError)
        assert b.data == b""

    run(main())


def test_both_sides_closing_hear_none() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = memory_pair(a, b)
        ta.close()
        tb.close()
        assert await a.wait_lost() is None
        assert await b.wait_lost() is None

    run(main())


def test_pause_reading_holds_chunks_on_the_wire() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = memory_pair(a, b)
        tb.pause_reading()
        assert not tb.is_reading()
        ta.write(b"held")
        await asyncio.sleep(0.01)
        assert b.data == b""
        tb.resume_reading()
        assert await b.wait_bytes(4) == b"held"
        ta.close()
        await b.wait_lost()

    run(main())


@pytest.mark.parametrize(
    "knobs",
    [{"chunk_size": 0}, {"loss": 1.5}, {"corruption": -0.1}, {"delay": -1.0}],
)
def test_bad_knobs_are_refused(knobs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LinkKnobs(**knobs)  # type: ignore[arg-type]


def test_memory_pair_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        memory_pair(asyncio.Protocol(), asyncio.Protocol())
