"""Serial ports opened with pyserial: a pty slave stands in for the device; error cases become TransportError."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from gizdev.errors import TransportError
from gizdev.transport import FdTransport, connect_serial, open_port, open_pty_pair
from tests.transport.helpers import Recorder, run

pytest.importorskip("serial")


def test_pty_slave_path_opens_through_pyserial_with_the_given_settings() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            master, master_proto = await pair.connect_master(Recorder)
            port, proto = await open_port(pair.slave_path, Recorder, baudrate=115200, parity="E", stopbits=2)
            assert isinstance(port, FdTransport)
            serial_port = port.get_extra_info("serial")
            assert (serial_port.baudrate, serial_port.parity, serial_port.stopbits) == (115200, "E", 2)
            assert port.get_extra_info("port") == pair.slave_path
            master.write(b"\xff\xff\x00\x05\r\n")
            port.write(b"\x0d\x0a\x03\xff")
            assert await proto.wait_bytes(6) == b"\xff\xff\x00\x05\r\n"
            assert await master_proto.wait_bytes(4) == b"\x0d\x0a\x03\xff"
            port.close()
            master.close()
            assert await proto.wait_lost() is None
            assert await master_proto.wait_lost() is None
            assert not serial_port.is_open  # the transport closed the Serial it owned

    run(main())


def test_hang_up_of_the_device_is_a_transport_error() -> None:
    """What an unplugged USB adapter looks like from user space: the tty is hung up, reads return EOF."""

    async def main() -> None:
        with open_pty_pair() as pair:
            pair.close_slave()
            master, _ = await pair.connect_master(Recorder)
            port, proto = await connect_serial(pair.slave_path, Recorder)
            master.abort()
            exc = await proto.wait_lost()
            assert isinstance(exc, TransportError)
            assert pair.slave_path in str(exc)
            assert port.is_closing()
            assert not port.get_extra_info("serial").is_open

    run(main())


def test_nonexistent_device_is_a_transport_error_naming_the_path() -> None:
    async def main() -> None:
        with pytest.raises(TransportError, match=r"/dev/ttyGIZDEV_NOPE.*no such device") as info:
            await open_port("/dev/ttyGIZDEV_NOPE", Recorder)
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENOENT

    run(main())


def test_a_port_in_use_is_reported_busy() -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            port, proto = await open_port(pair.slave_path, Recorder)
            with pytest.raises(TransportError, match=f"{pair.slave_path}.*busy"):
                await open_port(pair.slave_path, Recorder)
            port.close()
            assert await proto.wait_lost() is None

    run(main())


def test_a_file_that_is_not_a_tty_is_refused(tmp_path: Path) -> None:
    not_a_tty = tmp_path / "plain-file"
    not_a_tty.write_bytes(b"")

    async def main() -> None:
        with pytest.raises(TransportError, match=str(not_a_tty)):
            await open_port(str(not_a_tty), Recorder)

    run(main())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"parity": "X"}, "parity"),
        ({"bytesize": 9}, "data bits"),
        ({"stopbits": 3}, "stop bits"),
    ],
)
def test_bad_settings_are_refused_before_opening(settings: dict[str, object], message: str) -> None:
    async def main() -> None:
        with open_pty_pair() as pair:
            with pytest.raises(TransportError, match=message):
                await open_port(pair.slave_path, Recorder, **settings)  # type: ignore[arg-type]
            # Nothing was opened: the same port still opens.
            port, proto = await open_port(pair.slave_path, Recorder)
            port.close()
            await proto.wait_lost()

    run(main())


def test_importing_the_transport_package_does_not_import_pyserial() -> None:
    script = "import sys, gizdev.transport; print('serial' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
