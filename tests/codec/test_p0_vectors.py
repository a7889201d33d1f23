"""The vendor SDK's own frames (tests/data/vectors): our P0 codec must reproduce and read every one.

Where the SDK misbehaves (out-of-range truncation, refused enums, the read-only flag in a variable-length write,
stale read-reply bytes) the tests below say what we do instead.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

import pytest

from gizdev.codec.frame import encode_frame, parse_frame
from gizdev.codec.p0 import Action, Product, load_product
from gizdev.errors import PayloadError
from gizdev.schema import DataType
from tests.conftest import product_path, vectors_of_kind

REPORT_KINDS = ("status_report", "read_reply", "status_report_periodic")


@cache
def product(name: str) -> Product:
    return load_product(product_path(name))


def as_labels(prod: Product, values: dict[str, Any]) -> dict[str, Any]:
    """Vector values give enums as indexes; our decoder gives labels (or the index when it has no member)."""
    out = {}
    for name, value in values.items():
        members = prod.codecs[name].datapoint.enum
        out[name] = members[value] if members and value < len(members) else value
    return out


def p0_of(wire_hex: str) -> tuple[int, int, bytes]:
    frame = parse_frame(bytes.fromhex(wire_hex))
    return frame.cmd, frame.sn, frame.payload


def in_declared_range(prod: Product, values: dict[str, Any]) -> bool:
    for name, value in values.items():
        codec = prod.codecs[name]
        if codec.datapoint.data_type is DataType.ENUM and value >= len(codec.datapoint.enum):
            return False
        spec = codec.datapoint.uint_spec
        if spec is not None and not spec.min <= (Decimal(str(value)) - spec.addition) / spec.ratio <= spec.max:
            return False
    return True


def report_action(prod: Product, kind: str) -> Action:
    if kind == "read_reply":
        return Action.VAR_READ_REPLY if prod.is_varlen else Action.READ_REPLY
    return Action.VAR_REPORT if prod.is_varlen else Action.REPORT


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind(*REPORT_KINDS))
def test_report_decodes_to_the_vector_values(name: str, vector: dict[str, Any]) -> None:
    prod = product(name)
    cmd, sn, p0 = p0_of(vector["frame_hex"])
    assert (cmd, sn) == (vector["cmd"], vector["sn"])
    message = prod.decode(p0)
    assert message.action == vector["action"]
    if not in_declared_range(prod, vector["values"]):
        return  # test_out_of_range_reports covers these
    assert message.attrs == as_labels(prod, vector["values"])
    assert message.anomalies == ()


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind(*REPORT_KINDS))
def test_report_encodes_to_the_exact_frame(name: str, vector: dict[str, Any]) -> None:
    prod = product(name)
    if not in_declared_range(prod, vector["values"]):
        with pytest.raises(PayloadError):
            prod.encode(report_action(prod, vector["kind"]), vector["values"])
        return
    action = report_action(prod, vector["kind"])
    flags = vector.get("flags") if prod.is_varlen else None
    p0 = prod.encode(action, vector["values"], flags=flags)
    expected = bytes.fromhex(vector["frame_hex"])
    if "p0_meaningful_len" in vector:
        # SDK quirk: variable-length read replies are padded to the full status with stale bytes. We send only the
        # meaningful part, so our frame is shorter; the meaningful part must match byte for byte.
        _, _, sdk_p0 = p0_of(vector["frame_hex"])
        assert p0 == sdk_p0[: vector["p0_meaningful_len"]]
        assert vector["stale_tail_len"] == len(sdk_p0) - len(p0)
        return
    assert encode_frame(vector["cmd"], vector["sn"], p0) == expected


def _vector_range_fits(prod: Product, name: str, value: Any) -> tuple[bool, int]:
    """(does the SDK's truncated raw value equal the true raw value, the raw byte the SDK sends)."""
    codec = prod.codecs[name]
    if codec.datapoint.data_type is DataType.ENUM:
        return True, value
    spec = codec.datapoint.uint_spec
    if spec is None:
        return True, int(value)
    raw = int((Decimal(str(value)) - spec.addition) / spec.ratio)
    return 0 <= raw <= codec.raw_limit, raw & codec.raw_limit


@pytest.mark.parametrize(
    ("name", "vector"),
    [p for p in vectors_of_kind(*REPORT_KINDS) if not in_declared_range(product(p.values[0]), p.values[1]["values"])],
)
def test_out_of_range_reports(name: str, vector: dict[str, Any]) -> None:
    """The SDK sends out-of-range values truncated to the field; we refuse to encode them (test above) and decode
    what arrives, flagging every raw value outside the declared range as an anomaly. A value the SDK wrapped around
    (Motor_Speed -6 -> raw 0xFF) decodes to what the byte says (250), not to what the SDK's application held; one
    that wrapped back into the declared range (fan wendu 271 -> raw 35) cannot be told from a real reading."""
    prod = product(name)
    _, _, p0 = p0_of(vector["frame_hex"])
    message = prod.decode(p0)
    flagged = {anomaly.name for anomaly in message.anomalies}
    expected = as_labels(prod, vector["values"])
    expected_flags = set()
    for point, value in vector["values"].items():
        fits, raw = _vector_range_fits(prod, point, value)
        if fits:
            assert message.attrs[point] == expected[point]
        else:
            assert message.attrs[point] == prod.codecs[point].from_raw(raw)
            assert message.attrs[point] != value
        dp = prod.codecs[point].datapoint
        low, high = (dp.uint_spec.min, dp.uint_spec.max) if dp.uint_spec else (0, max(len(dp.enum) - 1, 1))
        if not low <= raw <= high:
            expected_flags.add(point)
    assert flagged == expected_flags
    if flagged:
        with pytest.raises(PayloadError, match="schema does not allow"):
            prod.decode(p0, strict=True)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("status_report_refused", "read_reply_refused"))
