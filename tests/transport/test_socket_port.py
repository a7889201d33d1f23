"""socket://host:port against a real asyncio server on 127.0.0.1, and the URL rules of open_port."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gizdev.errors import TransportError
from gizdev.transport import SocketTransport, open_port, parse_socket_url
from tests.transport.helpers import Recorder, run


class Server:
    """A ser2net stand-in: records what it receives and keeps the connections for the test to poke."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.connected = asyncio.Event()
        self.eof = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append((reader, writer))
        self.connected.set()
        try:
            while data := await reader.read(65536):
                self.received += data
        except ConnectionError:
            pass
        self.eof.set()

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self.connections[0][1]


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[Server, str]]:
    server = Server()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"socket://127.0.0.1:{port}"
    finally:
        for _, writer in server.connections:
            writer.close()
        listener.close()
        await listener.wait_closed()
        for _, writer in server.connections:
            await writer.wait_closed()
        # The handlers end on EOF; let them finish so that no task outlives the test.
        await asyncio.sleep(0.01)


def test_bytes_flow_both_ways_and_local_close_reports_none() -> None:
    async def main() -> None:
        async with serving() as (server, url):
            transport, proto = await open_port(url, Recorder)
            assert isinstance(transport, SocketTransport)
            assert transport.get_extra_info("port") == url
            assert transport.get_extra_info("peername")[0] == "127.0.0.1"
            await server.connected.wait()
            transport.write(b"\xff\xff\x00\x05\x01")
            server.writer.write(b"\r\n\x00\xff")
            assert await proto.wait_bytes(4) == b"\r\n\x00\xff"
            transport.close()
            assert transport.is_closing()
            transport.write(b"ignored")
            assert await proto.wait_lost() is None
            await server.eof.wait()
            assert server.received == b"\xff\xff\x00\x05\x01"

    run(main())


def test_server_closing_is_a_transport_error() -> None:
    async def main() -> None:
        async with serving() as (server, url):
            transport, proto = await open_port(url, Recorder)
            await server.connected.wait()
            server.writer.write(b"last words")
            server.writer.close()
            exc = await proto.wait_lost()
            assert isinstance(exc, TransportError)
            assert url in str(exc) and "peer closed" in str(exc)
            assert proto.data == b"last words"  # data before the close still arrives
            assert transport.is_closing()

    run(main())


def test_connection_reset_is_a_transport_error_wrapping_the_os_error() -> None:
    async def main() -> None:
        async with serving() as (server, url):
            _, proto = await open_port(url, Recorder)
            await server.connected.wait()
            # SO_LINGER with a zero timeout turns close() into a TCP reset.
            sock = server.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            server.writer.transport.abort()
            exc = await proto.wait_lost()
            assert isinstance(exc, TransportError)
            assert isinstance(exc.__cause__, ConnectionResetError)
            assert url in str(exc)

    run(main())


def test_abort_drops_throttled_bytes_and_reports_none() -> None:
    async def main() -> None:
        async with serving() as (server, url):
            transport, proto = await open_port(url, Recorder, throttle_baud=9600)
            transport.write(b"z" * 5000)  # about 5 s at 9600 baud
            assert transport.get_write_buffer_size() > 4000
            transport.abort()
            assert await proto.wait_lost() is None
            await server.eof.wait()
            assert 0 < len(server.received) < 100

    run(main())


def test_connection_refused_is_a_transport_error() -> None:
    async def main() -> None:
        # A port that was free a moment ago: bound, then closed without listening.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"socket://127.0.0.1:{port}"
        with pytest.raises(TransportError, match="refused") as info:
            await open_port(url, Recorder)
        assert url in str(info.value)
        assert isinstance(info.value.__cause__, ConnectionRefusedError)

    run(main())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socket://127.0.0.1", "no port"),
        ("socket://127.0.0.1:", "no port"),
        ("socket://127.0.0.1:http", "bad port"),
        ("socket://127.0.0.1:70000", "bad port"),
        ("socket://127.0.0.1:0", "bad port"),
        ("socket://:4000", "no host"),
        ("socket://127.0.0.1:4000/ttyS0", "nothing more"),
        ("socket://127.0.0.1:4000?logging=debug", "nothing more"),
        ("rfc2217://127.0.0.1:4000", "unknown URL scheme 'rfc2217'"),
        ("", "empty"),
    ],
)
def test_bad_urls_are_transport_errors(url: str, message: str) -> None:
    async def main() -> None:
        with pytest.raises(TransportError, match=message) as info:
            await open_port(url, Recorder)
        if url:
            assert url in str(info.value)

    run(main())


def test_parse_socket_url_accepts_names_and_ipv6() -> None:
    assert parse_socket_url("socket://localhost:2000") == ("localhost", 2000)
    assert parse_socket_url("socket://[::1]:2000") == ("::1", 2000)
    assert parse_socket_url("SOCKET://127.0.0.1:65535") == ("127.0.0.1", 65535)
