"""A conformance run: the checks in order against one MCU on a :class:`Tap`, each giving one named line.

Checks that probe (device-info ... stuffing) talk to the MCU; the last four judge everything the run saw: every
answer's time and sn, every frame's integrity, and how often the MCU reported on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from gizdev.board.check.result import CheckResult, Evidence, Status, evidence_error, evidence_frame
from gizdev.board.check.rules import (
    READONLY_MIN_INTERVAL_S,
    Timing,
    all_flags,
    canonical,
    check_device_info,
    check_notice,
    check_read_reply,
    check_resends,
    decode_report,
    edge_values,
    evidence_of,
    stuffing_problem,
)
from gizdev.board.check.wire import Seen, Sent, Tap
from gizdev.board.line import DEVICE_INFO_PAYLOAD_BYTES, FRAME_OVERHEAD_BYTES, status_payload_bytes, wire_s
from gizdev.codec.commands import Command, IllegalMessageCode, WifiStatus, encode_payload
from gizdev.codec.frame import Frame, encode_frame, encode_logical_frame, parse_frame, stuff
from gizdev.codec.p0 import Action, Product
from gizdev.codec.values import Value
from gizdev.errors import ChecksumError, CodecError, ConfigError
from gizdev.transport import open_port
from gizdev.transport.closing import close_within

__all__ = ["CHECKS", "CHECK_NAMES", "Check", "Checker", "Exchange", "check_board", "select_checks"]

_LOGGER = logging.getLogger(__name__)

#: A command code no table assigns (§2 ends at 0x2A, the SDK's virtualization codes at 0x3C, GAgent's test at 0x50).
UNKNOWN_CMD = 0x60
HEARTBEATS = 3
BOOT_TRIES = 3  # device info requests before giving up (GAgent asks up to 10 times at boot, §2.1)
#: What the module tells the MCU in the wifi-status check: station, router and cloud connected, rssi 5 (§7 ex. 6).
WIFI_STATUS_WORD = 0x0532
#: After this many writes without their report, later writes wait only briefly: a board that never reports would
#: otherwise cost the whole report window per write, and the line already fails.
MAX_MISSING_REPORTS = 3
SHORT_REPORT_WAIT_S = 0.1
#: Heartbeat sn values whose answer must carry a stuffed 0xFF: the sn itself, and the sn that makes the answer's
#: checksum 0xFF (00 + 05 + 08 + sn + 00 + 00 = 0xFF).
STUFFING_SNS = (0xFF, 0xFF - 0x05 - Command.HEARTBEAT_ACK)

_NOTICES = (Command.ILLEGAL_MESSAGE, Command.ILLEGAL_MESSAGE_REPLY)


@dataclass
class Exchange:
    """One request of ours and the MCU's answer to it."""

    what: str
    sent: list[Sent]
    answer: Seen | None = None
    allowed_s: float = 0.0
    expects_ack: bool = True  # False for frames meant to be refused (their answer is a notice)
    #: The first request after opening the port: a board may still be booting (opening a port can reset it).
    boot: bool = False
    bad_frames_between: bool = False  # a damaged frame came while we waited: the answer may have been lost

    @property
    def latency_s(self) -> float | None:
        if self.answer is None:
            return None
        start = self.sent[-1] if self.bad_frames_between or self.boot else self.sent[0]
        return self.answer.t - start.t

    @property
    def frame(self) -> Frame | None:
        return None if self.answer is None else self.answer.frame


@dataclass
class Run:
    """What the checks share."""

    state: dict[str, Value] | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    write_reports: set[int] = field(default_factory=set)  # indexes in tap.seen of reports that followed a write
    missing_reports: int = 0
    started: float = 0.0


