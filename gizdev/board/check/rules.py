"""The protocol rules a conformance run judges by, as pure functions over frames and times (no I/O).

Every function adds its findings to a :class:`CheckResult`. What the vendor's MCU SDK V03030000 does is
conformant by definition (the tests feed its recorded frames through these functions); where the spec leaves a
behaviour open, or sources disagree, the finding is a warning, not a failure.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from gizdev.board.check.result import CheckResult, Evidence, evidence_frame
from gizdev.codec.commands import Command, DeviceInfo, IllegalMessageCode, decode_payload
from gizdev.codec.frame import Frame, encode_frame, encode_logical_frame
from gizdev.codec.p0 import Action, P0Message, Product
from gizdev.codec.values import Value
from gizdev.errors import CodecError
from gizdev.link.protocol import ACK_TIMEOUT_S, DEFAULT_RESENDS
from gizdev.schema.model import DataType

__all__ = [
    "Timing",
    "check_device_info",
    "check_notice",
    "check_read_reply",
    "check_resends",
    "decode_report",
    "stuffing_problem",
]

PROTOCOL_VERSION = "00000004"  # serial protocol §2.1
P0_VERSIONS = ("00000002",)  # §2.1: both SDK variants; 2015 firmware said "00000004" (warned, not failed)
ATTRIBUTE_ALWAYS_SET = 0x02  # §2.1: device attributes byte 7 bit 1, always set by the SDK
SDK_TRANSMISSIONS = DEFAULT_RESENDS + 1  # §3: SDK V03030000 sends a report 3 times in all
DOC_TRANSMISSIONS = 4  # §3 / §8.1: the docs' "resend at most 3 times"
READONLY_MIN_INTERVAL_S = 6.0  # §3: REPORT_TIME_MAX between reports of read-only numbers alone


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the checker allows and waits (seconds); the spec's numbers come from §3."""

    ack_timeout_s: float = ACK_TIMEOUT_S  # §3: the answer to any request is due within 200 ms
    #: Scheduling slack of the host (USB-serial adapters deliver in 1-16 ms chunks, a loaded OS adds more).
    host_slack_s: float = 0.04
    #: How long to wait for an answer before sending the request again. Longer than the spec's 200 ms so that a
    #: late answer is timed as late instead of being mistaken for the answer to the resend.
    answer_wait_s: float = 1.0
    #: After a write the SDK acks, then reports "in its next loop" (§3): no number is given; ours is generous.
    report_after_write_s: float = 1.0
    #: A resend this much before 200 ms still counts as on time: the MCU timer ticks, and a USB-serial adapter
    #: delivers in chunks (up to 16 ms each), so a gap measured at our end can look shorter than it was.
    resend_early_tolerance_s: float = 0.05
    resend_slow_s: float = 0.5  # resend intervals beyond this are older firmware's (GK2 300 ms, V03010101 2 s)
    resend_quiet_s: float = 1.2  # no further transmission for this long: the MCU gave up
    resend_listen_max_s: float = 6.0  # the most the resend check listens
    rate_tolerance_s: float = 0.2


# ---- device info -------------------------------------------------------------------------------------------


def _printable(text: str) -> bool:
    return len(text) == 8 and all(ch in string.printable and ch not in string.whitespace for ch in text)


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(ch in string.hexdigits for ch in text)


