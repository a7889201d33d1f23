"""A raw LAN app for the tests: writes bytes, reads envelopes (or exact bytes), notices when the device hangs up."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import cast

from gizdev.codec.envelope import Envelope, EnvelopeDeframer
from gizdev.errors import CodecError

TIMEOUT_S = 10.0  # generous: the machine is shared and loaded
HEARTBEAT = bytes.fromhex("000000030300001500")  # as apps send it (gagent-wire-observations §4)
HEARTBEAT_REPLY = bytes.fromhex("0000000303000016")
PASSCODE_REQUEST = bytes.fromhex("0000000303000006")
DISCOVER = bytes.fromhex("0000000303000003")
LOGIN_OK = bytes.fromhex("000000030400000900")
LOGIN_FAIL = bytes.fromhex("000000030400000901")


def login_request(passcode: str) -> bytes:
    """0x0008 built by hand: 00 00 00 03 | len | 00 | 00 08 | u16 len | passcode."""
    body = len(passcode).to_bytes(2, "big") + passcode.encode()
    return bytes.fromhex("00000003") + bytes([3 + len(body)]) + b"\x00\x00\x08" + body


@dataclass
class RawClient:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    deframer: EnvelopeDeframer = field(default_factory=EnvelopeDeframer)
    pending: list[Envelope] = field(default_factory=list)

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> RawClient:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_exactly(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), TIMEOUT_S)

    async def expect(self, data: bytes) -> None:
        """The next bytes on the wire are exactly ``data``."""
        assert not self.pending and not self.deframer.pending_bytes, "bytes already taken by recv()"
        got = await self.read_exactly(len(data))
        assert got.hex() == data.hex()

    async def recv(self) -> Envelope:
        """The next envelope (any deframer error fails the test)."""
        async with asyncio.timeout(TIMEOUT_S):
            while not self.pending:
                data = await self.reader.read(65536)
                assert data, "the device closed the connection"
                for item in self.deframer.feed(data):
                    assert not isinstance(item, CodecError), item
                    self.pending.append(item)
        return self.pending.pop(0)

    async def hung_up(self, timeout: float = TIMEOUT_S) -> bytes:
        """Wait for EOF; return whatever arrived before it."""
        got = b""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    data = await self.reader.read(65536)
                except ConnectionResetError:
                    return got
                if not data:
                    return got
                got += data

    async def login(self, passcode: str) -> None:
        self.send(login_request(passcode))
        await self.expect(LOGIN_OK)

    async def still_served(self) -> None:
        """A heartbeat is answered, i.e. the connection is up and logged in; nothing else arrived before."""
        self.send(HEARTBEAT)
        await self.expect(HEARTBEAT_REPLY)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class UdpPeer(asyncio.DatagramProtocol):
    """A loopback UDP socket that collects datagrams."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport on every Python version.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    @classmethod
    async def open(cls) -> UdpPeer:
        _, peer = await asyncio.get_running_loop().create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        return peer

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def recv(self, timeout: float = TIMEOUT_S) -> bytes:
        data, _ = await asyncio.wait_for(self.queue.get(), timeout)
        return data

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
