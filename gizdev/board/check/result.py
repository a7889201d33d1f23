"""Outcome of a conformance run: one line per check, the evidence behind failures, text table and JSON."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gizdev.codec.describe import describe_frame
from gizdev.codec.frame import Frame
from gizdev.codec.p0 import Product
from gizdev.errors import CodecError, FrameError

__all__ = ["CheckResult", "Evidence", "Status", "evidence_error", "evidence_frame", "render_table", "report_json"]

#: Evidence and findings kept per check: enough to see what went wrong, short enough to read.
MAX_EVIDENCE = 12
MAX_FINDINGS = 10


class Status(enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


_RANK = {Status.SKIP: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One frame (or damaged bytes) sent or received, as hex and decoded."""

    direction: str  # "sent" or "received"
    hex: str
    decoded: dict[str, Any] | str
    t: float | None = None  # seconds since the start of the run

    def to_json(self) -> dict[str, Any]:
        return {"direction": self.direction, "t": self.t, "hex": self.hex, "decoded": self.decoded}


def evidence_frame(direction: str, wire: bytes, frame: Frame, product: Product, t: float | None = None) -> Evidence:
    try:
        decoded: dict[str, Any] | str = describe_frame(frame, product)
    except CodecError as exc:
        decoded = f"undecodable: {exc}"
    return Evidence(direction, wire.hex(), decoded, t)


def evidence_error(error: FrameError, t: float | None = None) -> Evidence:
    return Evidence("received", error.data.hex(), f"bad frame: {error.reason}", t)


@dataclass
class CheckResult:
    """The outcome of one named check; the worst finding sets the status."""

    name: str
    title: str
    status: Status = Status.PASS
    summary: str = ""
    findings: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    more_findings: int = 0  # findings beyond MAX_FINDINGS, counted only

    def fail(self, finding: str, *evidence: Evidence) -> None:
        self._add(Status.FAIL, finding, evidence)

    def warn(self, finding: str, *evidence: Evidence) -> None:
        self._add(Status.WARN, finding, evidence)

    def note(self, finding: str) -> None:
        """Something worth saying that changes nothing."""
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)

    def skip(self, reason: str) -> None:
        self.status = Status.SKIP
        self.summary = reason

    def _add(self, status: Status, finding: str, evidence: Sequence[Evidence]) -> None:
        if _RANK[status] > _RANK[self.status]:
            self.status = status
        if len(self.findings) >= MAX_FINDINGS:
            self.more_findings += 1
            return
        self.findings.append(f"{status.value}: {finding}")
        room = MAX_EVIDENCE - len(self.evidence)
        self.evidence.extend(evidence[: max(room, 0)])

    def headline(self) -> str:
        """The summary, or the first finding of the status that decided it."""
        prefix = f"{self.status.value}: "
        for finding in self.findings:
            if finding.startswith(prefix):
                return finding[len(prefix) :]
        return self.summary

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status.value,
            "summary": self.headline(),
            "findings": list(self.findings),
            "more_findings": self.more_findings,
            "evidence": [item.to_json() for item in self.evidence],
        }


def counts(results: Sequence[CheckResult]) -> dict[str, int]:
    return {status.value: sum(1 for r in results if r.status is status) for status in Status}


def render_table(results: Sequence[CheckResult]) -> str:
    """The pass/fail/warn table, then the evidence of every failure and the findings of every warning."""
    width = max((len(r.name) for r in results), default=5)
    lines = [f"{'check':<{width}}  result  detail"]
    for result in results:
        lines.append(f"{result.name:<{width}}  {result.status.value.upper():<6}  {result.headline()}".rstrip())
    tally = counts(results)
    lines.append("")
    lines.append(
        f"{len(results)} checks: {tally['pass']} passed, {tally['fail']} failed, {tally['warn']} warnings, "
        f"{tally['skip']} skipped"
    )
    for result in results:
        if result.status not in (Status.FAIL, Status.WARN):
            continue
        lines.append("")
        lines.append(f"{result.status.value.upper()} {result.name} ({result.title})")
        lines.extend(f"  {finding}" for finding in result.findings)
        if result.more_findings:
            lines.append(f"  ... and {result.more_findings} more")
        for item in result.evidence:
            when = "" if item.t is None else f" t={item.t:.3f}s"
            lines.append(f"  {item.direction:<8}{when} {item.hex}")
            decoded = item.decoded if isinstance(item.decoded, str) else json.dumps(item.decoded, ensure_ascii=False)
            lines.append(f"           {decoded}")
    return "\n".join(lines)


def report_json(results: Sequence[CheckResult], *, port: str, product: Product, elapsed_s: float) -> dict[str, Any]:
    """The machine-readable report (``--json REPORT``)."""
    return {
        "port": port,
        "product": product.name,
        "product_key": product.product_key,
        "ok": not any(r.status is Status.FAIL for r in results),
        "elapsed_s": round(elapsed_s, 3),
        "counts": counts(results),
        "checks": [r.to_json() for r in results],
    }
