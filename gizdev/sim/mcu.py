"""A virtual MCU board for any product schema: state, the SDK's report rules, and fault injection.

The rules are the vendor SDK V03030000's (serial protocol §3, §4.5; its ``gizCheckReport`` and
``gizDevReportPolicy``):

* a change of a writable point or of any bool/enum is reported at once;
* a change of read-only numbers alone waits until ``readonly_min_interval_s`` (6 s) after the last report that
  such a change triggered (reports of writable points, bools or the periodic report do not restart that window;
  the held change rides along with them); the window starts at boot, so no such report goes out in the first 6 s;
* the whole status is reported every ``periodic_interval_s`` (10 min) after boot;
* after a write the MCU acknowledges first and reports next, and only if something changed;
* a read reply carries the last *reported* state (``gizLastDataPoint``), so a held-back change is held back from
  it too (``read_current_state`` answers with the state as it is now instead: our one deliberate deviation);
* the state starts at zero in app units (see :func:`initial_state`).

Fixed-length products report the whole status, variable-length ones the changed points (the periodic report sets
every flag bit, as the SDK does). Boot is :meth:`VirtualMcu.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gizdev.codec.commands import Command, DeviceInfo, WifiStatus
from gizdev.codec.frame import encode_frame, encode_logical_frame, parse_frame, stuff
from gizdev.codec.p0 import Product
from gizdev.codec.values import Value
from gizdev.errors import AckTimeout, LinkClosed
from gizdev.link.mcu import McuSession
from gizdev.link.protocol import ACK_TIMEOUT_S, DEFAULT_RESENDS
from gizdev.schema.model import DataType

__all__ = ["FaultPlan", "VirtualMcu", "default_device_info"]

_LOGGER = logging.getLogger(__name__)

READONLY_MIN_INTERVAL_S = 6.0  # serial protocol §3: REPORT_TIME_MAX
PERIODIC_INTERVAL_S = 600.0  # serial protocol §3: full report every 10 minutes


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Misbehaviour to inject into what the virtual MCU sends (rates are probabilities per frame or byte)."""

    drop_acks: float = 0.0  # probability that an ACK we owe is not sent
    corrupt_bytes: float = 0.0  # probability per byte of being flipped
    delay_s: float = 0.0  # extra delay before each frame we send
    silent: bool = False  # send nothing at all
    garbage: float = 0.0  # probability of random bytes before a frame
    seed: int | None = None
    # Deterministic protocol faults, one rule of the serial protocol each (gizdev check-board names each one).
    product_key: str | None = None  # device info (0x02) reports this key instead of the schema's
    ack_delay_s: float = 0.0  # extra delay before each answer (ACK or notice); requests keep their pace
    bad_checksum_every: int = 0  # every Nth frame sent carries a wrong checksum (0: never)
    no_report_after_write: bool = False  # apply writes without reporting the change
    no_stuffing: bool = False  # send 0xFF bytes without the 0x55 the protocol inserts after them
    wrong_ack_sn: bool = False  # answers carry the request's sn + 1
    no_resend: bool = False  # send each request once: no resend when its ACK does not come
    ignore_illegal: bool = False  # send no illegal-message notice (0x12) for bad or unknown frames


def default_device_info(product: Product, *, product_secret: str = "0" * 32) -> DeviceInfo:
    """What the SDK reports for a product: protocol 00000004, P0 00000002, GoKit hw/sw versions."""
    return DeviceInfo(
        protocol_version="00000004",
        p0_version="00000002",
        hardware_version="03010100",
        software_version="03030000",
        product_key=product.product_key or "0" * 32,
        binding_timeout_s=0,
        device_attributes=bytes(7) + b"\x02",  # the SDK always sets byte 7 bit 1 (§2.1)
        product_secret=product_secret,
    )


def initial_state(product: Product) -> dict[str, Value]:
    """The SDK's power-on state: zero in app units, as its cleared app struct holds (false, the first enum member,
    zero bytes, the number 0: raw (0 - addition) / ratio, truncated as the SDK's integer division).

    Where 0 lies outside a number's declared range the SDK would send the truncated raw bytes (e.g. 0xf0 for an
    addition of 16), which our codec refuses: such a point starts at the in-range value nearest to 0 instead.
    """
    state: dict[str, Value] = {}
    for name, codec in product.codecs.items():
        spec = codec.spec
        if codec.datapoint.data_type is DataType.BINARY:
            state[name] = bytes(codec.datapoint.byte_len)
        elif spec is None:
            state[name] = codec.from_raw(0)
        else:
            raw = int(-spec.addition / spec.ratio)  # Decimal: int() truncates toward zero, as C does
            state[name] = codec.from_raw(min(max(raw, codec.raw_min), codec.raw_max))
    return state


@dataclass
class _ReportState:
    changed: set[str] = field(default_factory=set)
    backlog: set[str] = field(default_factory=set)  # points of a dropped report: ride along with the next one
    # The SDK's lastReportTime: when read-only numbers last triggered a report (boot until they first do).
    readonly_window_start: float = float("-inf")
    due: asyncio.Event = field(default_factory=asyncio.Event)