def check_device_info(result: CheckResult, frame: Frame, product: Product, evidence: Evidence) -> DeviceInfo | None:
    """§2.1: sizes, versions, product key against the schema, attributes, secret."""
    try:
        value = decode_payload(Command.DEVICE_INFO_REPLY, frame.payload)
    except CodecError as exc:
        result.fail(f"device info does not decode ({len(frame.payload)} bytes): {exc}", evidence)
        return None
    if not isinstance(value, DeviceInfo):
        result.fail("device info reply without payload", evidence)
        return None
    info = value
    if info.protocol_version != PROTOCOL_VERSION:
        result.warn(f"protocol version {info.protocol_version!r}, the spec documents {PROTOCOL_VERSION!r}", evidence)
    if info.p0_version not in P0_VERSIONS:
        result.warn(f"P0 version {info.p0_version!r}, SDK V03030000 sends {P0_VERSIONS[0]!r}", evidence)
    for label, text in (("hardware", info.hardware_version), ("software", info.software_version)):
        if not _printable(text):
            result.fail(f"{label} version {text!r} is not 8 printable characters", evidence)
    expected = product.product_key
    if not _is_hex(info.product_key, 32):
        result.fail(f"product key {info.product_key!r} is not 32 hex characters", evidence)
    if expected is None:
        result.warn(f"the schema has no product key to compare with (MCU says {info.product_key})")
    elif info.product_key.lower() != expected.lower():
        result.fail(f"product key {info.product_key} differs from the schema's {expected}", evidence)
    if info.device_attributes is None:
        result.warn("66-byte device info of 2015 firmware: no attributes, no product secret (GAgent accepts it)")
    else:
        attrs = info.device_attributes
        if any(attrs[:7]):
            result.warn(f"device attributes {attrs.hex()}: the SDK leaves bytes 0-6 zero", evidence)
        if not attrs[7] & ATTRIBUTE_ALWAYS_SET:
            result.note(f"device attributes {attrs.hex()}: byte 7 bit 1 clear (the SDK always sets it)")
        if info.is_gateway:
            result.note("the MCU says it is a gateway (attributes byte 7 bit 0)")
    if info.product_secret is not None and not _is_hex(info.product_secret, 32):
        result.warn("the product secret is not 32 hex characters", evidence)
    result.summary = (
        f"protocol {info.protocol_version}, P0 {info.p0_version}, hw {info.hardware_version}, "
        f"sw {info.software_version}, key {info.product_key}"
    )
    return info


# ---- P0 --------------------------------------------------------------------------------------------------------


def decode_report(frame: Frame, product: Product) -> P0Message | None:
    """The status report (0x05, action 0x04/0x14) a frame carries, else None (pass-through, other commands)."""
    if frame.cmd != Command.P0_UP or not frame.payload:
        return None
    try:
        message = product.decode(frame.payload)
    except CodecError:
        return None
    return message if message.action in (Action.REPORT, Action.VAR_REPORT) else None


def all_flags(product: Product) -> int:
    return sum(1 << codec.datapoint.id for codec in product.codecs.values())


def check_read_reply(
    result: CheckResult,
    frame: Frame,
    product: Product,
    evidence: Evidence,
    requested: Collection[str] | None = None,
) -> dict[str, Value] | None:
    """§4.5/§4.6: a read reply decodes and carries every datapoint asked for (``requested``; default all, as
    the checker asks). The variable-length SDK pads its reply with stale bytes and echoes the request's flag
    byte: both accepted."""
    if frame.cmd != Command.P0_DOWN_ACK:
        result.fail(f"read answered with cmd 0x{frame.cmd:02x}, expected 0x04", evidence)
        return None
    try:
        message = product.decode(frame.payload)
    except CodecError as exc:
        result.fail(f"read reply does not decode: {exc}", evidence)
        return None
    wanted = Action.VAR_READ_REPLY if product.is_varlen else Action.READ_REPLY
    if message.action is not wanted:
        result.fail(f"read answered with P0 action 0x{message.action:02x}, expected 0x{wanted:02x}", evidence)
        return None
    wanted_names = list(product.codecs) if requested is None or not product.is_varlen else list(requested)
    missing = [name for name in wanted_names if name not in message.attrs]
    if missing:
        result.fail(f"read reply lacks {', '.join(missing)}", evidence)
        return None
    if message.anomalies:
        details = "; ".join(f"{a.name}: {a.reason}" for a in message.anomalies)
        result.warn(f"read reply holds values the schema does not allow: {details}", evidence)
    result.summary = f"all {len(wanted_names)} datapoints decoded ({len(frame.payload)}-byte P0)"
    return dict(message.attrs)


# ---- answers and notices -------------------------------------------------------------------------------------


def check_notice(
    result: CheckResult, answer: Frame | None, code: IllegalMessageCode, what: str, evidence: Sequence[Evidence]
) -> None:
    """§2.5: the MCU answers a bad frame with 0x12 carrying the error code (0x11 is the docs' role: warned)."""
    expected = f"an illegal-message notice (0x12, code 0x{code:02x})"
    if answer is None:
        result.fail(f"no answer to {what}; expected {expected}", *evidence)
        return
    if answer.cmd not in (Command.ILLEGAL_MESSAGE, Command.ILLEGAL_MESSAGE_REPLY):
        result.fail(f"{what} was answered with cmd 0x{answer.cmd:02x}; expected {expected}", *evidence)
        return
    got = answer.payload[0] if answer.payload else None
    if got != code:
        shown = "no code" if got is None else f"code 0x{got:02x}"
        result.fail(f"{what} was answered with {shown}; expected {expected}", *evidence)
        return
    if answer.cmd == Command.ILLEGAL_MESSAGE:
        result.warn(f"{what} was answered with 0x11 (the docs' module role); the SDK sends 0x12", *evidence)
    if len(answer.payload) != 1:
        result.warn(f"the notice carries {len(answer.payload)} bytes; the spec has 1", *evidence)


