"""Property tests over randomly generated schemas: round trips, the fast path against the construct reference, and
hostile bytes that must only ever raise our own errors."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gizdev.codec.p0 import Action, Product
from gizdev.errors import PayloadError
from tests.codec.schemas import app_values, products, raw_values

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_fixed_report_round_trip(data: st.DataObject) -> None:
    product = data.draw(products(varlen=False))
    values = data.draw(app_values(product))
    for action in (Action.REPORT, Action.READ_REPLY):
        p0 = product.encode(action, values)
        assert p0[0] == action
        assert len(p0) == 1 + product.fixed.layout.status_len  # type: ignore[union-attr]
        message = product.decode(p0, strict=True)
        assert message.attrs == values
        assert message.action is action


@SETTINGS
@given(st.data())
def test_fast_path_matches_the_construct_declaration(data: st.DataObject) -> None:
    """Both directions, for values in range and for arbitrary status bytes (anomalies included)."""
    product = data.draw(products(varlen=False))
    fixed, status = product.fixed, product.status
    assert fixed is not None and status is not None
    raws = data.draw(raw_values(product))
    values = {name: product.codecs[name].from_raw(raw) for name, raw in raws.items()}
    by_id = {product.codecs[name].datapoint.id: raw for name, raw in raws.items()}
    assert status.encode(values) == fixed.build_status(by_id)

    blob = data.draw(st.binary(min_size=fixed.layout.status_len, max_size=fixed.layout.status_len))
    reference = fixed.parse_status(blob)
    fast_values, fast_anomalies = status.decode(blob, 0)
    expected = {dp.name: product.codecs[dp.name].from_raw(reference[dp.id]) for dp in product.schema.datapoints}
    assert fast_values == expected
    expected_anomalies = [product.codecs[dp.name].check_raw(reference[dp.id]) for dp in product.schema.datapoints]
    assert list(fast_anomalies) == [a for a in expected_anomalies if a is not None]


@SETTINGS
@given(st.data())
def test_write_round_trip(data: st.DataObject) -> None:
    product = data.draw(products())
    writable = [dp.name for dp in product.schema.writable]
    if not writable:
        return
    names = data.draw(st.lists(st.sampled_from(writable), min_size=1, unique=True))
    values = data.draw(app_values(product, names))
    message = product.decode(product.encode("write", values), strict=True)
    assert message.attrs == values
    assert message.action is (Action.VAR_WRITE if product.is_varlen else Action.WRITE)


@SETTINGS
@given(st.data())
def test_varlen_report_read_reply_and_read_round_trip(data: st.DataObject) -> None:
    product = data.draw(products(varlen=True))
    names = data.draw(st.lists(st.sampled_from(list(product.codecs)), unique=True))
    values = data.draw(app_values(product, names))
    for action in ("report", "read_reply"):
        message = product.decode(product.encode(action, values), strict=True)
        assert message.attrs == values
        assert message.flags == sum(1 << product.codecs[n].datapoint.id for n in names)
    read = product.decode(product.encode("read", names))
    assert set(read.requested) == set(names)


@SETTINGS
@given(st.data())
def test_varlen_periodic_flags_keep_unused_bits(data: st.DataObject) -> None:
    """The SDK's 10-minute report sets every flag bit; decoding ignores the bits that name no datapoint."""
    product = data.draw(products(varlen=True))
    values = data.draw(app_values(product))
    assert product.varlen is not None
    all_ones = (1 << (8 * product.varlen.flags_len)) - 1
    p0 = product.encode("report", values, flags=all_ones)
    assert p0[1 : 1 + product.varlen.flags_len] == b"\xff" * product.varlen.flags_len
    message = product.decode(p0, strict=True)
    assert message.attrs == values
    assert message.flags == all_ones


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(products(), st.binary(max_size=64), st.sampled_from([None, *list(Action)]))
def test_random_bytes_raise_only_payload_errors(product: Product, blob: bytes, action: Action | None) -> None:
    p0 = blob if action is None else bytes([action]) + blob
    try:
        message = product.decode(p0)
    except PayloadError as exc:
        assert exc.reason
        return
    assert isinstance(message.attrs, dict)
    for name in message.attrs:
        assert name in product.codecs


@SETTINGS
@given(products(), st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text() | st.floats()))
def test_random_attrs_raise_only_payload_errors(product: Product, attrs: dict[str, Any]) -> None:
    for action in ("report", "write", "read_reply"):
        try:
            p0 = product.encode(action, attrs)
        except PayloadError as exc:
            assert exc.path.startswith("attrs")
            continue
        assert set(product.decode(p0).attrs) == set(attrs)
