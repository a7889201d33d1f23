"""``gizdev check-board`` as a user runs it: against ``gizdev sim`` on a pty, in separate processes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gizdev.board.check import CHECK_NAMES
from gizdev.cli.main import main
from tests.cli.test_sim_cli import GIZDEV, GOKIT, start_sim
from tests.conftest import REPO_ROOT

__all__ = ["start_sim"]  # the fixture, imported so that pytest finds it here

OTHER_KEY = "fedcba9876543210fedcba9876543210"


def check_board(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GIZDEV, "check-board", "--port", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


def test_a_sim_passes_with_a_table_progress_and_a_json_report(start_sim: Any, tmp_path: Path) -> None:
    sim = start_sim("--set", "LED_Color=Pink", "--set", "Motor_Speed=3")
    report_path = tmp_path / "report.json"
    result = check_board(sim.port, "--product", GOKIT, "--json", str(report_path), "--observe", "0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.splitlines()
    assert table[0].split() == ["check", "result", "detail"]
    rows = {line.split()[0]: line.split()[1] for line in table[1 : 1 + len(CHECK_NAMES)]}
    assert rows == dict.fromkeys(CHECK_NAMES, "PASS")
    assert f"{len(CHECK_NAMES)} checks: {len(CHECK_NAMES)} passed, 0 failed" in result.stdout
    # Progress on stderr, one line per check.
    progress = [line for line in result.stderr.splitlines() if line.startswith("check ")]
    assert progress[0] == f"check 1/{len(CHECK_NAMES)} device-info"
    assert progress[-1] == f"check {len(CHECK_NAMES)}/{len(CHECK_NAMES)} report-rate"
    report = json.loads(report_path.read_text())
    assert report["ok"] is True and report["port"] == sim.port and report["product"] == "GoKit"
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert report["counts"] == {"pass": len(CHECK_NAMES), "warn": 0, "fail": 0, "skip": 0}
    # The board was left as found: every write was followed by one back to the old value.
    status = sim.command("get")["attrs"]
    assert status["LED_Color"] == "Pink" and status["Motor_Speed"] == 3


def test_a_wrong_product_key_fails_with_evidence(start_sim: Any, tmp_path: Path) -> None:
    schema = json.loads(Path(GOKIT).read_text())
    schema["product_key"] = OTHER_KEY
    other = tmp_path / "other.json"
    other.write_text(json.dumps(schema))
    sim = start_sim(product=str(other))
    result = check_board(sim.port, "--product", GOKIT, "--only", "device-info", "--only", "heartbeat", "--json", "-")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    device_info, heartbeat = report["checks"]
    assert device_info["status"] == "fail" and OTHER_KEY in device_info["summary"]
    assert heartbeat["status"] == "pass"
    # What was received, as hex (the key in ASCII inside the frame) and decoded.
    (received,) = [e for e in device_info["evidence"] if e["direction"] == "received"]
    assert OTHER_KEY.encode().hex() in received["hex"]
    assert received["decoded"]["product_key"] == OTHER_KEY and received["decoded"]["cmd"] == 2

    text = check_board(sim.port, "--product", GOKIT, "--only", "device-info")
    assert text.returncode == 1
    assert any(line.split()[:2] == ["device-info", "FAIL"] for line in text.stdout.splitlines())
    assert "FAIL device-info" in text.stdout and OTHER_KEY.encode().hex() in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "nope"], "unknown check nope"),
        (["--observe", "-1"], "cannot be negative"),
    ],
)
def test_bad_options_exit_with_a_message(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(["check-board", "--port", "/dev/null", "--product", GOKIT, *args])
    except SystemExit as exc:  # argparse refuses bad values itself
        status = int(exc.code or 0)
    assert status != 0
    assert message in capsys.readouterr().err


def test_a_port_that_cannot_be_opened(tmp_path: Path) -> None:
    result = check_board(str(tmp_path / "ttyNOPE"), "--product", GOKIT)
    assert result.returncode == 1 and "ttyNOPE" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check-board", "--help"])
    out = capsys.readouterr().out
    for name in CHECK_NAMES:
        assert f"  {name} " in out
    for option in ("--port", "--product", "--baud", "--json", "--quick", "--only", "--observe"):
        assert option in out