class VirtualMcu:
    """The device behind an :class:`McuSession`: keeps state and reports it like the SDK does."""

    def __init__(
        self,
        product: Product,
        *,
        device_info: DeviceInfo | None = None,
        values: Mapping[str, object] | None = None,
        readonly_min_interval_s: float = READONLY_MIN_INTERVAL_S,
        periodic_interval_s: float = PERIODIC_INTERVAL_S,
        faults: FaultPlan | None = None,
        clock: Callable[[], float] = time.monotonic,
        ack_timeout: float = ACK_TIMEOUT_S,
        resends: int = DEFAULT_RESENDS,
        read_current_state: bool = False,
        name: str = "sim",
    ) -> None:
        self.product = product
        self._device_info = device_info or default_device_info(product)
        self.state = initial_state(product)
        if values:
            self.state.update(self._validated(values))
        #: The state as last reported (the SDK's gizLastDataPoint): what read replies carry. ``values`` are the
        #: power-on state, so they count as reported.
        self.reported: dict[str, Value] = dict(self.state)
        #: Read replies carry ``state`` instead of ``reported`` (not as the SDK; for those who want it).
        self.read_current_state = read_current_state
        self.readonly_min_interval_s = readonly_min_interval_s
        self.periodic_interval_s = periodic_interval_s
        self.clock = clock
        self.name = name
        self.session = McuSession(product, self, ack_timeout=ack_timeout, resends=resends, name=name)
        self.wifi_status: WifiStatus | None = None
        self.passthrough_received: list[bytes] = []
        self.writes_applied = 0
        self.restarts = 0
        self.reports_sent = 0
        self._report = _ReportState()
        self._faults = faults or FaultPlan()
        self._rng = random.Random(self._faults.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._frames_out = 0  # frames past the fault filter, for bad_checksum_every
        self._last_request = b""  # wire bytes of the last request sent, to recognise its resends

    # ---- wiring -----------------------------------------------------------------------------------------------

    def protocol_factory(self) -> Any:
        """A fresh link for a new connection, with the fault plan applied to what it sends."""
        link = self.session.protocol_factory()
        link.outgoing_filter = self._outgoing
        return link

    def start(self) -> None:
        """Boot: start the reporter (reports on change, rate rules, periodic report), timed from now."""
        if not self._tasks:
            # The SDK's lastReportTime starts at 0 with its millisecond counter: a window from boot.
            self._report.readonly_window_start = self.clock()
            task = asyncio.get_running_loop().create_task(self._reporter(), name=f"{self.name}-reporter")
            self._tasks.add(task)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.session.link is not None:
            self.session.link.close()

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        self._faults = plan
        if plan.seed is not None:
            self._rng = random.Random(plan.seed)

    def inject(self, **changes: Any) -> None:
        """Change some fault settings (e.g. ``inject(drop_acks=0.5)``)."""
        self.faults = replace(self._faults, **changes)

    # ---- McuDevice ----------------------------------------------------------------------------------------

    def device_info(self) -> DeviceInfo:
        if self._faults.product_key is not None:
            return replace(self._device_info, product_key=self._faults.product_key)
        return self._device_info

    def status(self) -> Mapping[str, Value]:
        """What a read reply carries: the last reported state (or, with ``read_current_state``, the current one)."""
        return dict(self.state if self.read_current_state else self.reported)

    def apply_write(self, attrs: Mapping[str, Value]) -> None:
        self.writes_applied += 1
        if self._faults.no_report_after_write:
            # Changed, but nothing marks the change for the reporter; reads show it (only the report is missing).
            self.state.update(attrs)
            self.reported.update(attrs)
            return
        self._change(attrs)

    def on_passthrough(self, data: bytes) -> None:
        self.passthrough_received.append(data)

    def on_wifi_status(self, status: WifiStatus) -> None:
        self.wifi_status = status

    def on_restart(self) -> None:
        self.restarts += 1
        _LOGGER.info("%s: restart requested by the module", self.name)

    # ---- control -------------------------------------------------------------------------------------------

    def set_values(self, attrs: Mapping[str, object]) -> None:
        """Change datapoints as the board's own sensors or buttons would; reports follow the SDK's rules."""
        self._change(self._validated(attrs))

    def recheck(self) -> None:
        """Apply the report rules now: for an injected ``clock`` that moved (the reporter sleeps on the loop's)."""
        self._report.due.set()

    def _validated(self, attrs: Mapping[str, object]) -> dict[str, Value]:
        # Encoding validates names, types and ranges with the codec's own rules; decoding gives canonical values.
        canonical = self.product.decode(self.product.encode("report", {**self.state, **attrs})).attrs
        return {name: canonical[name] for name in attrs}

    def _change(self, attrs: Mapping[str, Value]) -> None:
        changed = {name for name, value in attrs.items() if self.state.get(name) != value}
        self.state.update(attrs)
        if changed:
            self._report.changed |= changed
            self._report.due.set()
            if self._urgent(changed):
                # The SDK reports (and copies its whole state to the last reported one) in the same pass of its
                # main loop that applied the change, before it handles the module's next frame.
                self.reported = dict(self.state)

    def _urgent(self, changed: set[str]) -> bool:
        return any(not self._slow(name) for name in changed)

    def _slow(self, name: str) -> bool:
        """A point whose change alone waits for the 6 s window: a read-only number (or binary)."""
        dp = self.product.codecs[name].datapoint
        return not (dp.writable or dp.is_bits)

    async def _reporter(self) -> None:
        report = self._report
        last_periodic = self.clock()
        while True:
            now = self.clock()
            readonly_due_at = report.readonly_window_start + self.readonly_min_interval_s
            wait = last_periodic + self.periodic_interval_s - now
            if report.changed:
                wait = min(wait, 0.0 if self._urgent(report.changed) else readonly_due_at - now)
            if wait > 0:
                report.due.clear()
                # asyncio.timeout, not wait_for: wait_for of 3.11 can swallow a cancellation (close would hang).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await report.due.wait()
                now = self.clock()
            periodic = now >= last_periodic + self.periodic_interval_s
            readonly_due = now >= readonly_due_at
            slow = any(self._slow(name) for name in report.changed)
            ready = bool(report.changed) and (self._urgent(report.changed) or readonly_due)
            if not (periodic or ready):
                continue
            if periodic:
                last_periodic = now
            if slow and readonly_due:
                # A read-only number triggers this report (alone or with others): its window restarts. Held ones
                # that only ride along with a writable point's report or the periodic one do not restart it.
                report.readonly_window_start = now
            await self._send_report(periodic)

    async def _send_report(self, periodic: bool) -> None:
        report = self._report
        changed, report.changed = report.changed | report.backlog, set()
        report.backlog = set()
        # The SDK copies its state to the last reported one whether or not the module acknowledges the report.
        self.reported = dict(self.state)
        if self.product.is_varlen and not periodic:
            attrs: Mapping[str, Value] = {name: self.state[name] for name in changed}
            flags = None
        else:
            attrs = dict(self.state)
            flags = (1 << (8 * self.product.varlen.flags_len)) - 1 if self.product.varlen and periodic else None
        try:
            await self.session.report(attrs, flags=flags)
            self.reports_sent += 1
        except (AckTimeout, LinkClosed) as exc:
            # The SDK drops the report after its resends. The points go into the next report (a new change or the
            # periodic one) but do not trigger one themselves, or a board with no module would retry forever.
            _LOGGER.debug("%s: report dropped: %s", self.name, exc)
            report.backlog |= changed

    # ---- faults ---------------------------------------------------------------------------------------------

    def reset_mid_frame(self) -> None:
        """Send the first half of a report and start over, as a board that resets while transmitting."""
        link = self.session.link
        if link is None or not link.is_open:
            return
        whole = encode_frame(0x05, link.next_sn(), self.product.encode("report", self.state))
        link.write_raw(whole[: len(whole) // 2])
        self.restarts += 1

    def _outgoing(self, wire: bytes, is_ack: bool) -> bytes | None:
        plan = self._faults
        if plan.silent or (is_ack and plan.drop_acks and self._rng.random() < plan.drop_acks):
            return None
        if not is_ack:
            resend = wire == self._last_request
            self._last_request = wire
            if resend and plan.no_resend:
                return None
        faulty = self._protocol_faults(wire, is_ack)
        if faulty is None:
            return None
        wire = faulty
        if plan.corrupt_bytes:
            data = bytearray(wire)
            for index in range(len(data)):
                if self._rng.random() < plan.corrupt_bytes:
                    data[index] ^= 1 << self._rng.randrange(8)
            wire = bytes(data)
        if plan.garbage and self._rng.random() < plan.garbage:
            wire = bytes(self._rng.randrange(256) for _ in range(self._rng.randrange(1, 8))) + wire
        link = self.session.link
        delay = plan.delay_s + (plan.ack_delay_s if is_ack else 0.0)
        if delay and link is not None:
            asyncio.get_running_loop().call_later(delay, link.write_raw, wire)
            return None
        return wire

    def _protocol_faults(self, wire: bytes, is_ack: bool) -> bytes | None:
        """The deterministic faults, applied to one well-formed wire frame (as the link encoded it)."""
        plan = self._faults
        if not (plan.wrong_ack_sn or plan.ignore_illegal or plan.bad_checksum_every or plan.no_stuffing):
            return wire
        frame = parse_frame(wire)
        if plan.ignore_illegal and frame.cmd in (Command.ILLEGAL_MESSAGE, Command.ILLEGAL_MESSAGE_REPLY):
            return None
        sn = (frame.sn + 1) & 0xFF if is_ack and plan.wrong_ack_sn else frame.sn
        logical = encode_logical_frame(frame.cmd, sn, frame.payload, frame.flags)
        self._frames_out += 1
        if plan.bad_checksum_every and self._frames_out % plan.bad_checksum_every == 0:
            logical = logical[:-1] + bytes(((logical[-1] + 1) & 0xFF,))
        return logical if plan.no_stuffing else stuff(logical)
