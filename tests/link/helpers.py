"""Test wiring for link tests: a module session and a virtual MCU on a real socket pair, with per-frame faults."""

from __future__ import annotations

import asyncio
import collections
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gizdev.codec.commands import IllegalMessageCode
from gizdev.codec.frame import Frame, encode_frame
from gizdev.codec.p0 import Product, load_product
from gizdev.link import ModuleSession, SerialLink
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import LinkKnobs, MemoryTransport, PtyPair, memory_pair, open_port, open_pty_pair
from tests.conftest import product_path
from tests.guards import run

__all__ = [
    "FrameFaults",
    "Pair",
    "TransportPair",
    "mem_pair",
    "pty_pair",
    "record_chunks",
    "record_requests",
    "run",  # the guarded runner (tests/guards.py), re-exported for the tests that import it from here
    "socket_pair",
    "tcp_pair",
]

T = TypeVar("T")


@dataclass
class FrameFaults:
    """Per-frame faults on one direction: drop a fraction of frames, flip bits in a fraction of bytes."""

    drop: float = 0.0
    corrupt: float = 0.0
    seed: int = 0
    dropped: int = 0
    corrupted_frames: int = 0
    sent: int = 0
    script: list[str] = field(default_factory=list)  # "drop"/"pass"/"late" per frame, consumed first
    script_acks: bool = True  # whether the script applies to ACKs (else to requests)
    late_s: float = 0.0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def attach(self, link: SerialLink) -> None:
        def outgoing(wire: bytes, is_ack: bool) -> bytes | None:
            self.sent += 1
            # A script is about one kind of frame (ACKs or requests); the others just pass.
            action = self.script.pop(0) if self.script and is_ack == self.script_acks else "pass"
            if action == "drop" or (action == "pass" and self.drop and self.rng.random() < self.drop):
                self.dropped += 1
                return None
            if self.corrupt:
                data = bytearray(wire)
                for index in range(len(data)):
                    if self.rng.random() < self.corrupt:
                        data[index] ^= 1 << self.rng.randrange(8)
                if data != wire:
                    self.corrupted_frames += 1
                wire = bytes(data)
            if action == "late":
                asyncio.get_running_loop().call_later(self.late_s, link.write_raw, wire)
                return None
            return wire

        link.outgoing_filter = outgoing


@dataclass
class Pair:
    product: Product
    module: ModuleSession
    mcu: VirtualMcu

    @property
    def module_link(self) -> SerialLink:
        assert self.module.link is not None
        return self.module.link

    @property
    def mcu_link(self) -> SerialLink:
        assert self.mcu.session.link is not None
        return self.mcu.session.link

    async def close(self) -> None:
        await self.module.close()
        await self.mcu.close()
        # Let both socket transports see the close (EOF on the peer) and release their sockets.
        for link in (self.module.link, self.mcu.session.link):
            if link is not None:
                await asyncio.wait_for(link.wait_closed(), 2)


async def socket_pair(
    name: str = "gokit",
    *,
    module_kwargs: dict[str, Any] | None = None,
    mcu_kwargs: dict[str, Any] | None = None,
    mcu_link_hook: Callable[[SerialLink], None] | None = None,
    module_link_hook: Callable[[SerialLink], None] | None = None,
) -> Pair:
    """Module session <-> virtual MCU over a connected pair of real Unix sockets."""
    product = load_product(product_path(name))
    loop = asyncio.get_running_loop()
    mcu = VirtualMcu(product, **(mcu_kwargs or {}))
    module = ModuleSession(product, **(module_kwargs or {}))
    left, right = socket.socketpair()
    await loop.create_connection(mcu.protocol_factory, sock=left)
    await loop.create_connection(module.protocol_factory, sock=right)
    pair = Pair(product, module, mcu)
    if mcu_link_hook:
        mcu_link_hook(pair.mcu_link)
    if module_link_hook:
        module_link_hook(pair.module_link)
    mcu.start()
    return pair


# ---- module <-> virtual MCU over the real transports (pty, socket://, in-memory pair) ----------------------


@dataclass
class TransportPair(Pair):
    """A Pair over one of gizdev's transports; ``module_url`` reopens the module's side (pty path or socket URL).

    ``close()`` also releases what the wiring owns (pty fds, the listening server), so that a test leaves no fd.
    """

    kind: str = ""
    module_url: str = ""
    throttle_baud: int | None = None
    pty: PtyPair | None = None
    server: asyncio.Server | None = None
    extra_ptys: list[PtyPair] = field(default_factory=list)
    module_transport: asyncio.Transport | None = None  # the latest one
    memory: tuple[MemoryTransport, MemoryTransport] | None = None  # (module's end, MCU's end)

    async def connect_module(self) -> SerialLink:
        """Open the module's side (again) with a NEW link from the session, as after re-plugging a cable."""
        self.module_transport, link = await open_port(
            self.module_url, self.module.protocol_factory, throttle_baud=self.throttle_baud
        )
        return link

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self.server is not None:
                self.server.close()
                await self.server.wait_closed()
            for pty in (self.pty, *self.extra_ptys):
                if pty is not None:
                    pty.close()


