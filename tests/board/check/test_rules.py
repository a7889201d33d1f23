"""The checker's rules against what the vendor SDK (V03030000) really sent: every SDK frame must be accepted.
Then hand-made violations, each refused for its own reason.

Where our codec differs from the SDK (tests/data/vectors/README.md): variable-length read replies carry a stale
tail and echo the request's flag byte; the periodic report sets unused flag bits; a write that flags a read-only
point makes the SDK read the next value from the wrong byte (the report then shows what the SDK decoded, which
is what we compare with: post_values).
"""

from __future__ import annotations

from typing import Any

import pytest

from gizdev.board.check.result import CheckResult, Evidence, Status, render_table
from gizdev.board.check.rules import (
    Timing,
    check_device_info,
    check_notice,
    check_read_reply,
    check_resends,
    decode_report,
    edge_values,
    stuffing_problem,
)
from gizdev.codec.commands import IllegalMessageCode
from gizdev.codec.frame import Frame, parse_frame
from gizdev.codec.p0 import Product, load_product
from gizdev.codec.values import Value
from gizdev.schema.model import DataType
from tests.conftest import load_vectors, product_path, vector_meta, vectors_of_kind

PRODUCTS: dict[str, Product] = {}
NO_EVIDENCE = Evidence("received", "", "")


def product(name: str) -> Product:
    if name not in PRODUCTS:
        PRODUCTS[name] = load_product(product_path(name))
    return PRODUCTS[name]


def result() -> CheckResult:
    return CheckResult("test", "a rule under test")


def app_value(prod: Product, name: str, value: Any) -> Value:
    """The vectors give enum points by index; the decoder gives labels."""
    codec = prod.codecs[name]
    if codec.datapoint.data_type is DataType.ENUM and isinstance(value, int):
        return codec.from_raw(value)
    return value  # type: ignore[no-any-return]


# ---- the SDK's frames are accepted ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("device_info_reply"))
def test_sdk_device_info_passes(name: str, vector: dict[str, Any]) -> None:
    r = result()
    info = check_device_info(r, parse_frame(bytes.fromhex(vector["frame_hex"])), product(name), NO_EVIDENCE)
    assert r.status is Status.PASS, r.findings
    assert info is not None and info.product_key == vector_meta(name)["product_key"]


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("read_reply"))
def test_sdk_read_replies_pass(name: str, vector: dict[str, Any]) -> None:
    prod = product(name)
    frame = parse_frame(bytes.fromhex(vector["frame_hex"]))
    requested = None
    if "request_flags" in vector:  # variable length: the points that were asked for
        requested = [n for n, c in prod.codecs.items() if vector["request_flags"] >> c.datapoint.id & 1]
    r = result()
    state = check_read_reply(r, frame, prod, NO_EVIDENCE, requested)
    assert state is not None
    if vector.get("out_of_range"):
        # The SDK truncates out-of-range values to the field's width (§4.2): a warning if what arrives is still
        # outside the schema, never a failure.
        assert r.status in (Status.PASS, Status.WARN), r.findings
        return
    assert r.status is Status.PASS, r.findings
    for point, value in vector["values"].items():
        assert state[point] == app_value(prod, point, value)


def stale_tail_vectors() -> list[Any]:
    return [p for p in vectors_of_kind("read_reply") if p.values[1].get("stale_tail_len")]


def test_the_fan_vectors_do_carry_stale_tails() -> None:
    assert len(stale_tail_vectors()) > 10  # so the test above covers them


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("write"))
def test_sdk_reports_after_writes_carry_the_state_after(name: str, vector: dict[str, Any]) -> None:
    if not vector.get("report_hex"):
        # Nothing changed (the SDK sends no report, §3), or an invalid enum value stops the report.
        assert vector["pre_values"] == vector["post_values"] or vector.get("out_of_range")
        return
    if vector.get("out_of_range"):
        return  # the report carries truncated values (§4.2), compared by the codec's own vector tests
    prod = product(name)
    message = decode_report(parse_frame(bytes.fromhex(vector["report_hex"])), prod)
    assert message is not None
    post = vector["post_values"]
    expected_points = set(prod.codecs) if not prod.is_varlen else set(message.attrs)
    for point in expected_points:
        assert message.attrs[point] == app_value(prod, point, post[point])


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("status_report", "status_report_periodic"))
def test_sdk_reports_decode(name: str, vector: dict[str, Any]) -> None:
    prod = product(name)
    message = decode_report(parse_frame(bytes.fromhex(vector["frame_hex"])), prod)
    assert message is not None
    if vector.get("out_of_range"):
        return  # truncated values (§4.2)
    for point, value in vector["values"].items():
        assert message.attrs[point] == app_value(prod, point, value)