def test_invalid_enum_is_refused_like_the_sdk(name: str, vector: dict[str, Any]) -> None:
    """The SDK sends nothing when an enum holds a value without a member; our encoder raises instead."""
    prod = product(name)
    values = vector["values"] or vector["all_values"]
    action = report_action(prod, "read_reply" if vector["kind"].startswith("read") else "report")
    with pytest.raises(PayloadError) as caught:
        prod.encode(action, values)
    bad = [n for n, v in values.items() if prod.codecs[n].datapoint.enum and v >= len(prod.codecs[n].datapoint.enum)]
    assert caught.value.path == f"attrs/{bad[0]}"


def _quirky_varlen_write(prod: Product, vector: dict[str, Any]) -> bool:
    return prod.is_varlen and any(vector["flags"] >> dp.id & 1 and not dp.writable for dp in prod.schema.datapoints)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("write"))
def test_write_decodes_to_the_flagged_values(name: str, vector: dict[str, Any]) -> None:
    prod = product(name)
    cmd, sn, p0 = p0_of(vector["frame_hex"])
    assert (cmd, sn) == (3, vector["sn"])
    if _quirky_varlen_write(prod, vector):
        return  # test_varlen_write_with_read_only_flag
    message = prod.decode(p0)
    assert message.action == vector["action"]
    assert message.attrs == as_labels(prod, vector["values"])
    # Applying exactly the decoded values to the state before gives the state after, as in the SDK.
    assert {**as_labels(prod, vector["pre_values"]), **message.attrs} == as_labels(prod, vector["post_values"])
    out_of_range = not in_declared_range(prod, vector["values"])
    assert bool(message.anomalies) == (out_of_range or vector.get("attr_flags", 0) >> len(prod.schema.writable) > 0)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("write"))
