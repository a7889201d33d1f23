"""Hypothesis strategies: random but valid product schemas (both formats) and values for them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from gizdev.codec.p0 import Product
from gizdev.schema import DataType, parse_schema

GROUPS = ("status_writable", "status_readonly", "alert", "fault")
RATIOS = [1, 1, 1, 2, 3, Decimal("0.1"), Decimal("0.01"), Decimal("0.5"), Decimal("0.25"), Decimal("0.001")]
ADDITIONS = [0, 0, -5, -13, 16, -2000, 100000, Decimal("-0.5"), Decimal("2.25")]
WIDTHS = {"uint8": 1, "uint16": 2, "uint32": 4}


@st.composite
def _point(draw: st.DrawFn, group: str) -> dict[str, Any]:
    """One datapoint description without id/position (assigned by the schema builder)."""
    kinds = ["bool"] if group in ("alert", "fault") else ["bool", "enum", "uint8", "uint16", "uint32", "binary"]
    kind = draw(st.sampled_from(kinds))
    point: dict[str, Any] = {"type": group, "data_type": kind}
    if kind == "enum":
        count = draw(st.integers(1, 9))
        point["enum"] = [f"m{index}" for index in range(count)]
        point["bits"] = max(1, (count - 1).bit_length())
    elif kind == "bool":
        point["bits"] = 1
    elif kind == "binary":
        point["bytes"] = draw(st.integers(1, 6))
    else:
        width = WIDTHS[kind]
        limit = (1 << (8 * width)) - 1
        low = draw(st.integers(0, limit))
        high = draw(st.integers(low, limit))
        point["bytes"] = width
        point["uint_spec"] = {
            "min": low,
            "max": high,
            "ratio": draw(st.sampled_from(RATIOS)),
            "addition": draw(st.sampled_from(ADDITIONS)),
        }
    return point


def _layout_group(points: list[dict[str, Any]], start: int) -> int:
    """Positions for one group: its bit region first, then its byte fields; returns the next free byte."""
    bit_points = [p for p in points if "bits" in p]
    bit_cursor = 0
    for point in bit_points:
        point["position"] = {
            "byte_offset": start + bit_cursor // 8,
            "bit_offset": bit_cursor,
            "len": point["bits"],
            "unit": "bit",
        }
        bit_cursor += point["bits"]
    cursor = start + (bit_cursor + 7) // 8
    for point in points:
        if "bytes" in point:
            point["position"] = {"byte_offset": cursor, "bit_offset": 0, "len": point["bytes"], "unit": "byte"}
            cursor += point["bytes"]
    return cursor


@st.composite
def schema_documents(draw: st.DrawFn, varlen: bool | None = None) -> dict[str, Any]:
    """A valid schema document; bit regions often span several bytes (up to ~24 bools/enums per group)."""
    if varlen is None:
        varlen = draw(st.booleans())
    groups = {group: draw(st.lists(_point(group), max_size=12 if group == GROUPS[0] else 6)) for group in GROUPS}
    if not any(groups.values()):
        groups["status_writable"] = [{"type": "status_writable", "data_type": "bool", "bits": 1}]
    ordered = [point for group in GROUPS for point in groups[group]]
    if varlen:  # variable-length products interleave types freely in id order
        ordered = draw(st.permutations(ordered))
    cursor = 0
    for group in GROUPS:
        cursor = _layout_group([p for p in ordered if p["type"] == group], cursor)
    attrs = []
    for index, point in enumerate(ordered):
        attr = {k: v for k, v in point.items() if k not in ("bits", "bytes")}
        attr.update(id=index, name=f"dp{index}_{point['data_type']}", display_name=f"point {index}")
        attrs.append(attr)
    return {
        "name": "random",
        "product_key": "ab" * 16,
        "protocolType": "var_len" if varlen else "standard",
        "entities": [{"id": 0, "name": "entity0", "attrs": attrs}],
    }


@st.composite
def products(draw: st.DrawFn, varlen: bool | None = None) -> Product:
    return Product(parse_schema(draw(schema_documents(varlen))))


@st.composite
def raw_values(draw: st.DrawFn, product: Product, names: list[str] | None = None) -> dict[str, int | bytes]:
    """Raw (wire) values within each point's declared range."""
    raws: dict[str, int | bytes] = {}
    for name in names if names is not None else list(product.codecs):
        codec = product.codecs[name]
        if codec.datapoint.data_type is DataType.BINARY:
            size = codec.datapoint.byte_len
            raws[name] = draw(st.binary(min_size=size, max_size=size))
        else:
            raws[name] = draw(st.integers(codec.raw_min, codec.raw_max))
    return raws


@st.composite
def app_values(draw: st.DrawFn, product: Product, names: list[str] | None = None) -> dict[str, Any]:
    """App values within range, derived from raw values by y = x * ratio + addition."""
    raws = draw(raw_values(product, names))
    return {name: product.codecs[name].from_raw(raw) for name, raw in raws.items()}
