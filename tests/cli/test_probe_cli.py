"""``gizdev probe`` against ``gizdev sim`` (pty and TCP), and its failures (the library: tests/board/test_probe.py)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from tests.cli.test_sim_cli import GOKIT, probe, probe_status, start_sim

__all__ = ["start_sim"]  # the fixture, imported so that pytest finds it here

GOKIT_KEY = "0123456789abcdef0123456789abcdef"
OTHER_KEY = "fedcba9876543210fedcba9876543210"


def test_probe_over_a_pty(start_sim: Any) -> None:
    sim = start_sim("--set", "LED_Color=Pink", "--set", "Temperature=25", "--set", "LED_OnOff=true")
    result = probe(sim.port, "--product", GOKIT, "--json")
    assert result.returncode == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["port"] == sim.port
    assert obj["device_info"]["product_key"] == GOKIT_KEY
    assert obj["device_info"]["protocol_version"] == "00000004" and obj["device_info"]["is_gateway"] is False
    assert obj["status"]["LED_Color"] == "Pink" and obj["status"]["Temperature"] == 25
    assert obj["status"]["LED_OnOff"] is True and obj["status"]["LED_R"] == 0
    assert len(obj["status"]) == 15

    # The readable summary, from a second module session on the same pty.
    text = probe(sim.port, "--product", GOKIT)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert f"product key       {GOKIT_KEY} (GoKit)" in lines
    assert "binding timeout   always bindable (0)" in lines and "gateway           no" in lines
    assert any(line.split()[:3] == ["LED_Color", "Pink", "writable"] for line in lines)
    assert any(line.split()[:3] == ["Temperature", "25", "read-only"] for line in lines)


def test_probe_over_tcp(start_sim: Any) -> None:
    sim = start_sim(
        "--listen", "socket://127.0.0.1:0", "--set", "Motor_Speed=3", "--set", "Alert_2=true",
        "--garbage", "0.5", "--delay", "0.01", "--seed", "4",
    )  # fmt: skip
    assert sim.port.startswith("socket://127.0.0.1:") and not sim.port.endswith(":0")
    plan = sim.command("fault")["faults"]
    assert plan["garbage"] == 0.5 and plan["delay_s"] == 0.01 and plan["seed"] == 4
    status = probe_status(sim.port)  # through the garbage before the sim's frames
    assert status["Motor_Speed"] == 3 and status["Alert_2"] is True
    # A new connection is a new link: a value changed in between is seen.
    assert sim.command("set Motor_Speed -2")["ok"]
    assert probe_status(sim.port)["Motor_Speed"] == -2


def test_product_key_mismatch(start_sim: Any, tmp_path: Path) -> None:
    schema = json.loads(Path(GOKIT).read_text())
    schema["product_key"] = OTHER_KEY
    other = tmp_path / "other.json"
    other.write_text(json.dumps(schema))
    sim = start_sim(product=str(other))
    result = probe(sim.port, "--product", GOKIT)
    assert result.returncode == 1 and result.stdout == ""
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("gizdev probe:") and OTHER_KEY in message and GOKIT_KEY in message


def test_probe_of_a_silent_sim_gives_up_within_10_s(start_sim: Any) -> None:
    sim = start_sim("--silent")
    start = time.monotonic()
    result = probe(sim.port, "--product", GOKIT, timeout=20)
    took = time.monotonic() - start
    assert result.returncode == 1 and took < 10
    message = result.stderr.strip().splitlines()[-1]
    assert f"no answer from {sim.port}" in message and "after 10 attempts" in message
    # The sim's own counters show that the module did ask (10 requests, 3 transmissions each).
    assert sim.command("stats")["link"]["frames_in"] == 30


def test_probe_of_a_port_that_cannot_be_opened(tmp_path: Path) -> None:
    missing = probe(str(tmp_path / "ttyNOPE"), "--product", GOKIT)
    assert missing.returncode == 1 and "ttyNOPE" in missing.stderr and "cannot open" in missing.stderr
    assert "Traceback" not in missing.stderr
    with socket.socket() as unused:  # a port nobody listens on: bound, never listening
        unused.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{unused.getsockname()[1]}"
        refused = probe(url, "--product", GOKIT)
    assert refused.returncode == 1 and "cannot connect" in refused.stderr and "Traceback" not in refused.stderr
    bad_url = probe("tcp://127.0.0.1:1", "--product", GOKIT)
    assert bad_url.returncode == 1 and "unknown URL scheme" in bad_url.stderr