def _sessions(name: str, module_kwargs: dict[str, Any] | None, mcu_kwargs: dict[str, Any] | None) -> Pair:
    product = load_product(product_path(name))
    return Pair(product, ModuleSession(product, **(module_kwargs or {})), VirtualMcu(product, **(mcu_kwargs or {})))


async def pty_pair(
    name: str = "gokit",
    *,
    throttle_baud: int | None = None,
    module_kwargs: dict[str, Any] | None = None,
    mcu_kwargs: dict[str, Any] | None = None,
) -> TransportPair:
    """Virtual MCU on a pty master, the module on the slave path through pyserial (``open_port``).

    The pty pair keeps its own slave fd open, so the master (the MCU) stays up while the module's side is closed
    and reopened, as a board stays powered while its cable is pulled.
    """
    base = _sessions(name, module_kwargs, mcu_kwargs)
    pty = open_pty_pair()
    pair = TransportPair(
        base.product, base.module, base.mcu, kind="pty", module_url=pty.slave_path, throttle_baud=throttle_baud, pty=pty
    )
    try:
        await pty.connect_master(pair.mcu.protocol_factory, throttle_baud=throttle_baud)
        await pair.connect_module()
    except BaseException:
        await pair.close()
        raise
    pair.mcu.start()
    return pair


async def tcp_pair(
    name: str = "gokit",
    *,
    throttle_baud: int | None = None,
    module_kwargs: dict[str, Any] | None = None,
    mcu_kwargs: dict[str, Any] | None = None,
) -> TransportPair:
    """Virtual MCU served on a loopback TCP port, the module through ``open_port("socket://127.0.0.1:PORT")``."""
    base = _sessions(name, module_kwargs, mcu_kwargs)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(base.mcu.protocol_factory, "127.0.0.1", 0)
    url = f"socket://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    pair = TransportPair(
        base.product, base.module, base.mcu, kind="socket", module_url=url, throttle_baud=throttle_baud, server=server
    )
    try:
        await pair.connect_module()
        # The server side's link exists once the server accepted; wait for it (a loop turn or two).
        async with asyncio.timeout(2):
            while pair.mcu.session.link is None:
                await asyncio.sleep(0.001)
    except BaseException:
        await pair.close()
        raise
    pair.mcu.start()
    return pair


async def mem_pair(
    name: str = "gokit",
    *,
    to_mcu: LinkKnobs | None = None,
    to_module: LinkKnobs | None = None,
    module_kwargs: dict[str, Any] | None = None,
    mcu_kwargs: dict[str, Any] | None = None,
) -> TransportPair:
    """Module <-> virtual MCU over gizdev's in-memory transport pair, with the given knobs per direction."""
    base = _sessions(name, module_kwargs, mcu_kwargs)
    ends = memory_pair(
        base.module.protocol_factory(),
        base.mcu.protocol_factory(),
        knobs_a_to_b=to_mcu,
        knobs_b_to_a=to_module,
        names=("module", "mcu"),
    )
    pair = TransportPair(base.product, base.module, base.mcu, kind="memory", module_transport=ends[0], memory=ends)
    pair.mcu.start()
    return pair


def record_requests(link: SerialLink) -> collections.Counter[int]:
    """Count the peer's requests that reach ``link``'s handler (resends the link suppressed are not counted)."""
    counts: collections.Counter[int] = collections.Counter()
    handler = link.handler

    def counting(frame: Frame) -> bytes | IllegalMessageCode | None:
        counts[frame.cmd] += 1
        return handler(frame)

    link.handler = counting
    return counts


def record_forgeries(sender: asyncio.Transport, receiver: SerialLink) -> list[Frame]:
    """The requests ``receiver``'s handler got that ``sender`` never wrote: frames the line forged.

    An 8-bit checksum lets some damage through: two changed bytes that cancel, or a damaged length that makes one
    frame of the next frame's bytes whose sum happens to match (1 in 256). A lossy test counts such frames apart.
    """
    written = bytearray()
    write = sender.write
    forged: list[Frame] = []

    def recording_write(data: bytes | bytearray | memoryview) -> None:
        written.extend(data)
        write(data)

    handler = receiver.handler

    def checking(frame: Frame) -> bytes | IllegalMessageCode | None:
        if written.find(encode_frame(frame.cmd, frame.sn, frame.payload, frame.flags)) == -1:
            forged.append(frame)
        return handler(frame)

    sender.write = recording_write  # type: ignore[method-assign]
    receiver.handler = checking
    return forged


def record_chunks(link: SerialLink) -> list[int]:
    """The sizes of the chunks the transport hands to ``link`` (a spy on its asyncio.Protocol side)."""
    sizes: list[int] = []
    receive = link.data_received

    def spying(data: bytes) -> None:
        sizes.append(len(data))
        receive(data)

    link.data_received = spying  # type: ignore[method-assign]
    return sizes
