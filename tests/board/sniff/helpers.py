"""Wiring for sniffer tests: a relay between the slave sides of two pty pairs, the test holding both masters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from gizdev.board.sniff import Direction, Relay
from gizdev.codec.frame import Frame, parse_frame
from gizdev.link import SerialLink
from gizdev.transport import FdTransport, PtyPair, open_pty_pair
from tests.transport.helpers import Recorder


@dataclass
class RecordingObserver:
    """A relay observer that keeps what it was told; ``fail`` makes every call raise after recording."""

    chunks: list[tuple[Direction, bytes]] = field(default_factory=list)
    idles: list[Direction] = field(default_factory=list)
    fail: bool = False

    def relayed(self, direction: Direction, data: bytes, when: float) -> None:
        self.chunks.append((direction, data))
        if self.fail:
            raise RuntimeError("observer failure injected by the test")

    def idle(self, direction: Direction, when: float) -> None:
        self.idles.append(direction)
        if self.fail:
            raise RuntimeError("observer failure injected by the test")

    def seen(self, direction: Direction) -> bytes:
        return b"".join(data for d, data in self.chunks if d is direction)


@dataclass
class Wire:
    """The MCU end (master of pty A) and the module end (master of pty B); the relay sits on both slaves."""

    relay: Relay
    mcu_pty: PtyPair
    module_pty: PtyPair
    mcu_end: Recorder | None = None
    module_end: Recorder | None = None
    mcu_transport: FdTransport | None = None
    module_transport: FdTransport | None = None


@asynccontextmanager
async def pty_wire(
    observer: object,
    *,
    idle_s: float = 0.03,
) -> AsyncIterator[Wire]:
    """Two pty pairs with the relay between their slave paths; the masters get Recorders."""
    mcu_pty, module_pty = open_pty_pair(), open_pty_pair()
    relay = Relay(observer, idle_s=idle_s)  # type: ignore[arg-type]
    wire = Wire(relay, mcu_pty, module_pty)
    try:
        wire.mcu_transport, wire.mcu_end = await mcu_pty.connect_master(Recorder)
        wire.module_transport, wire.module_end = await module_pty.connect_master(Recorder)
        await relay.open(mcu_pty.slave_path, module_pty.slave_path)
        yield wire
    finally:
        await relay.close()
        for transport, end in ((wire.mcu_transport, wire.mcu_end), (wire.module_transport, wire.module_end)):
            if transport is not None and end is not None:
                transport.close()
                await end.lost
        mcu_pty.close()
        module_pty.close()


def tap_sent(link: SerialLink, sink: list[bytes]) -> None:
    """Record every frame the link puts on the wire (after any fault filter the link already has)."""
    inner = link.outgoing_filter

    def recording(wire: bytes, is_ack: bool) -> bytes | None:
        out = inner(wire, is_ack) if inner is not None else wire
        if out is not None:
            sink.append(out)
        return out

    link.outgoing_filter = recording


def sent_frames(wires: list[bytes]) -> list[Frame]:
    """The frames a side sent, each parsed on its own with the strict single-frame parser."""
    return [parse_frame(wire) for wire in wires]


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` every few ms; fail with ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