def test_sdk_resend_timing_passes() -> None:
    (vector,) = [v for v in load_vectors("gokit") if v["kind"] == "report_resend"]
    transmissions = [(item["t_ms"] / 1000, parse_frame(bytes.fromhex(item["hex"]))) for item in vector["frames"]]
    r = result()
    check_resends(r, transmissions, Timing(), [])
    assert r.status is Status.PASS, r.findings
    assert r.summary.startswith("3 transmissions of sn 112")


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("error_reply"))
def test_sdk_illegal_message_answers_pass(name: str, vector: dict[str, Any]) -> None:
    request = bytes.fromhex(vector["input_hex"])
    # The heartbeat input's checksum is wrong (00+05+07+42 = 0x4e, it says 0x14); the other input is cmd 0x40.
    code = IllegalMessageCode.CHECKSUM if request[4] == 0x07 else IllegalMessageCode.COMMAND
    answer = parse_frame(bytes.fromhex(vector["frame_hex"]))
    r = result()
    check_notice(r, answer, code, "the input", [])
    assert r.status is Status.PASS, r.findings
    assert answer.sn == request[5]


ESCAPED = [
    p
    for p in vectors_of_kind("status_report", "read_reply", "status_report_periodic", "heartbeat_reply")
    if p.values[1].get("escaped")
]


def test_there_are_escaped_sdk_frames() -> None:
    assert len(ESCAPED) > 10


@pytest.mark.parametrize(("name", "vector"), ESCAPED)
def test_sdk_stuffing_passes_and_its_unstuffed_form_does_not(name: str, vector: dict[str, Any]) -> None:
    wire = bytes.fromhex(vector["frame_hex"])
    logical = bytes.fromhex(vector["frame_unescaped_hex"])
    frame = parse_frame(wire)
    assert stuffing_problem(frame, wire) is None
    assert stuffing_problem(frame, logical) is not None


# ---- violations are refused -------------------------------------------------------------------------------------


def gokit_device_info(**changes: str) -> Frame:
    (vector,) = [v for v in load_vectors("gokit") if v["kind"] == "device_info_reply"][:1]
    frame = parse_frame(bytes.fromhex(vector["frame_hex"]))
    payload = bytearray(frame.payload)
    offsets = {"protocol": 0, "p0": 8, "hardware": 16, "key": 32}
    for field, text in changes.items():
        start = offsets[field]
        payload[start : start + len(text)] = text.encode()
    return frame._replace(payload=bytes(payload))


def test_device_info_violations() -> None:
    gokit = product("gokit")
    r = result()
    check_device_info(r, gokit_device_info(key="fedcba9876543210fedcba9876543210"), gokit, NO_EVIDENCE)
    assert r.status is Status.FAIL and "differs from the schema's" in r.headline()
    r = result()
    check_device_info(r, gokit_device_info(key="0123456789abcdef0123456789abcdeZ"), gokit, NO_EVIDENCE)
    assert r.status is Status.FAIL and "not 32 hex characters" in r.headline()
    r = result()
    check_device_info(r, gokit_device_info(hardware="03 10100"), gokit, NO_EVIDENCE)
    assert r.status is Status.FAIL and "hardware version" in r.headline()
    r = result()
    check_device_info(r, gokit_device_info(p0="00000004"), gokit, NO_EVIDENCE)  # 2015 firmware: warned only
    assert r.status is Status.WARN and "P0 version" in r.headline()
    truncated = gokit_device_info()
    for payload in (truncated.payload[:80], truncated.payload + b"\x00", b""):
        r = result()
        check_device_info(r, truncated._replace(payload=payload), gokit, NO_EVIDENCE)
        assert r.status is Status.FAIL and "does not decode" in r.headline(), payload


