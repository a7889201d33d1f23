"""``gizdev demo`` as a user runs it: start it, run the curl lines it prints, see the board change, Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.cloud.broker_fixtures import free_port, pid_alive
from tests.cloud.server_fixtures import world_searchable_dir
from tests.conftest import REPO_ROOT


def _lines(stream: IO[str], sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line.rstrip("\n"))


@pytest.fixture(name="curl")
def curl_fixture() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is needed to run the demo's printed commands (tools/test installs it)")
    return path


@pytest.fixture(name="demo")
def demo_fixture() -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    http, mqtt = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gizdev", "demo", "--http", f"127.0.0.1:{http}", "--mqtt", f"127.0.0.1:{mqtt}"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None
    errors: queue.Queue[str] = queue.Queue()
    readers = [
        threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=_lines, args=(proc.stderr, errors), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for reader in readers:
            reader.join(10)
        proc.stdout.close()
        proc.stderr.close()


def read_until(out: queue.Queue[str], predicate: object, timeout_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = out.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if callable(predicate) and predicate(line):
            return seen
    raise AssertionError(f"timed out; output so far: {seen}")


def test_demo_prints_working_curl_lines_and_stops_cleanly(
    demo: tuple[subprocess.Popen[str], queue.Queue[str]], curl: str
) -> None:
    proc, out = demo
    seen = read_until(out, lambda line: line.startswith("Live reports"), 60)
    commands = [line.strip() for line in seen if line.strip().startswith("curl ")]
    assert len(commands) == 2
    control, latest = commands
    assert "/app/control/" in control and "/app/devdata/" in latest

    # The printed lines are run as a user would paste them into a shell.
    result = subprocess.run(["sh", "-c", control], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == {}
    # The write reaches the virtual board, whose report comes back through the bridge and shows on the console.
    read_until(out, lambda line: "report:" in line and "LED_OnOff=true" in line and 'LED_Color="Pink"' in line, 20)
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run(["sh", "-c", latest], capture_output=True, text=True, timeout=30, check=True)
        body = json.loads(result.stdout)
        if body["attr"].get("LED_OnOff") is True or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert body["attr"]["LED_OnOff"] is True
    assert body["attr"]["LED_Color"] == "Pink"
    assert body["attr"]["Motor_Speed"] == 3
    assert abs(body["updated_at"] - time.time()) < 30

    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0


# -- stopping: nothing outlives the demo ------------------------------------------------------------------------


def processes_under(directory: Path) -> list[int]:
    """Live processes with a command-line argument inside ``directory`` (the demo's mosquitto names its config)."""
    prefix = os.fsencode(directory) + b"/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(prefix) for arg in args) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class DemoRun:
    """One ``gizdev demo`` on free loopback ports, with TMPDIR of its own (so that its temp dir can be watched)."""

    def __init__(
        self, tmpdir: Path, *, http: int | None = None, mqtt: int | None = None, keep_reading: bool = True
    ) -> None:
        tmpdir.mkdir(mode=0o711)
        self.tmpdir = tmpdir
        self.http, self.mqtt = http or free_port(), mqtt or free_port()
        self.err_path = tmpdir.with_suffix(".err")
        self.lines: queue.Queue[str] = queue.Queue()
        self.live = threading.Event()
        self.keep_reading = keep_reading  # False: stop reading after the banner, so that the test can close the pipe
        with self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [*DEMO, "--http", f"127.0.0.1:{self.http}", "--mqtt", f"127.0.0.1:{self.mqtt}"],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir)},
            )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
            if line.startswith("Live reports"):
                self.live.set()
                if not self.keep_reading:
                    return  # the test closes the pipe: a reader that went away

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_live(self) -> None:
        if not self.live.wait(90):
            raise AssertionError(f"the demo did not come up; exit {self.proc.poll()}, stderr:\n{self.stderr}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


DEMO = [sys.executable, "-m", "gizdev", "demo"]


@pytest.fixture(name="scratch")
def scratch_fixture() -> Iterator[Path]:
    base = world_searchable_dir()  # the demo's mosquitto drops to its own user, which must reach the temp dir
    try:
        yield base
    finally:
        for pid in processes_under(base):  # only if the test failed: do not leave the next run a taken port
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def test_signals_and_a_closed_pipe_stop_the_demo_leaving_nothing(scratch: Path) -> None:
    """SIGINT (Ctrl-C), SIGTERM (kill), SIGHUP (terminal closed) and a reader gone (`| tee`, tee killed first)."""
    cases: dict[str, signal.Signals | None] = {
        "SIGINT": signal.SIGINT,
        "SIGTERM": signal.SIGTERM,
        "SIGHUP": signal.SIGHUP,
        "pipe": None,
    }
    runs: dict[str, DemoRun] = {}
    try:
        for name, signum in cases.items():  # side by side: each demo takes seconds to come up
            runs[name] = DemoRun(scratch / name, keep_reading=signum is not None)
        for name, signum in cases.items():
            run = runs[name]
            run.wait_live()
            brokers = processes_under(run.tmpdir)
            [temp] = list(run.tmpdir.iterdir())
            assert temp.name.startswith("gizdev-demo-") and len(brokers) == 1, (brokers, run.stderr)
            if signum is not None:
                run.proc.send_signal(signum)
                expected = 0
            else:
                run.reader.join(10)
                assert run.proc.stdout is not None
                run.proc.stdout.close()  # the next report (the board's sensors drift every 5 s) finds no reader
                expected = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`
            assert run.proc.wait(60) == expected, f"{name}: {run.stderr}"
            # Gone at once, not eventually: the demo waits for its children before it exits.
            assert not any(pid_alive(pid) for pid in brokers), f"{name}: mosquitto {brokers} outlived the demo"
            assert processes_under(run.tmpdir) == []
            assert list(run.tmpdir.iterdir()) == [], f"{name}: the temp dir outlived the demo"
            assert "Traceback" not in run.stderr and "Error" not in run.stderr, f"{name}: {run.stderr}"
    finally:
        for run in runs.values():
            run.close()


def test_a_port_in_use_is_named_with_its_likely_cause(scratch: Path) -> None:
    with socket.socket() as taken_mqtt, socket.socket() as taken_http:
        for sock in (taken_mqtt, taken_http):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        mqtt_port, http_port = taken_mqtt.getsockname()[1], taken_http.getsockname()[1]
        runs = [DemoRun(scratch / "mqtt", mqtt=mqtt_port), DemoRun(scratch / "http", http=http_port)]
        try:
            for run, port, option in ((runs[0], mqtt_port, "--mqtt"), (runs[1], http_port, "--http")):
                assert run.proc.wait(60) == 1, run.stderr
                lines = run.stderr.splitlines()
                assert lines[0].startswith("gizdev demo: starting")
                # One line: the address, who probably has it, and what to do; no broker log, no traceback.
                assert lines[1:] == [
                    f"gizdev demo: 127.0.0.1:{port} is in use — another gizdev demo or gizdev cloud serve, or "
                    f"{'a mosquitto' if option == '--mqtt' else 'another web server'}, still running? "
                    f"Stop it, or choose another port with {option} HOST:PORT"
                ]
                assert processes_under(run.tmpdir) == [] and list(run.tmpdir.iterdir()) == []
        finally:
            for run in runs:
                run.close()
