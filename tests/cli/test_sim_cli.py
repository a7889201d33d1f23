"""``gizdev sim``: its announcement line, stdin commands, the JSON control API, signals (in process: tests/sim/)."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from gizdev.cli.main import main
from gizdev.sim.control import MAX_LINE_BYTES
from tests.conftest import REPO_ROOT, product_path

GOKIT = str(product_path("gokit"))
GIZDEV = [sys.executable, "-m", "gizdev.cli.main"]


class Sim:
    """A ``gizdev sim`` subprocess: its announcement, its stdout lines, its stdin commands, its stderr."""

    def __init__(self, args: list[str], err_path: Path, *, stdin: int = subprocess.PIPE, product: str = GOKIT) -> None:
        self.err_path = err_path
        self._err: IO[str] = err_path.open("w")
        self.proc = subprocess.Popen(
            [*GIZDEV, "-v", "sim", "--product", product, *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            cwd=REPO_ROOT,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stopped = False
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        first = self.next_line(15)
        self.info: dict[str, Any] = json.loads(first)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_line(self, timeout: float = 5) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stdout line from the sim within {timeout} s; stderr:\n{self.stderr}") from None
        assert line is not None, f"the sim ended; stderr:\n{self.stderr}"
        return line

    def command(self, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.next_line())
        return answer

    @property
    def port(self) -> str:
        return str(self.info.get("pty") or self.info["listen"])

    @property
    def control(self) -> tuple[str, int]:
        host, _, port = self.info["control"].rpartition(":")
        return host, int(port)

    @property
    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.err_path.read_text()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 3) -> tuple[int, float]:
        """Signal the sim; its exit status and how long it took to exit."""
        start = time.monotonic()
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            status = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self._err.close()
        return status, time.monotonic() - start


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Any]:
    """Starts sims; each one still running at the end must stop on SIGTERM, with status 0 and no traceback."""
    sims: list[Sim] = []

    def start(*args: str, stdin: int = subprocess.PIPE, product: str = GOKIT) -> Sim:
        sim = Sim(list(args), tmp_path / f"sim{len(sims)}.err", stdin=stdin, product=product)
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        if not sim.stopped:
            status, _ = sim.stop()
            assert status == 0, sim.stderr
            assert "Traceback" not in sim.stderr, sim.stderr


def probe(port: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GIZDEV, "probe", "--port", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


def probe_status(port: str, product: str = GOKIT) -> dict[str, Any]:
    result = probe(port, "--product", product, "--json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)["status"]
    return status


class Control:
    """A client of the JSON control API."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.file = self.sock.makefile("rb")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"connection closed: {line!r}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.send_raw(json.dumps(obj).encode() + b"\n")
        return self.answer()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# ---- the sim as a subprocess -------------------------------------------------------------------------------------


def test_stdin_commands_drive_the_sim(start_sim: Any) -> None:
    sim = start_sim("--set", "LED_Color=Pink", "--set", "Temperature=25")
    assert set(sim.info) == {"pty", "control"} and sim.info["pty"].startswith("/dev/pts/")

    answer = sim.command("get")
    assert answer["ok"] and answer["attrs"]["LED_Color"] == "Pink" and answer["attrs"]["Temperature"] == 25

    # Values: JSON when they parse, else text; an enum index comes back as its label.
    assert sim.command("set LED_R 200") == {"ok": True, "attrs": {"LED_R": 200}}
    assert sim.command("set LED_Color 1") == {"ok": True, "attrs": {"LED_Color": "Yellow"}}
    assert sim.command("set Infrared true")["attrs"] == {"Infrared": True}

    bad = sim.command("set LED_R 999")
    assert bad["ok"] is False and "LED_R" in bad["error"]
    assert sim.command("set Nope 1")["ok"] is False
    unknown = sim.command("frobnicate now")
    assert unknown["ok"] is False and "frobnicate" in unknown["error"]
    oversized = sim.command("set LED_R " + "1" * (MAX_LINE_BYTES + 10))
    assert oversized["ok"] is False and "longer than" in oversized["error"]
    assert sim.command('{"cmd": "get"}')["attrs"]["LED_R"] == 200  # a JSON line is a control request

    assert sim.command("fault drop_acks 0.25")["faults"]["drop_acks"] == 0.25
    assert sim.command("fault bogus 1")["ok"] is False
    assert sim.command("fault corrupt_bytes 2")["ok"] is False
    assert sim.command("fault clear")["faults"] == {
        "drop_acks": 0.0,
        "corrupt_bytes": 0.0,
        "delay_s": 0.0,
        "silent": False,
        "garbage": 0.0,
        "seed": None,
        "product_key": None,
        "ack_delay_s": 0.0,
        "bad_checksum_every": 0,
        "no_report_after_write": False,
        "no_stuffing": False,
        "wrong_ack_sn": False,
        "no_resend": False,
        "ignore_illegal": False,
    }
    assert "set NAME VALUE" in sim.command("help")["commands"]

    # A module opening the pty sees the new values.
    status = probe_status(sim.port)
    assert status["LED_R"] == 200 and status["LED_Color"] == "Yellow" and status["Temperature"] == 25
    stats = sim.command("stats")
    assert stats["ok"] and stats["connected"] is True and stats["restarts"] == 0
    assert stats["link"]["frames_in"] >= 2  # device info request, read request
    assert sim.command("reset") == {"ok": True, "restarts": 1}

    assert sim.command("quit") == {"ok": True, "quit": True}
    # quit stops the sim by itself: wait for that (a SIGTERM racing its shutdown would be a different test).
    assert sim.proc.wait(10) == 0
    status_code, _ = sim.stop()
    assert status_code == 0
    assert "Traceback" not in sim.stderr


