"""tools/load_cloud.py, small: it starts a real cloud, drives real devices, and reports the issue's JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "load_cloud.py"
SMALL_RUN = ("--devices", "20", "--report-interval", "1", "--control-rate", "10", "--duration", "4", "--json")
KEYS = {"devices_connected", "reports_per_s", "control_p50_ms", "control_p99_ms", "errors", "cpu_percent", "rss_mib"}


def test_a_short_run_connects_every_device_and_measures_controls() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), *SMALL_RUN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result.keys() >= KEYS
    assert result["devices_connected"] == 20
    assert result["errors"] == 0, result["error_samples"]
    # 20 devices, one report a second each: the cloud's own counter saw about that many stored per second.
    assert 12 <= result["reports_per_s"] <= 28
    assert result["controls"] >= 25  # 10/s for 4 s, each matched to its frame at the device
    assert 0 < result["control_p50_ms"] <= result["control_p99_ms"] < 5000
    assert result["cpu_percent"] > 0 and result["rss_mib"] > 10


def test_bad_arguments_are_refused_with_a_reason() -> None:
    for args, reason in (
        (["--workers", "2"], "needs --database postgresql"),
        (["--devices", "0"], "must be more than 0"),
        (["--duration", "99999"], "at most 3600"),
        (["--control-rate", "-1"], "between 0 and 1000"),
    ):
        done = subprocess.run(
            [sys.executable, str(TOOL), *args], check=False, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and reason in done.stderr, (args, done.stderr)
