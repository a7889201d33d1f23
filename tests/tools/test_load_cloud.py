"""tools/load_cloud.py, small: it starts a real cloud, drives real devices, and reports the issue's JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "load_cloud.py"
SMALL_RUN = ("--devices", "20", "--report-interval", "1", "--control-rate", "10", "--duration", "4", "--json")
KEYS = {"devices_connected", "reports_per_s", "control_p50_ms", "control_p99_ms", "errors", "cpu_percent", "rss_mib"}
PER_WORKER_KEYS = {"workers_cpu_percent", "reports_by_worker"}


def run_tool(*args: str) -> dict[str, Any]:
    """tools/load_cloud.py with ``args`` (``--json`` among them): its result, after it exited 0."""
    done = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_short_run_connects_every_device_and_measures_controls() -> None:
    result = run_tool(*SMALL_RUN)
    assert result.keys() >= KEYS | PER_WORKER_KEYS
    assert result["workers"] == 1 and len(result["reports_by_worker"]) == 1
    assert result["devices_connected"] == 20
    assert result["errors"] == 0, result["error_samples"]
    # 20 devices, one report a second each: the cloud's own counter saw about that many stored per second.
    assert 12 <= result["reports_per_s"] <= 28
    assert result["controls"] >= 25  # 10/s for 4 s, each matched to its frame at the device
    assert 0 < result["control_p50_ms"] <= result["control_p99_ms"] < 5000
    assert result["cpu_percent"] > 0 and result["rss_mib"] > 10


def test_more_devices_than_the_default_registration_limit_all_register() -> None:
    # Every device registers from 127.0.0.1; the cloud's default allows 100 an hour per address (9041 after).
    args = ("--devices", "120", "--report-interval", "60", "--control-rate", "0", "--duration", "1", "--json")
    result = run_tool(*args)
    assert result["devices_connected"] == 120
    assert result["errors"] == 0, result["error_samples"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_share_one_mosquitto_and_store_each_report_once(db_url: str) -> None:
    # 40 devices, one report a second, through a worker group on the tool's own Mosquitto: each report reaches one
    # worker, so the sum over workers is about 40/s; a set-up where both workers heard every report doubles it.
    args = ("--devices", "40", "--report-interval", "1", "--control-rate", "5", "--duration", "8")
    result = run_tool(*args, "--workers", "2", "--database", db_url, "--json")
    assert result.keys() >= KEYS | PER_WORKER_KEYS | {"broker_cpu_percent"}
    assert result["workers"] == 2 and result["database"] == "postgresql"
    assert result["devices_connected"] == 40
    assert result["errors"] == 0, result["error_samples"]
    assert 0.6 * 40 <= result["reports_per_s"] <= 1.4 * 40, result
    by_worker = result["reports_by_worker"]
    assert len(by_worker) == 2 and all(count > 0 for count in by_worker), by_worker
    assert abs(sum(by_worker) / result["duration_s"] - result["reports_per_s"]) < 1  # the same reports, split
    # 5/s for 8 s, round-robin over the workers: about half reach a device through the worker that did not hear it.
    assert result["controls"] >= 30
    assert 0 < result["control_p50_ms"] <= result["control_p99_ms"] < 5000
    assert len(result["workers_cpu_percent"]) == 2 and all(cpu > 0 for cpu in result["workers_cpu_percent"])
    assert result["cpu_percent"] == pytest.approx(sum(result["workers_cpu_percent"]), abs=0.2)
    assert result["broker_cpu_percent"] > 0


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
