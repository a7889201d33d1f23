"""``gizdev demo`` as a user runs it: start it, run the curl lines it prints, see the board change, Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import pytest

from tests.cloud.broker_fixtures import free_port
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