def test_write_ack_and_following_report(name: str, vector: dict[str, Any]) -> None:
    """The SDK acks with an empty 0x04 (same sn), then reports the new state if anything changed."""
    prod = product(name)
    assert parse_frame(bytes.fromhex(vector["ack_hex"])) == (4, vector["sn"], 0, b"")
    if not vector["report_hex"]:
        # Nothing changed, or the new state holds an enum without a member, which the SDK refuses to report.
        assert vector["pre_values"] == vector["post_values"] or not in_declared_range(prod, vector["post_values"])
        return
    cmd, sn, p0 = p0_of(vector["report_hex"])
    assert (cmd, sn) == (5, vector["report_sn"])
    message = prod.decode(p0)
    post = as_labels(prod, vector["post_values"])
    assert message.attrs == {n: post[n] for n in message.attrs}
    if prod.is_varlen:
        changed = {n for n in post if post[n] != as_labels(prod, vector["pre_values"])[n]}
        assert set(message.attrs) == changed
    else:
        assert message.attrs == post


@pytest.mark.parametrize(
    ("name", "vector"), [p for p in vectors_of_kind("write") if _quirky_varlen_write(product(p.values[0]), p.values[1])]
)
def test_varlen_write_with_read_only_flag(name: str, vector: dict[str, Any]) -> None:
    """SDK quirk: a read-only flag in a variable-length write is ignored without skipping its value byte, so the
    SDK reads the next writable number from the wrong byte. We parse every flagged value at its own place, do not
    apply the read-only ones (reported as anomalies), and refuse a body too short for its flags."""
    prod = product(name)
    _, _, p0 = p0_of(vector["frame_hex"])
    flagged_read_only = {dp.name for dp in prod.schema.datapoints if vector["flags"] >> dp.id & 1 and not dp.writable}
    try:
        message = prod.decode(p0)
    except PayloadError as exc:
        assert "truncated" in exc.reason
        assert vector["flags"] & ~0x1F  # only the frame that also sets unused flag bits is short
        return
    assert flagged_read_only <= {a.name for a in message.anomalies}
    assert not flagged_read_only & set(message.attrs)
    bit_points = {dp.name for dp in prod.schema.datapoints if dp.is_bits}
    sdk = as_labels(prod, vector["values"])
    for point in bit_points & set(sdk):
        assert message.attrs[point] == sdk[point]
    assert set(message.attrs) == set(sdk)


@pytest.mark.parametrize(("name", "vector"), vectors_of_kind("read_reply"))
def test_read_request_of_each_read_reply(name: str, vector: dict[str, Any]) -> None:
    """The module's read request that produced each reply decodes, and our encoder rebuilds it exactly."""
    prod = product(name)
    cmd, sn, p0 = p0_of(vector["input_hex"])
    message = prod.decode(p0)
    if prod.is_varlen:
        assert message.action is Action.VAR_READ
        assert message.flags == vector["request_flags"]
        rebuilt = prod.encode(Action.VAR_READ, list(message.requested), flags=message.flags)
    else:
        assert message.action is Action.READ
        rebuilt = prod.encode("read")
    assert encode_frame(cmd, sn, rebuilt) == bytes.fromhex(vector["input_hex"])


def test_transparent_vectors() -> None:
    prod = product("gokit")
    (ack_vector,) = (v.values[1] for v in vectors_of_kind("transparent_ack"))
    _, _, p0 = p0_of(ack_vector["input_hex"])
    message = prod.decode(p0)
    assert message.action is Action.TRANSPARENT_DOWN
    assert message.data.hex() == ack_vector["transparent_hex"]
    up = next(v.values[1] for v in vectors_of_kind("mcu_request") if "passthrough_data_hex" in v.values[1])
    data = bytes.fromhex(up["passthrough_data_hex"])
    assert encode_frame(5, up["sn"], prod.encode("transparent_up", data=data)) == bytes.fromhex(up["frame_hex"])
    assert prod.decode(parse_frame(bytes.fromhex(up["frame_hex"])).payload).data == data


def test_unknown_action_is_an_error_not_a_crash() -> None:
    (vector,) = (v.values[1] for v in vectors_of_kind("p0_unknown_action_ack"))
    _, _, p0 = p0_of(vector["input_hex"])
    with pytest.raises(PayloadError, match="unknown action"):
        product("gokit").decode(p0)