def test_read_reply_violations() -> None:
    gokit, fan = product("gokit"), product("fan")
    good = parse_frame(bytes.fromhex("ffff001004010000030000000000000000000018"))  # vector read_reply-0001
    r = result()
    check_read_reply(r, good._replace(payload=good.payload[:-1]), gokit, NO_EVIDENCE)
    assert r.status is Status.FAIL and "does not decode" in r.headline()
    r = result()
    check_read_reply(r, good._replace(cmd=0x05), gokit, NO_EVIDENCE)
    assert r.status is Status.FAIL and "cmd 0x05" in r.headline()
    r = result()
    check_read_reply(r, good._replace(payload=b"\x04" + good.payload[1:]), gokit, NO_EVIDENCE)  # a report, not a reply
    assert r.status is Status.FAIL and "action 0x04" in r.headline()
    # Fan: all five points asked for, the reply names only work_mod (flag 0x02) with its value 0 and a tail.
    r = result()
    check_read_reply(r, Frame(0x04, 1, 0, bytes.fromhex("130200000000")), fan, NO_EVIDENCE)
    assert r.status is Status.FAIL and "lacks windspeed, wendu, wemdu_kongzhi, shidu" in r.headline()


def frames_at(*times_ms: float, sn: int = 5) -> list[tuple[float, Frame]]:
    frame = parse_frame(bytes.fromhex("ffff00100570000004008f9b6405004e23000d9a"))._replace(sn=sn)
    return [(t / 1000, frame) for t in times_ms]


@pytest.mark.parametrize(
    ("times", "status", "words"),
    [
        ((0,), Status.FAIL, "sent once"),
        ((0, 100, 200), Status.FAIL, "before the 200 ms"),
        ((0, 201, 402, 603, 804), Status.FAIL, "more than the docs' 3 resends"),
        ((0, 201, 402, 603), Status.WARN, "the docs allow 3 resends"),
        ((0, 2000, 4000), Status.WARN, "slower than"),
        ((0, 300, 600), Status.PASS, ""),  # GoKit 2 firmware: 300 ms
        ((0, 210), Status.PASS, ""),  # "at most" 2 resends
    ],
)
def test_resend_rules(times: tuple[float, ...], status: Status, words: str) -> None:
    r = result()
    check_resends(r, frames_at(*times), Timing(), [])
    assert r.status is status, r.findings
    assert words in r.headline()


def test_notice_rules() -> None:
    def judged(answer: Frame | None) -> CheckResult:
        r = result()
        check_notice(r, answer, IllegalMessageCode.CHECKSUM, "a bad frame", [])
        return r

    assert judged(Frame(0x12, 9, 0, b"\x01")).status is Status.PASS
    assert judged(Frame(0x11, 9, 0, b"\x01")).status is Status.WARN  # the docs' role
    assert "code 0x02" in judged(Frame(0x12, 9, 0, b"\x02")).headline()
    assert "no code" in judged(Frame(0x12, 9, 0, b"")).headline()
    assert "cmd 0x08" in judged(Frame(0x08, 9, 0, b"")).headline()
    assert judged(None).status is Status.FAIL


def test_stuffing_rule_on_hostile_bytes() -> None:
    frame = Frame(0x08, 0xFF, 0, b"")
    assert stuffing_problem(frame, b"") is not None
    assert stuffing_problem(frame, bytes.fromhex("00ffff000508ff5500000c00")) is None  # found inside other bytes
    assert stuffing_problem(Frame(0x08, 0x10, 0, b""), b"") is None  # nothing to stuff


def test_edge_values_end_where_they_started() -> None:
    gokit = product("gokit")
    assert edge_values(gokit, "LED_OnOff", False, quick=False) == [True, False]
    assert edge_values(gokit, "LED_Color", "Yellow", quick=False) == ["Customize", "Purple", "Pink", "Yellow"]
    assert edge_values(gokit, "Motor_Speed", -5, quick=False) == [5, -5]  # raw 0..10, addition -5 (§6)
    assert edge_values(gokit, "LED_R", 7, quick=False) == [0, 254, 7]
    assert edge_values(gokit, "LED_R", 7, quick=True) == [254, 7]


def test_table_shows_failure_evidence() -> None:
    r = result()
    r.fail("something broke", Evidence("sent", "ffff0005071000001c", {"cmd": 7}, 0.5))
    ok = CheckResult("fine", "works")
    ok.summary = "all good"
    text = render_table([ok, r])
    lines = text.splitlines()
    assert lines[1].split()[:2] == ["fine", "PASS"] and lines[2].split()[:2] == ["test", "FAIL"]
    assert "ffff0005071000001c" in text and '{"cmd": 7}' in text and "1 failed" in text
