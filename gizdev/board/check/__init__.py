"""``gizdev check-board``: a conformance run against an MCU that should speak the serial protocol."""

from gizdev.board.check.result import CheckResult, Evidence, Status, render_table, report_json
from gizdev.board.check.rules import Timing
from gizdev.board.check.runner import CHECK_NAMES, CHECKS, Check, Checker, check_board, select_checks
from gizdev.board.check.wire import Tap

__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "Check",
    "CheckResult",
    "Checker",
    "Evidence",
    "Status",
    "Tap",
    "Timing",
    "check_board",
    "render_table",
    "report_json",
    "select_checks",
]