def test_a_module_reopening_the_pty_sees_fresh_values(start_sim: Any) -> None:
    sim = start_sim()
    assert probe_status(sim.port)["LED_R"] == 0
    assert sim.command("set LED_R 55")["ok"]  # reported at once, so a read shows it (a read-only number: 6 s later)
    assert probe_status(sim.port)["LED_R"] == 55


def test_control_api_over_tcp(start_sim: Any) -> None:
    sim = start_sim("--listen", "socket://127.0.0.1:0", stdin=subprocess.DEVNULL)
    assert set(sim.info) == {"listen", "control"}
    host, port = sim.control
    assert host == "127.0.0.1" and port > 0
    client = Control((host, port))
    try:
        assert client.request({"cmd": "set", "attrs": {"LED_B": 77, "LED_OnOff": True}, "id": 7}) == {
            "ok": True,
            "attrs": {"LED_B": 77, "LED_OnOff": True},
            "id": 7,
        }
        assert client.request({"cmd": "get"})["attrs"]["LED_B"] == 77
        wrong = client.request({"cmd": "set", "attrs": {"LED_B": "many"}})
        assert wrong["ok"] is False and "LED_B" in wrong["error"]
        assert client.request({"cmd": "launch"})["ok"] is False
        assert "extra" in client.request({"cmd": "get", "extra": 1})["error"]

        # Malformed JSON and an oversized line are answered, and the connection goes on.
        client.send_raw(b'{"cmd": "get"\n')
        malformed = client.answer()
        assert malformed["ok"] is False and "malformed JSON" in malformed["error"]
        client.send_raw(b"[" * (MAX_LINE_BYTES + 5000) + b"\n" + b'{"cmd": "stats"}\n')
        oversized = client.answer()
        assert oversized["ok"] is False and "longer than" in oversized["error"]
        assert client.answer()["ok"] is True  # exactly one error for the long line, then the next request
        deep = client.request({"cmd": "set", "attrs": {"LED_B": [[[[1]]]]}})
        assert deep["ok"] is False

        # Faults take effect: a silent sim does not answer a module, a cleared one does.
        silent = client.request({"cmd": "fault", "plan": {"silent": True, "seed": 3}})
        assert silent["faults"]["silent"] is True and silent["faults"]["seed"] == 3
        result = probe(sim.port, "--product", GOKIT, "--attempts", "1")
        assert result.returncode == 1 and "no answer" in result.stderr
        assert client.request({"cmd": "fault", "clear": True})["faults"]["silent"] is False

        status = probe_status(sim.port)  # stdin is /dev/null: its end did not stop the sim
        assert status["LED_B"] == 77 and status["LED_OnOff"] is True
        stats = client.request({"cmd": "stats"})
        assert stats["ok"] and stats["link"]["frames_in"] >= 2

        # A second client is served at the same time.
        other = Control((host, port))
        try:
            assert other.request({"cmd": "get"})["attrs"]["LED_B"] == 77
        finally:
            other.close()
    finally:
        client.close()


def test_sigint_stops_the_sim_and_control_none(start_sim: Any) -> None:
    sim = start_sim("--control", "none", "--listen", "socket://127.0.0.1:0")
    assert sim.info["control"] is None
    status, took = sim.stop(signal.SIGINT)
    assert status == 0 and took < 2
    assert "Traceback" not in sim.stderr and "SIGINT" in sim.stderr


def test_sigterm_stops_the_sim_while_a_module_is_connected(start_sim: Any) -> None:
    sim = start_sim("--listen", "socket://127.0.0.1:0")
    host, port = sim.info["listen"].removeprefix("socket://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as module:
        module.sendall(bytes.fromhex("ffff0005010000000006"))  # device info request, sn 0
        module.settimeout(5)
        assert module.recv(4)[:2] == b"\xff\xff"
        status, took = sim.stop()
    assert status == 0 and took < 2
    assert "Traceback" not in sim.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "socket://0.0.0.0:0"],
        ["--control", "0.0.0.0:0"],
    ],
)
def test_non_loopback_addresses_need_allow_remote(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--product", GOKIT, *args]) == 1
    err = capsys.readouterr().err
    assert "0.0.0.0" in err and "--allow-remote" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "LED_R=300"], "LED_R"),
        (["--set", "LED_R"], "NAME=VALUE"),
        (["--listen", "tcp://127.0.0.1:1"], "socket://HOST:PORT"),
        (["--control", "nowhere"], "HOST:PORT"),
    ],
)
def test_bad_options_exit_1(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--product", GOKIT, *args]) == 1
    assert message in capsys.readouterr().err


def test_bad_probability_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sim", "--product", GOKIT, "--drop-acks", "1.5"])
    assert "0..1" in capsys.readouterr().err


def test_an_endless_stdin_does_not_stop_the_sim_from_serving_or_stopping() -> None:
    """stdin from /dev/zero (cannot be polled, never ends): the sim still starts, and SIGTERM still stops it."""
    with open("/dev/zero", "rb") as zero:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gizdev", "sim", "--product", str(product_path("gokit"))],
            cwd=REPO_ROOT,
            stdin=zero,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # it got as far as announcing its pty
        assert first["pty"].startswith("/dev/")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
