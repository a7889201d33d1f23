"""The one list of checks: run order, --only selection, and which checks only judge what the run saw."""

from __future__ import annotations

import pytest

from gizdev.board.check import CHECK_NAMES, CHECKS, Checker, select_checks
from gizdev.errors import ConfigError


def test_names_are_unique_and_judgements_come_last() -> None:
    assert len(set(CHECK_NAMES)) == len(CHECK_NAMES) == 15
    judged = [check.judgement for check in CHECKS]
    assert judged == sorted(judged)  # every probe before the first judgement
    assert [c.name for c in CHECKS if c.judgement] == ["frame-integrity", "ack-timing", "sn-echo", "report-rate"]
    assert all(getattr(Checker, check.run.__name__) is check.run for check in CHECKS)


def test_selection_keeps_the_run_order() -> None:
    assert [c.name for c in select_checks(["report-rate", "device-info"])] == ["device-info", "report-rate"]
    assert select_checks() == list(CHECKS)
    with pytest.raises(ConfigError, match=r"unknown check nope, zap \(known: device-info, heartbeat"):
        select_checks(["nope", "device-info", "zap"])
