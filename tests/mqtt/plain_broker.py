"""A plain Mosquitto as a home-automation user runs one: anonymous, one loopback listener on a free port."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud.broker_fixtures import free_port, wait_until
from tests.processes import stop

__all__ = ["PlainBroker", "plain_broker_fixture"]


@dataclass
class PlainBroker:
    port: int
    process: subprocess.Popen[bytes]
    config: Path

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def start(self, binary: str) -> None:
        """(Re)start on the same port (after :meth:`kill`)."""
        self.process = _spawn(binary, self.config, self.port)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _spawn(binary: str, config: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: _listening(port), what=f"mosquitto listening on 127.0.0.1:{port}")
    return process


@pytest.fixture(name="plain_broker")
def plain_broker_fixture(mosquitto_binary: str) -> Iterator[PlainBroker]:
    with tempfile.TemporaryDirectory(prefix="gizdev-plain-broker-") as directory:
        port = free_port()
        config = Path(directory) / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = PlainBroker(port, _spawn(mosquitto_binary, config, port), config)
        try:
            yield broker
        finally:
            stop(broker.process)