# ---- resends ---------------------------------------------------------------------------------------------------


def check_resends(
    result: CheckResult, transmissions: Sequence[tuple[float, Frame]], timing: Timing, evidence: Sequence[Evidence]
) -> None:
    """§3: an unacknowledged report is sent again, same sn, no sooner than 200 ms, 3 times in all (SDK)."""
    count = len(transmissions)
    if count < 2:
        result.fail(
            f"the report was sent once and never again although its ACK was withheld "
            f"(the SDK resends after {timing.ack_timeout_s * 1000:.0f} ms, {SDK_TRANSMISSIONS} transmissions)",
            *evidence,
        )
        return
    first = transmissions[0][1]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(transmissions)]
    shown = ", ".join(f"{gap * 1000:.0f}" for gap in gaps)
    for _t, frame in transmissions[1:]:
        if frame.payload != first.payload or frame.flags != first.flags:
            result.warn("a resend differs from the first transmission (the SDK resends identical bytes)", *evidence)
            break
    if min(gaps) < timing.ack_timeout_s - timing.resend_early_tolerance_s:
        result.fail(f"resent after {shown} ms: before the {timing.ack_timeout_s * 1000:.0f} ms ACK timeout", *evidence)
    elif max(gaps) > timing.resend_slow_s:
        result.warn(f"resent after {shown} ms: slower than the spec's {timing.ack_timeout_s * 1000:.0f} ms", *evidence)
    if count > DOC_TRANSMISSIONS:
        result.fail(f"{count} transmissions: more than the docs' 3 resends", *evidence)
    elif count == DOC_TRANSMISSIONS:
        result.warn(f"{count} transmissions: the docs allow 3 resends, the SDK does {SDK_TRANSMISSIONS - 1}", *evidence)
    result.summary = f"{count} transmissions of sn {first.sn}, {shown} ms apart"


# ---- stuffing ------------------------------------------------------------------------------------------------


def stuffing_problem(frame: Frame, raw: bytes) -> str | None:
    """Why a received frame with 0xFF bytes was not stuffed as §1.3 says, or None when it was (or has none)."""
    logical = encode_logical_frame(frame.cmd, frame.sn, frame.payload, frame.flags)
    if 0xFF not in logical[2:]:
        return None
    if encode_frame(frame.cmd, frame.sn, frame.payload, frame.flags) in raw:
        return None
    return f"cmd 0x{frame.cmd:02x} sn {frame.sn}: 0xFF sent without the 0x55 that must follow it"


def evidence_of(direction: str, frame: Frame, product: Product, t: float | None = None) -> Evidence:
    """Evidence for a decoded frame, shown as it should have been on the wire."""
    return evidence_frame(direction, encode_frame(frame.cmd, frame.sn, frame.payload, frame.flags), frame, product, t)


def canonical(product: Product, name: str, value: object) -> Value:
    """The value a decoder gives back for ``value`` (enum index -> label, 1 -> True ...)."""
    codec = product.codecs[name]
    return codec.from_raw(codec.to_raw(value))


def edge_values(product: Product, name: str, current: Value | None, *, quick: bool) -> list[Value]:
    """Values to write to one writable point: its edges (min/max, each enum member, both bools, all-00/all-FF
    binary), each different from the one before, ending back at ``current`` so that the board is left as found."""
    codec = product.codecs[name]
    dp = codec.datapoint
    if dp.data_type is DataType.BOOL:
        edges: list[Value] = [False, True]
    elif dp.data_type is DataType.ENUM:
        edges = list(dp.enum)
    elif dp.data_type is DataType.BINARY:
        edges = [bytes(dp.byte_len), b"\xff" * dp.byte_len]
    else:
        edges = [codec.from_raw(codec.raw_min), codec.from_raw(codec.raw_max)]
    values = [value for value in edges if value != current]
    if quick:
        values = values[-1:]
    if current is not None and values:
        values.append(current)
    return values
