"""Test wiring for link tests: a module session and a virtual MCU on a real socket pair, with per-frame faults."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gizdev.codec.p0 import Product, load_product
from gizdev.link import ModuleSession, SerialLink
from gizdev.sim.mcu import VirtualMcu
from tests.conftest import product_path

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine in a fresh loop; fail on leftover tasks."""

    async def guarded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
            for task in leftovers:
                task.cancel()
            assert not leftovers, f"tasks left behind: {leftovers}"

    return asyncio.run(guarded())


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
