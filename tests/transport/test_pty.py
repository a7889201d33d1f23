"""Pseudo-terminal pairs through FdTransport: raw bytes both ways, buffering, close and EIO/EOF semantics."""

from __future__ import annotations

import asyncio
import errno
import os
import select
import termios

import pytest

from gizdev.errors import TransportError
from gizdev.transport import FdTransport, connect_fd, open_port, open_pty_pair
from tests.transport.helpers import Recorder, run

# Every byte a cooked tty would eat or rewrite: CR, LF, ^C, ^D, ^S, ^Q, ^Z, DEL, backslash, 0xFF, NUL.
SPECIAL = b"\r\n\x03\x04\x13\x11\x1a\x7f\\\xff\x00\r\r\n"


def read_exactly(fd: int, count: int, timeout: float = 2.0) -> bytes:
    """Read `count` bytes from a non-blocking fd without an event loop (select waits for each piece)."""
    out = bytearray()
    while len(out) < count:
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable, f"only {len(out)} of {count} bytes within {timeout} s"
        out += os.read(fd, count - len(out))
    return bytes(out)


def test_pair_is_raw_and_non_blocking() -> None:
    with open_pty_pair() as pair:
        assert pair.slave_path.startswith("/dev/pts/")
        for fd in (pair.master_fd, pair.slave_fd):
            iflag, oflag, _cflag, lflag, _, _, cc = termios.tcgetattr(fd)
            assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
            assert not iflag & (termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON | termios.ISTRIP)
            assert not oflag & termios.OPOST
            assert cc[termios.VMIN] == 1
            assert not os.get_blocking(fd)
        os.write(pair.master_fd, SPECIAL)
        assert read_exactly(pair.slave_fd, len(SPECIAL)) == SPECIAL
        os.write(pair.slave_fd, SPECIAL)
        # No echo: the master reads back exactly what the slave wrote, not the bytes it sent itself.
        assert read_exactly(pair.master_fd, len(SPECIAL)) == SPECIAL
        with pytest.raises(BlockingIOError):
            os.read(pair.master_fd, 1)


def test_pair_close_is_idempotent_and_handoff_refuses_reuse() -> None:
    pair = open_pty_pair()
    master = pair.detach_master()
    with pytest.raises(ValueError, match="handed off"):
        pair.detach_master()
    pair.close()
    pair.close()
    os.close(master)  # ours now; the pair must not have closed it (EBADF here otherwise)


def test_master_and_slave_transports_exchange_bytes_both_ways() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder)
            assert master_proto.transport is master and slave_proto.transport is slave
            assert slave.get_extra_info("port") == pair.slave_path
            assert pair.slave_path in master.get_extra_info("port")
            master.write(SPECIAL)
            slave.write(SPECIAL[::-1])
            assert await slave_proto.wait_bytes(len(SPECIAL)) == SPECIAL
            assert await master_proto.wait_bytes(len(SPECIAL)) == SPECIAL[::-1]
            master.close()
            slave.close()
            assert await master_proto.wait_lost() is None
            assert await slave_proto.wait_lost() is None

    run(main())


def test_large_write_is_buffered_until_the_pty_takes_it() -> None:
    # Far more than a pty buffers (a few KiB), so the transport must hold the rest and wait for writability.
    payload = bytes(range(256)) * 1024

    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder)
            master.write(payload)
            assert master.get_write_buffer_size() > 0  # write() returned without blocking
            assert await slave_proto.wait_bytes(len(payload)) == payload
            assert master.get_write_buffer_size() == 0
            master.close()
            slave.close()
            assert await master_proto.wait_lost() is None
            assert await slave_proto.wait_lost() is None

    run(main())


def test_eio_on_master_only_after_every_slave_fd_is_closed() -> None:
    """Linux reports EIO/HUP on the master once the *last* slave fd closes, not the first."""

    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            # A second slave fd, opened by path the way the program under test would.
            slave, slave_proto = await open_port(pair.slave_path, Recorder)
            pair.close_slave()  # the first slave fd goes away...
            await asyncio.sleep(0.05)
            assert master_proto.lost_calls == []  # ...and the master does not notice
            slave.write(b"still here")
            assert await master_proto.wait_bytes(10) == b"still here"

            slave.close()  # the last slave fd
            exc = await master_proto.wait_lost()
            assert isinstance(exc, TransportError)
            assert pair.slave_path in str(exc)
            assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EIO
            assert master.is_closing()
            assert await slave_proto.wait_lost() is None

    run(main())


def test_master_close_surfaces_on_slave_as_transport_error() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder)
            master.close()
            assert await master_proto.wait_lost() is None
            exc = await slave_proto.wait_lost()
            assert isinstance(exc, TransportError)
            assert pair.slave_path in str(exc)
            assert slave.is_closing()

    run(main())


def test_close_flushes_pending_bytes_and_reports_none_once() -> None:
    # Slave to master: the master reads what is buffered before it sees EIO. (The other way round, a closing
    # master hangs the slave up and the kernel discards what the slave had not read yet; see gizdev.transport.pty.)
    payload = bytes(range(256)) * 200

    async def main() -> None:
        with open_pty_pair() as pair:
            _master, master_proto = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder)
            slave.write(payload)
            assert slave.get_write_buffer_size() > 0  # more than the pty takes at once: close() has to flush
            slave.close()
            assert slave.is_closing()
            slave.close()  # a second close changes nothing
            slave.write(b"dropped")  # after close: ignored, not an error
            assert await slave_proto.wait_lost() is None
            assert isinstance(await master_proto.wait_lost(), TransportError)
            assert bytes(master_proto.data) == payload

    run(main())


def test_abort_drops_pending_bytes() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder)
            master.pause_reading()  # the pty fills up, so most of the payload stays in the transport
            slave.write(b"x" * 200_000)
            slave.abort()
            assert await slave_proto.wait_lost() is None
            master.resume_reading()
            assert isinstance(await master_proto.wait_lost(), TransportError)
            assert 0 < len(master_proto.data) < 200_000

    run(main())


def test_pause_reading_holds_data_until_resumed() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            master, _ = await pair.connect_master(Recorder)
            slave, slave_proto = await pair.connect_slave(Recorder)
            slave.pause_reading()
            assert not slave.is_reading()
            master.write(b"held")
            await asyncio.sleep(0.05)
            assert slave_proto.data == b""
            slave.resume_reading()
            assert slave.is_reading()
            assert await slave_proto.wait_bytes(4) == b"held"
            master.close()
            slave.close()
            await slave_proto.wait_lost()

    run(main())


def test_connect_fd_takes_ownership_even_when_the_factory_fails() -> None:
    def broken_factory() -> Recorder:
        raise RuntimeError("factory failed")

    async def main() -> None:
        pair = open_pty_pair()
        try:
            with pytest.raises(RuntimeError, match="factory failed"):
                await connect_fd(pair.detach_master(), broken_factory)
        finally:
            pair.close()

    run(main())  # the fd-leak fixture fails the test if the detached master fd stayed open


def test_fd_transport_is_an_asyncio_transport() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            master, proto = await pair.connect_master(Recorder)
            assert isinstance(master, asyncio.Transport) and isinstance(master, FdTransport)
            assert master.get_protocol() is proto
            assert master.get_extra_info("nothing", "default") == "default"
            assert not master.can_write_eof()
            master.close()
            assert await proto.wait_lost() is None

    run(main())