class Checker:
    """Runs the selected checks against the MCU behind ``tap``."""

    def __init__(
        self,
        tap: Tap,
        product: Product,
        *,
        baud: int = 9600,
        quick: bool = False,
        only: Sequence[str] = (),
        timing: Timing | None = None,
        observe_s: float = 0.0,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.selected = select_checks(only)
        self.tap = tap
        self.product = product
        self.baud = baud
        self.quick = quick
        self.timing = timing or Timing()
        self.progress = progress
        self.observe_s = observe_s  # quiet listening before the judgements, for the report rate
        self.run_state = Run()
        self.results: dict[str, CheckResult] = {check.name: CheckResult(check.name, check.title) for check in CHECKS}

    # ---- plumbing ------------------------------------------------------------------------------------------

    def _t(self, t: float) -> float:
        return round(t - self.run_state.started, 4)

    def ev_sent(self, sent: Sent) -> Evidence:
        try:
            frame = parse_frame(sent.wire)
        except CodecError as exc:
            return Evidence("sent", sent.wire.hex(), f"deliberately damaged: {exc}", self._t(sent.t))
        return evidence_frame("sent", sent.wire, frame, self.product, self._t(sent.t))

    def ev_seen(self, seen: Seen | None) -> Evidence:
        if seen is None:
            return Evidence("received", "", "nothing")
        if seen.frame is None:
            assert seen.error is not None
            return evidence_error(seen.error, self._t(seen.t))
        return evidence_of("received", seen.frame, self.product, self._t(seen.t))

    def ev_exchange(self, exchange: Exchange) -> list[Evidence]:
        items = [self.ev_sent(sent) for sent in exchange.sent]
        if exchange.answer is not None:
            items.append(self.ev_seen(exchange.answer))
        return items

    def allowed_s(self, request_wire: int, answer_payload: int) -> float:
        """The ACK time plus the time both frames take on the line and the host's slack."""
        wire = wire_s(request_wire + answer_payload + FRAME_OVERHEAD_BYTES, self.baud)
        return self.timing.ack_timeout_s + wire + self.timing.host_slack_s

    async def request(
        self,
        what: str,
        cmd: int,
        payload: bytes = b"",
        *,
        tries: int = 2,
        answer_payload: int = 0,
        wire: bytes | None = None,
        sn: int | None = None,
        expects_ack: bool = True,
        boot: bool = False,
    ) -> Exchange:
        """Send a request (``wire`` as given, if given) and wait for its ACK or a notice; resend on silence."""
        tap = self.tap
        if sn is None:
            sn = tap.next_sn()
        if wire is None:
            wire = encode_frame(cmd, sn, payload)
        exchange = Exchange(
            what, [], allowed_s=self.allowed_s(len(wire), answer_payload), expects_ack=expects_ack, boot=boot
        )
        answers = (cmd + 1, *_NOTICES)
        wait = self.timing.answer_wait_s + wire_s(len(wire) + answer_payload + FRAME_OVERHEAD_BYTES, self.baud)
        for _ in range(tries):
            start = len(tap.seen)
            exchange.sent.append(tap.send_wire(wire, cmd, sn))
            found = await tap.wait_for(lambda s: s.frame is not None and s.frame.cmd in answers, wait, start)
            if found is not None:
                exchange.answer = found
                break
            if any(item.error is not None for item in tap.seen[start:]):
                exchange.bad_frames_between = True
            if not tap.is_open:
                break
        self.run_state.exchanges.append(exchange)
        return exchange

    async def read(self, what: str = "read") -> tuple[Exchange, dict[str, Value] | None]:
        """Read the whole status (quietly: problems go to a throw-away result)."""
        exchange = await self.request(what, Command.P0_DOWN, self.product.encode("read"), answer_payload=self._status())
        frame = exchange.frame
        if frame is None or frame.cmd != Command.P0_DOWN_ACK:
            return exchange, None
        scratch = CheckResult("scratch", "")
        state = check_read_reply(scratch, frame, self.product, self.ev_seen(exchange.answer))
        if state is not None:
            self.run_state.state = state
        return exchange, state

    def _status(self) -> int:
        return status_payload_bytes(self.product)

    async def settle_write(self, what: str, name: str, value: Value) -> None:
        """Write a value back (not judged); its report counts as one that followed a write."""
        start = len(self.tap.seen)
        expected = canonical(self.product, name, value)
        await self.request(what, Command.P0_DOWN, self.product.encode("write", {name: value}))
        report = await self.tap.wait_for(
            lambda seen: self._carries(seen, name, expected),
            self.timing.report_after_write_s + wire_s(self._status() + FRAME_OVERHEAD_BYTES, self.baud),
            start,
        )
        if report is not None:
            self.run_state.write_reports.add(self.tap.seen.index(report))
        await self.read(f"read after {what}")

    def _carries(self, seen: Seen, name: str, expected: Value) -> bool:
        message = decode_report(seen.frame, self.product) if seen.frame is not None else None
        return message is not None and message.attrs.get(name, _MISSING) == expected

    async def state(self) -> dict[str, Value] | None:
        if self.run_state.state is None:
            await self.read("read (state before writing)")
        return self.run_state.state

    # ---- the run ----------------------------------------------------------------------------------------------

    async def run(self) -> list[CheckResult]:
        """Every selected check, in order; returns their results."""
        self.run_state.started = self.tap.now()
        total = len(self.selected)
        done: set[Callable[[Checker], Awaitable[None]]] = set()
        observed = False
        for index, check in enumerate(self.selected, 1):
            if self.progress is not None:
                self.progress(index, total, check.name)
            if check.judgement and not observed:
                observed = True
                await self.tap.quiet(self.observe_s)
            if check.run in done:
                continue  # one probe gives several results (the writes give write-report and write-readback)
            if not self.tap.is_open:
                self.results[check.name].fail("the port closed during the run")
                continue
            done.add(check.run)
            await check.run(self)
        return [self.results[check.name] for check in self.selected]

    # ---- probes ----------------------------------------------------------------------------------------------

    async def check_device_info(self) -> None:
        result = self.results["device-info"]
        silent: list[Exchange] = []
        for _ in range(BOOT_TRIES):
            # A new request (new sn) each time, as GAgent asks at boot: a board may still be starting up.
            exchange = await self.request(
                "device info", Command.DEVICE_INFO_REQUEST, tries=1, answer_payload=DEVICE_INFO_PAYLOAD_BYTES, boot=True
            )
            if exchange.frame is not None:
                break
            silent.append(exchange)
            self.run_state.exchanges.remove(exchange)  # judged here, not by ack-timing
        frame = exchange.frame
        if frame is None or frame.cmd != Command.DEVICE_INFO_REPLY:
            if frame is not None:
                result.fail(f"device info request answered with cmd 0x{frame.cmd:02x}", *self.ev_exchange(exchange))
            else:
                evidence = [item for ex in silent for item in self.ev_exchange(ex)]
                result.fail(f"no device info after {BOOT_TRIES} requests", *evidence)
            return
        check_device_info(result, frame, self.product, self.ev_seen(exchange.answer))
        if silent:
            result.note(f"answered only device info request {len(silent) + 1} (booting?)")

    async def check_heartbeat(self) -> None:
        result = self.results["heartbeat"]
        slowest = 0.0
        for number in range(1, HEARTBEATS + 1):
            exchange = await self.request(f"heartbeat {number}", Command.HEARTBEAT)
            frame, latency = exchange.frame, exchange.latency_s
            if frame is None or frame.cmd != Command.HEARTBEAT_ACK or latency is None:
                what = "no answer" if frame is None else f"answered with cmd 0x{frame.cmd:02x}"
                result.fail(f"heartbeat {number}: {what}, expected 0x08", *self.ev_exchange(exchange))
                continue
            slowest = max(slowest, latency)
            if latency > exchange.allowed_s or (len(exchange.sent) > 1 and not exchange.bad_frames_between):
                result.fail(
                    f"heartbeat {number} answered after {latency * 1000:.0f} ms "
                    f"(allowed {exchange.allowed_s * 1000:.0f} ms)",
                    *self.ev_exchange(exchange),
                )
            if frame.payload:
                result.warn(f"heartbeat {number}: the answer carries {len(frame.payload)} bytes; the spec has none")
        result.summary = f"{HEARTBEATS} heartbeats answered, slowest {slowest * 1000:.0f} ms"

    async def check_wifi_status(self) -> None:
        result = self.results["wifi-status"]
        status = WifiStatus.from_word(WIFI_STATUS_WORD)
        exchange = await self.request("wifi status", Command.WIFI_STATUS, encode_payload(Command.WIFI_STATUS, status))
        frame = exchange.frame
        if frame is None or frame.cmd != Command.WIFI_STATUS_ACK:
            what = "no answer" if frame is None else f"answered with cmd 0x{frame.cmd:02x}"
            result.fail(f"module status 0x{WIFI_STATUS_WORD:04x}: {what}, expected 0x0e", *self.ev_exchange(exchange))
            return
        if frame.payload:
            result.warn(f"the 0x0e answer carries {len(frame.payload)} bytes; the spec has none")
        result.summary = f"module status 0x{WIFI_STATUS_WORD:04x} acknowledged"

    async def check_read_reply(self) -> None:
        result = self.results["read-reply"]
        exchange = await self.request(
            "read", Command.P0_DOWN, self.product.encode("read"), answer_payload=self._status()
        )
        frame = exchange.frame
        if frame is None:
            result.fail(f"no answer to a read after {len(exchange.sent)} requests", *self.ev_exchange(exchange))
            return
        evidence = self.ev_seen(exchange.answer)
        state = check_read_reply(result, frame, self.product, evidence)
        if state is None:
            result.evidence[:0] = [self.ev_sent(exchange.sent[0])]
            return
        self.run_state.state = state
        if self.product.varlen is not None:
            message = self.product.decode(frame.payload)
            requested = all_flags(self.product)
            if message.flags is not None and message.flags & requested != requested:
                result.fail(f"reply flags 0x{message.flags:x} do not name every point asked for", evidence)
            consumed = len(self.product.encode("read_reply", state))
            if len(frame.payload) > consumed:
                result.note(f"{len(frame.payload) - consumed} byte(s) after the values (the SDK pads, §4.6)")

    async def check_writes(self) -> None:
        report_result = self.results["write-report"]
        readback_result = self.results["write-readback"]
        writable = [codec for codec in self.product.codecs.values() if codec.datapoint.writable]
        if not writable:
            report_result.skip("the product has no writable datapoints")
            readback_result.skip("the product has no writable datapoints")
            return
        state = await self.state()
        if state is None:
            report_result.fail("cannot read the status before writing")
            readback_result.fail("cannot read the status before writing")
            return
        writes = reports = 0
        for codec in writable:
            name = codec.name
            current = self.run_state.state.get(name) if self.run_state.state else None
            for value in edge_values(self.product, name, current, quick=self.quick):
                writes += 1
                reports += await self._write_one(name, value, report_result, readback_result)
        report_result.summary = f"{writes} writes to {len(writable)} points, {reports} reports with the new value"
        readback_result.summary = f"{writes} writes read back"

    async def _write_one(self, name: str, value: Value, report_result: CheckResult, readback: CheckResult) -> int:
        product, tap = self.product, self.tap
        expected = canonical(product, name, value)
        shown = f"{name}={value.hex() if isinstance(value, bytes) else value!r}"
        start = len(tap.seen)
        exchange = await self.request(f"write {shown}", Command.P0_DOWN, product.encode("write", {name: value}))
        frame = exchange.frame
        if frame is None or frame.cmd != Command.P0_DOWN_ACK:
            what = "not acknowledged" if frame is None else f"answered with cmd 0x{frame.cmd:02x}"
            report_result.fail(f"write {shown} {what}", *self.ev_exchange(exchange))
            return 0
        if frame.payload:
            report_result.warn(f"write {shown}: the ACK carries {len(frame.payload)} bytes; the SDK's is empty")

        window = self.timing.report_after_write_s + wire_s(self._status() + FRAME_OVERHEAD_BYTES, self.baud)
        if self.run_state.missing_reports == MAX_MISSING_REPORTS:
            report_result.note(f"{MAX_MISSING_REPORTS} reports missing: later writes wait {SHORT_REPORT_WAIT_S} s")
        if self.run_state.missing_reports >= MAX_MISSING_REPORTS:
            window = SHORT_REPORT_WAIT_S + wire_s(self._status() + FRAME_OVERHEAD_BYTES, self.baud)
        report = await tap.wait_for(lambda seen: self._carries(seen, name, expected), window, start)
        got = 0
        if report is None:
            self.run_state.missing_reports += 1
            others = [s for s in tap.seen[start:] if s.frame is not None and s.frame.cmd == Command.P0_UP]
            report_result.fail(
                f"write {shown}: no report with the new value within {window:.1f} s"
                + (f" ({len(others)} other report(s))" if others else ""),
                *self.ev_exchange(exchange),
                *[self.ev_seen(s) for s in others[:2]],
            )
        else:
            self.run_state.write_reports.add(tap.seen.index(report))
            got = 1
        read, state = await self.read(f"read back {shown}")
        if state is None:
            readback.fail(f"no readable status after write {shown}", *self.ev_exchange(read))
        elif state.get(name, _MISSING) != expected:
            readback.fail(f"after write {shown} the MCU reads {name}={state.get(name)!r}", *self.ev_exchange(read))
        return got

    async def check_out_of_range(self) -> None:
        result = self.results["out-of-range"]
        product = self.product
        target = next(
            (
                codec
                for codec in product.codecs.values()
                if codec.datapoint.writable and codec.spec is not None and codec.raw_max < codec.raw_limit
            ),
            None,
        )
        if target is None:
            result.skip("no writable number has raw values beyond its declared range")
            return
        state = await self.state()
        if state is None:
            result.fail("cannot read the status")
            return
        dp, bad = target.datapoint, target.raw_max + 1
        if product.fixed is not None:
            index = [w.id for w in product.fixed.writable].index(dp.id)
            p0 = bytes((Action.WRITE,)) + product.fixed.build_write(1 << index, {dp.id: bad})
        else:
            assert product.varlen is not None
            p0 = bytes((Action.VAR_WRITE,)) + product.varlen.build_body(1 << dp.id, {dp.id: bad})
        shown = f"{dp.name} raw {bad} (declared {target.raw_min}..{target.raw_max})"
        exchange = await self.request(f"write {shown}", Command.P0_DOWN, p0)
        frame = exchange.frame
        if frame is None:
            result.fail(f"write of {shown} not answered", *self.ev_exchange(exchange))
            return
        if frame.cmd in _NOTICES:
            result.summary = f"write of {shown} refused with an illegal-message notice"
            return
        await self.tap.quiet(self.timing.report_after_write_s / 2)
        read, after = await self.read(f"read after {shown}")
        if after is None:
            result.fail(f"no readable status after the write of {shown}", *self.ev_exchange(read))
            return
        if after.get(dp.name) == target.from_raw(bad):
            result.warn(
                f"{shown} was applied: the firmware does not range-check writes "
                "(neither does the SDK; the spec leaves it optional, §4.2)",
                *self.ev_exchange(exchange),
            )
            original = state.get(dp.name)
            if original is not None:
                await self.settle_write(f"restore {dp.name}", dp.name, original)
        else:
            result.summary = f"write of {shown} acknowledged and not applied"

    async def check_illegal_checksum(self) -> None:
        result = self.results["illegal-checksum"]
        sn = self.tap.next_sn()
        logical = encode_logical_frame(Command.HEARTBEAT, sn)
        wire = stuff(logical[:-1] + bytes(((logical[-1] + 1) & 0xFF,)))
        exchange = await self.request(
            "heartbeat with a bad checksum", Command.HEARTBEAT, wire=wire, sn=sn, tries=1, expects_ack=False
        )
        frame = exchange.frame
        evidence = self.ev_exchange(exchange)
        if frame is not None and frame.cmd == Command.HEARTBEAT_ACK:
            result.fail("a heartbeat with a wrong checksum was answered as good: checksums are not verified", *evidence)
        else:
            check_notice(result, frame, IllegalMessageCode.CHECKSUM, "a heartbeat with a wrong checksum", evidence)
        after = await self.request("heartbeat after the bad frame", Command.HEARTBEAT)
        if after.frame is None or after.frame.cmd != Command.HEARTBEAT_ACK:
            result.fail("the next good heartbeat was not answered: the MCU did not recover", *self.ev_exchange(after))
        elif result.status is Status.PASS:
            result.summary = "0x12 code 0x01 with the bad frame's sn; the next heartbeat answered"

    async def check_illegal_command(self) -> None:
        result = self.results["illegal-command"]
        exchange = await self.request(f"unknown command 0x{UNKNOWN_CMD:02x}", UNKNOWN_CMD, tries=1, expects_ack=False)
        frame = exchange.frame
        evidence = self.ev_exchange(exchange)
        if frame is not None and frame.cmd == UNKNOWN_CMD + 1:
            result.warn(f"the unknown command 0x{UNKNOWN_CMD:02x} was acknowledged; the SDK answers 0x12", *evidence)
            return
        check_notice(result, frame, IllegalMessageCode.COMMAND, f"the unknown command 0x{UNKNOWN_CMD:02x}", evidence)
        if result.status is Status.PASS:
            result.summary = f"0x{UNKNOWN_CMD:02x} answered with 0x12 code 0x02"

    async def check_resend(self) -> None:
        result = self.results["resend"]
        product, tap, timing = self.product, self.tap, self.timing
        state = await self.state()
        if state is None:
            result.fail("cannot read the status")
            return
        choice = next(
            (
                (codec.name, values[0], state[codec.name])
                for codec in product.codecs.values()
                if codec.datapoint.writable
                for values in [edge_values(product, codec.name, state.get(codec.name), quick=True)]
                if values
            ),
            None,
        )
        if choice is None:
            result.skip("no writable datapoint to provoke a report with")
            return
        name, value, original = choice
        start = len(tap.seen)
        tap.withhold_reports = True
        try:
            await self.request(
                f"write {name} (to provoke a report)", Command.P0_DOWN, product.encode("write", {name: value})
            )
            window = timing.report_after_write_s + wire_s(self._status() + FRAME_OVERHEAD_BYTES, self.baud)
            first = await tap.wait_for(lambda s: s.frame is not None and s.frame.cmd == Command.P0_UP, window, start)
            if first is None or first.frame is None:
                result.skip(f"no report came after writing {name}, so there was none to withhold an ACK from")
                return
            sn = first.frame.sn
            transmissions = [(first.t, first.frame)]
            cursor = tap.seen.index(first) + 1
            deadline = first.t + timing.resend_listen_max_s
            while tap.now() < deadline:
                again = await tap.wait_for(
                    lambda s: s.frame is not None and s.frame.cmd == Command.P0_UP and s.frame.sn == sn,
                    min(timing.resend_quiet_s, deadline - tap.now()),
                    cursor,
                )
                if again is None or again.frame is None:
                    break
                transmissions.append((again.t, again.frame))
                cursor = tap.seen.index(again) + 1
        finally:
            tap.withhold_reports = False
        evidence = [self.ev_seen(Seen(t, frame=f)) for t, f in transmissions]
        check_resends(result, transmissions, timing, evidence)
        await self.settle_write(f"restore {name}", name, original)

    async def check_stuffing(self) -> None:
        result = self.results["stuffing"]
        for sn in STUFFING_SNS:
            exchange = await self.request(f"heartbeat sn 0x{sn:02x}", Command.HEARTBEAT, sn=sn)
            if exchange.frame is None:
                result.fail(
                    f"no answer to a heartbeat with sn 0x{sn:02x} (its stuffed 0xFF was not understood?)",
                    *self.ev_exchange(exchange),
                    *[self.ev_seen(s) for s in self.tap.seen if s.error is not None][-2:],
                )
        checked = 0
        raw = bytes(self.tap.raw)
        for seen in self.tap.seen:
            if seen.error is not None and "stuffing" in seen.error.reason:
                result.fail(f"a frame with a bare 0xFF: {seen.error.reason}", self.ev_seen(seen))
                continue
            if seen.frame is None:
                continue
            problem = stuffing_problem(seen.frame, raw)
            if problem is None:
                checked += (
                    0xFF
                    in encode_logical_frame(seen.frame.cmd, seen.frame.sn, seen.frame.payload, seen.frame.flags)[2:]
                )
                continue
            logical = encode_logical_frame(seen.frame.cmd, seen.frame.sn, seen.frame.payload, seen.frame.flags)
            result.fail(problem, evidence_frame("received", logical, seen.frame, self.product, self._t(seen.t)))
        if result.status is Status.PASS:
            result.summary = f"{checked} frames with 0xFF bytes, all stuffed"

    # ---- judgements over the whole run -------------------------------------------------------------------------

    async def check_frame_integrity(self) -> None:
        result = self.results["frame-integrity"]
        bad = 0
        for seen in self.tap.seen:
            error = seen.error
            if error is None or "stuffing" in error.reason:
                continue
            if "garbage" in error.reason:
                result.warn(f"bytes outside any frame: {error.reason}", self.ev_seen(seen))
                continue
            bad += 1
            kind = "checksum" if isinstance(error, ChecksumError) else "framing"
            result.fail(f"{kind} error: {error.reason}", self.ev_seen(seen))
        frames = sum(1 for s in self.tap.seen if s.frame is not None)
        result.summary = f"{frames} frames received, {bad} damaged"

    async def check_ack_timing(self) -> None:
        result = self.results["ack-timing"]
        slowest, counted = 0.0, 0
        for exchange in self.run_state.exchanges:
            if not exchange.expects_ack:
                continue
            counted += 1
            latency = exchange.latency_s
            if latency is None:
                result.fail(
                    f"{exchange.what}: no answer after {len(exchange.sent)} transmissions", *self.ev_exchange(exchange)
                )
                continue
            if len(exchange.sent) > 1 and not exchange.bad_frames_between and not exchange.boot:
                result.fail(f"{exchange.what}: answered only after a resend", *self.ev_exchange(exchange))
            slowest = max(slowest, latency)
            if latency > exchange.allowed_s:
                result.fail(
                    f"{exchange.what}: answered after {latency * 1000:.0f} ms "
                    f"(allowed {exchange.allowed_s * 1000:.0f} ms)",
                    *self.ev_exchange(exchange),
                )
        result.summary = f"{counted} requests answered, slowest {slowest * 1000:.0f} ms"

    async def check_sn_echo(self) -> None:
        result = self.results["sn-echo"]
        answered = 0
        for exchange in self.run_state.exchanges:
            frame = exchange.frame
            if frame is None:
                continue
            answered += 1
            sn = exchange.sent[-1].sn
            if frame.sn != sn:
                result.fail(
                    f"{exchange.what}: answer carries sn {frame.sn}, the request had {sn}", *self.ev_exchange(exchange)
                )
        result.summary = f"{answered} answers, every sn echoed"

    async def check_report_rate(self) -> None:
        result = self.results["report-rate"]
        product, timing = self.product, self.timing
        known: dict[str, Value] = {}
        last_t: float | None = None
        previous: tuple[int, bytes, float] | None = None
        unchanged: list[Seen] = []
        unique = 0
        for index, seen in enumerate(self.tap.seen):
            frame = seen.frame
            message = decode_report(frame, product) if frame is not None else None
            if message is None or frame is None:
                continue
            if (
                previous is not None
                and (frame.sn, frame.payload) == previous[:2]
                and seen.t - previous[2] < timing.resend_listen_max_s
            ):
                continue  # a resend of the report before
            previous = (frame.sn, frame.payload, seen.t)
            unique += 1
            changed = {name for name, value in message.attrs.items() if known.get(name, _MISSING) != value}
            known.update(message.attrs)
            solicited = index in self.run_state.write_reports
            if not solicited and last_t is not None:
                if not changed:
                    unchanged.append(seen)
                elif all(self._slow_point(name) for name in changed):
                    gap = seen.t - last_t
                    if gap < READONLY_MIN_INTERVAL_S - timing.rate_tolerance_s:
                        result.fail(
                            f"report {gap:.1f} s after the previous one for read-only numbers alone "
                            f"({', '.join(sorted(changed))}); §3 allows one per {READONLY_MIN_INTERVAL_S:g} s",
                            self.ev_seen(seen),
                        )
            last_t = seen.t
        if len(unchanged) > 1:
            result.fail(
                f"{len(unchanged)} reports without any change during the run (the periodic report comes every 10 min)",
                *[self.ev_seen(s) for s in unchanged[:3]],
            )
        result.summary = f"{unique} reports, {len(self.run_state.write_reports)} of them after our writes"

    def _slow_point(self, name: str) -> bool:
        """A point whose change alone may be reported only every 6 s: a read-only number (§3)."""
        codec = self.product.codecs.get(name)
        return codec is not None and not codec.datapoint.writable and not codec.datapoint.is_bits


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: its name (for ``--only``), what it checks, and the probe that gives its result."""

    name: str
    title: str
    run: Callable[[Checker], Awaitable[None]]
    #: Sends nothing: judges everything the run saw (run last, after the quiet listening).
    judgement: bool = False


#: Every check, in run order: the one list the runner, ``--only`` and the report's table follow.
CHECKS: tuple[Check, ...] = (
    Check("device-info", "0x01/0x02 versions, product key, sizes, attributes", Checker.check_device_info),
    Check("heartbeat", "0x07 answered by 0x08 within the ACK time", Checker.check_heartbeat),
    Check("wifi-status", "0x0D module status acknowledged by 0x0E", Checker.check_wifi_status),
    Check("read-reply", "0x03 read: the reply decodes with every datapoint", Checker.check_read_reply),
    Check(
        "write-report", "each writable point at its edge values, then a report with the new value", Checker.check_writes
    ),
    Check("write-readback", "a read after each write shows the written value", Checker.check_writes),
    Check("out-of-range", "a write beyond a point's declared range is refused (optional)", Checker.check_out_of_range),
    Check(
        "illegal-checksum",
        "a frame with a bad checksum gets 0x12 code 0x01, and the line recovers",
        Checker.check_illegal_checksum,
    ),
    Check("illegal-command", "an unknown command gets 0x12 code 0x02", Checker.check_illegal_command),
    Check("resend", "an unacknowledged report is resent, same sn, after 200 ms, 3 times in all", Checker.check_resend),
    Check("stuffing", "0xFF bytes arrive as FF 55; stuffed frames from us are understood", Checker.check_stuffing),
    Check(
        "frame-integrity",
        "every frame from the MCU has a good checksum and length",
        Checker.check_frame_integrity,
        judgement=True,
    ),
    Check("ack-timing", "every request of ours answered within the ACK time", Checker.check_ack_timing, judgement=True),
    Check("sn-echo", "every answer carries the sn of its request", Checker.check_sn_echo, judgement=True),
    Check("report-rate", "no more unsolicited reports than §3 allows", Checker.check_report_rate, judgement=True),
)
CHECK_NAMES = tuple(check.name for check in CHECKS)


def select_checks(only: Sequence[str] = ()) -> list[Check]:
    """The checks named in ``only`` (all when empty), in run order; ConfigError names an unknown one."""
    unknown = [name for name in only if name not in CHECK_NAMES]
    if unknown:
        raise ConfigError(f"unknown check {', '.join(unknown)} (known: {', '.join(CHECK_NAMES)})")
    return [check for check in CHECKS if not only or check.name in only]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: object = _Missing()


#: How long a closing port may take to flush before it is cut (a board that stopped reading never lets it finish).


async def check_board(
    port: str,
    product: Product,
    *,
    baud: int = 9600,
    quick: bool = False,
    only: Sequence[str] = (),
    timing: Timing | None = None,
    observe_s: float = 0.0,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[CheckResult], float]:
    """Open ``port`` as the module would, run the checks, close; returns the results and the seconds it took."""
    transport, tap = await open_port(port, lambda: Tap(name=port), baudrate=baud)
    checker = Checker(
        tap, product, baud=baud, quick=quick, only=only, timing=timing, observe_s=observe_s, progress=progress
    )
    try:
        results = await checker.run()
        elapsed = tap.now() - checker.run_state.started
    finally:
        await close_within(tap, transport)
    _LOGGER.info("%s: %d checks in %.1f s", port, len(results), elapsed)
    return results, elapsed
