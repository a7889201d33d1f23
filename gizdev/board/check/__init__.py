"""``gizdev check-board``: a conformance run against an MCU that should speak the serial protocol."""

from gizdev.board.check.result import CheckResult, Evidence, Status, render_table, report_json
from gizdev.board.check.rules import Timing
from gizdev.board.check.runner import CHECK_NAMES, CHECKS, Checker, check_board
from gizdev.board.check.wire import Tap

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "CheckResult",
    "Checker",
    "Evidence",
    "Status",
    "Tap",
    "Timing",
    "check_board",
    "render_table",
    "report_json",
]
