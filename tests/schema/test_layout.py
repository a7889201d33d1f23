"""Fixed-length dev_status layout (serial protocol §4.3-§4.5, §5): facts of the example products and every
layout rejection, with its JSON pointer."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gizdev.errors import SchemaError
from gizdev.schema import (
    AttrType,
    BitRegion,
    ByteField,
    Datapoint,
    DataType,
    FixedLayout,
    Position,
    ProductSchema,
    UintSpec,
    compute_layout,
    load_schema,
    parse_schema,
    schema_to_json,
)
from gizdev.schema import layout as layout_module
from tests.conftest import REPO_ROOT, SHARED_EXAMPLES, product_path

GOKIT_PATH = REPO_ROOT / "protocols" / "gokit.json"
LIGHT_PATH = product_path("light")
FAN_PATH = product_path("fan")
A = "/entities/0/attrs"

needs_shared = pytest.mark.shared_examples  # skipped in a plain clone, with one reason (tests/conftest.py)

VALID_FILES = [
    pytest.param(GOKIT_PATH, id="gokit.json"),
    pytest.param(LIGHT_PATH, id="light-sdk-fixed"),
    pytest.param(FAN_PATH, id="fan-sdk-varlen"),
    *(
        pytest.param(SHARED_EXAMPLES / name, id=name, marks=needs_shared)
        for name in ("gizkit_soc_pet.json", "ph803w.json", "clearlight.json")
    ),
]


def read_doc(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


GOKIT_DOC = read_doc(GOKIT_PATH)
LIGHT_DOC = read_doc(LIGHT_PATH)
FAN_DOC = read_doc(FAN_PATH)


def pointer_by_id(dp: Datapoint) -> str:
    return f"{A}/{dp.id}"  # attrs are in id order in every file used here


def layout_of(schema: ProductSchema) -> FixedLayout:
    return compute_layout(schema.datapoints, pointer_by_id, writable_first=not schema.is_varlen)


def mutated(doc: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    for pointer, value in edits.items():
        *parents, last = (int(p) if p.isdigit() else p for p in pointer.strip("/").split("/"))
        target: Any = new
        for step in parents:
            target = target[step]
        target[last] = copy.deepcopy(value)
    return new


def regions(layout: FixedLayout) -> list[tuple[int, int, AttrType, list[str]]]:
    return [(r.start, r.size, r.type, [dp.name for dp in r.members]) for r in layout.regions]


def byte_fields(layout: FixedLayout) -> list[tuple[str, int, int]]:
    return [(f.datapoint.name, f.start, f.size) for f in layout.items if isinstance(f, ByteField)]


def oracle(doc: dict[str, Any]) -> tuple[int, int]:
    """(status_len, writable_len) straight from the JSON positions, by the codec rule of spec §4.3/§5."""
    ends: dict[str, int] = {}
    starts: dict[str, int] = {}
    bits: dict[str, int] = {}
    byte_ends: list[tuple[str, int]] = []
    for attr in doc["entities"][0]["attrs"]:
        pos = attr["position"]
        if pos["unit"] == "bit":
            group = attr["type"]
            starts[group] = min(starts.get(group, pos["byte_offset"]), pos["byte_offset"])
            bits[group] = max(bits.get(group, 0), pos["bit_offset"] + pos["len"])
        else:
            byte_ends.append((attr["type"], pos["byte_offset"] + pos["len"]))
    for group, start in starts.items():
        ends[group] = start + (bits[group] + 7) // 8
    all_ends = list(ends.items()) + byte_ends
    status = max(end for _, end in all_ends)
    writable = max((end for group, end in all_ends if group == "status_writable"), default=0)
    return status, writable


# ---- layout facts of the example products -------------------------------------------------------------


def test_gokit_layout() -> None:
    layout = layout_of(load_schema(GOKIT_PATH))
    assert layout.status_len == 10
    assert layout.writable_len == 5
    assert regions(layout) == [
        (0, 1, AttrType.WRITABLE, ["LED_OnOff", "LED_Color"]),
        (5, 1, AttrType.READONLY, ["Infrared"]),
        (8, 1, AttrType.ALERT, ["Alert_1", "Alert_2"]),
        (9, 1, AttrType.FAULT, ["Fault_LED", "Fault_Motor", "Fault_TemHum", "Fault_IR"]),
    ]
    assert byte_fields(layout) == [
        ("LED_R", 1, 1),
        ("LED_G", 2, 1),
        ("LED_B", 3, 1),
        ("Motor_Speed", 4, 1),
        ("Temperature", 6, 1),
        ("Humidity", 7, 1),
    ]
    assert [item.start for item in layout.items] == list(range(10))


@needs_shared
def test_gizkit_soc_pet_layout_is_gokit_layout() -> None:
    theirs = layout_of(load_schema(SHARED_EXAMPLES / "gizkit_soc_pet.json"))
    ours = layout_of(load_schema(GOKIT_PATH))
    assert (theirs.status_len, theirs.writable_len) == (10, 5)
    assert regions(theirs) == regions(ours)
    assert byte_fields(theirs) == byte_fields(ours)


def test_light_sdk_fixed_layout() -> None:
    layout = layout_of(load_schema(LIGHT_PATH))
    assert layout.status_len == 38
    assert layout.writable_len == 24
    assert len(layout.regions) == 1
    region = layout.regions[0]
    assert (region.start, region.size, region.type) == (0, 2, AttrType.WRITABLE)
    assert [dp.name for dp in region.members][8:] == ["switch1", "switch2", "switch3", "switch4", "switch5", "enum"]
    assert len(region.members) == 14
    fields = byte_fields(layout)
    assert fields[0] == ("Led_T", 2, 1)
    assert ("data1", 14, 2) in fields
    assert ("data5", 22, 2) in fields
    assert ("temperature", 24, 1) in fields
    assert fields[-1] == ("read5", 36, 2)


@needs_shared
def test_clearlight_layout() -> None:
    path = SHARED_EXAMPLES / "clearlight.json"
    layout = layout_of(load_schema(path))
    assert layout.status_len == 12
    assert layout.writable_len == 10
    assert (layout.status_len, layout.writable_len) == oracle(read_doc(path))
    assert regions(layout) == [
        (
            0,
            1,
            AttrType.WRITABLE,
            ["EXTERNAL_LIGHT", "INTERNAL_LIGHT", "PRE_TIME_FLAG", "power_flag", "cf_flag", "UVB_FLAG", "N_FLAG"],
        )
    ]
    assert byte_fields(layout)[-3:] == [("SN", 9, 1), ("CURRENT_TEMP", 10, 1), ("heart_pulse", 11, 1)]


@needs_shared
def test_ph803w_layout() -> None:
    layout = layout_of(load_schema(SHARED_EXAMPLES / "ph803w.json"))
    assert layout.status_len == 9
    assert layout.writable_len == 0
    assert regions(layout) == [(0, 1, AttrType.READONLY, ["pH_OUT", "mV_OUT", "EC_OUT", "TEMP_OUT"])]
    assert byte_fields(layout) == [("pH", 1, 2), ("mV", 3, 2), ("EC", 5, 2), ("TEMP", 7, 2)]


def test_fan_varlen_layout() -> None:
    schema = load_schema(FAN_PATH)
    layout = layout_of(schema)  # var_len: writable_first=False
    assert layout.status_len == 4
    assert layout.writable_len == 3
    assert regions(layout) == [(0, 1, AttrType.WRITABLE, ["windspeed", "work_mod"])]
    assert byte_fields(layout) == [("wendu", 1, 1), ("wemdu_kongzhi", 2, 1), ("shidu", 3, 1)]
    # the same positions cannot be a fixed-length layout: read-only wendu sits inside the writable part
    with pytest.raises(SchemaError) as info:
        compute_layout(schema.datapoints, pointer_by_id, writable_first=True)
    assert info.value.pointer == f"{A}/2/position/byte_offset"
    assert "writable part (bytes 0..2)" in info.value.reason


@pytest.mark.parametrize("path", VALID_FILES)
def test_layout_matches_positions(path: Path) -> None:
    layout = layout_of(load_schema(path))
    assert (layout.status_len, layout.writable_len) == oracle(read_doc(path))
    starts = [item.start for item in layout.items]
    assert starts == sorted(starts)
    assert layout.regions == tuple(item for item in layout.items if isinstance(item, BitRegion))


# ---- layout rejections (through the loader, with JSON pointers) -----------------------------------------


def _case(doc: dict[str, Any], edits: dict[str, Any], pointer: str, fragment: str, id: str) -> Any:
    return pytest.param(doc, edits, pointer, fragment, id=id)


LAYOUT_REJECTIONS = [
    _case(GOKIT_DOC, {f"{A}/3/position/byte_offset": 1}, f"{A}/3/position", "overlaps 'LED_R' (bytes 1..1)", "bytes"),
    _case(
        LIGHT_DOC,
        {f"{A}/27/position/byte_offset": 15},
        f"{A}/27/position",
        "overlaps 'data1' (bytes 14..15)",
        "uint16-overlaps-uint16",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/2/position/byte_offset": 0},
        f"{A}/2/position",
        "overlaps the status_writable bit region (bytes 0..0)",
        "byte-on-writable-region",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/8/position/byte_offset": 8},
        f"{A}/8/position",
        "overlaps the alert bit region (bytes 8..8)",
        "byte-on-alert-region",
    ),
    _case(
        LIGHT_DOC,
        {f"{A}/14/position/byte_offset": 1},
        f"{A}/14/position",
        "overlaps the status_writable bit region (bytes 0..1)",
        "byte-on-second-byte-of-2-byte-region",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/6/position/byte_offset": 4},
        f"{A}/5/position",
        "overlaps the status_readonly bit region (bytes 4..4)",
        "region-on-byte",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/9/position/byte_offset": 9, f"{A}/10/position/byte_offset": 9},
        f"{A}/11/position",
        "overlaps the alert bit region (bytes 9..9)",
        "region-on-region",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/1/position/bit_offset": 0},
        f"{A}/1/position/bit_offset",
        "overlaps another point's bits",
        "enum-on-bool-bits",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/12/position/bit_offset": 0},
        f"{A}/12/position/bit_offset",
        "overlaps another point's bits",
        "two-fault-bools-same-bit",
    ),
    _case(
        LIGHT_DOC,
        {f"{A}/13/position/bit_offset": 12},
        f"{A}/13/position/bit_offset",
        "overlaps another point's bits",
        "enum-straddles-a-bool",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/10/position/byte_offset": 9},
        f"{A}/10/position/byte_offset",
        "bit 1 of the alert bit region starting at byte 8 is in byte 8, not 9",
        "bit-point-in-wrong-byte",
    ),
    _case(
        LIGHT_DOC,
        {f"{A}/8/position/byte_offset": 0},
        f"{A}/8/position/byte_offset",
        "bit 8 of the status_writable bit region starting at byte 0 is in byte 1, not 0",
        "bit-8-in-byte-0",
    ),
    _case(
        LIGHT_DOC,
        {f"{A}/0/position/byte_offset": 1},
        f"{A}/0/position/byte_offset",
        "is in byte 0, not 1",
        "bit-0-in-byte-1",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/7/position/byte_offset": 2, f"{A}/3/position/byte_offset": 6},
        f"{A}/7/position/byte_offset",
        "non-writable data lies inside the writable part (bytes 0..6)",
        "readonly-number-inside-writable-part",
    ),
    _case(
        GOKIT_DOC,
        {f"{A}/4/position/byte_offset": 10},
        f"{A}/6/position/byte_offset",
        "inside the writable part (bytes 0..10)",
        "readonly-region-inside-writable-part",
    ),
    _case(
        FAN_DOC,
        {"/protocolType": "standard"},
        f"{A}/2/position/byte_offset",
        "inside the writable part (bytes 0..2)",
        "fan-as-fixed-length",
    ),
    _case(
        GOKIT_DOC,
        {
            f"{A}/8/data_type": "binary",
            f"{A}/8/position": {"byte_offset": 4000, "bit_offset": 0, "len": 200, "unit": "byte"},
        },
        A,
        "device status of 4200 bytes exceeds 4096",
        "status-too-large",
    ),
]


@pytest.mark.parametrize(("doc", "edits", "pointer", "fragment"), LAYOUT_REJECTIONS)
def test_layout_rejection(doc: dict[str, Any], edits: dict[str, Any], pointer: str, fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        parse_schema(mutated(doc, edits), source="product.json")
    assert info.value.pointer == pointer
    assert fragment in info.value.reason
    assert str(info.value).startswith(f"product.json: {pointer}: ")


def test_non_writable_inside_writable_part_is_fine_for_var_len() -> None:
    edits = {f"{A}/7/position/byte_offset": 2, f"{A}/3/position/byte_offset": 6, "/protocolType": "var_len"}
    schema = parse_schema(mutated(GOKIT_DOC, edits))
    assert schema.is_varlen
    assert schema["Temperature"].position.byte_offset == 2
    assert schema["LED_G"].position.byte_offset == 6
    assert [dp.name for dp in schema.writable] == ["LED_OnOff", "LED_Color", "LED_R", "LED_G", "LED_B", "Motor_Speed"]
    layout = layout_of(schema)
    assert layout.writable_len == 7
    assert layout.status_len == 10


def test_status_of_exactly_the_cap_is_accepted() -> None:
    assert layout_module.MAX_STATUS_LEN == 4096
    edits = {
        f"{A}/8/data_type": "binary",
        f"{A}/8/position": {"byte_offset": 4000, "bit_offset": 0, "len": 96, "unit": "byte"},
    }
    schema = parse_schema(mutated(GOKIT_DOC, edits))
    assert schema["Humidity"].byte_len == 96
    assert layout_of(schema).status_len == 4096


def test_bit_region_of_the_cap_is_accepted() -> None:
    # two alert bools, at bit 0 and at the highest bit_offset allowed: one 4096-byte region, the whole cap
    def alert(dp_id: int, bit: int) -> dict[str, Any]:
        position = {"byte_offset": bit // 8, "bit_offset": bit, "len": 1, "unit": "bit"}
        return {"id": dp_id, "name": f"a{dp_id}", "type": "alert", "data_type": "bool", "position": position}

    doc = {"entities": [{"attrs": [alert(0, 0), alert(1, 8 * 4096 - 1)]}]}
    layout = layout_of(parse_schema(doc))
    assert layout.status_len == 4096
    assert layout.writable_len == 0
    assert [(r.start, r.size, r.type) for r in layout.regions] == [(0, 4096, AttrType.ALERT)]


def test_fault_region_moved_past_a_gap() -> None:
    edits = {f"{A}/{i}/position/byte_offset": 20 for i in range(11, 15)}
    layout = layout_of(parse_schema(mutated(GOKIT_DOC, edits)))
    assert layout.status_len == 21
    assert regions(layout)[-1] == (20, 1, AttrType.FAULT, ["Fault_LED", "Fault_Motor", "Fault_TemHum", "Fault_IR"])


def test_enum_straddling_a_byte_boundary_makes_a_2_byte_region() -> None:
    # LED_Color (2 bits) at bits 7-8: the region is bits 0..8, i.e. bytes 0..1, so it collides with LED_R at 1.
    edits = {f"{A}/1/position/bit_offset": 7}
    with pytest.raises(SchemaError) as info:
        parse_schema(mutated(GOKIT_DOC, edits))
    assert info.value.pointer == f"{A}/2/position"
    assert "overlaps the status_writable bit region (bytes 0..1)" in info.value.reason


# ---- compute_layout directly ------------------------------------------------------------------------------


def bit_point(dp_id: int, kind: AttrType, byte: int, bit: int, length: int = 1) -> Datapoint:
    enum = tuple(f"m{i}" for i in range(1 << length)) if length > 1 else ()
    return Datapoint(
        id=dp_id,
        name=f"p{dp_id}",
        type=kind,
        data_type=DataType.ENUM if enum else DataType.BOOL,
        position=Position(byte_offset=byte, bit_offset=bit, len=length, unit="bit"),
        enum=enum,
    )


def byte_point(dp_id: int, kind: AttrType, byte: int, size: int = 1) -> Datapoint:
    return Datapoint(
        id=dp_id,
        name=f"p{dp_id}",
        type=kind,
        data_type=DataType.UINT8 if size == 1 else DataType.BINARY,
        position=Position(byte_offset=byte, bit_offset=0, len=size, unit="byte"),
        uint_spec=UintSpec(0, 255, Decimal(1), Decimal(0)) if size == 1 else None,
    )


W, R, AL, F = AttrType.WRITABLE, AttrType.READONLY, AttrType.ALERT, AttrType.FAULT


def custom_pointer(dp: Datapoint) -> str:
    return f"/custom/{dp.name}"


def test_empty_layout() -> None:
    assert compute_layout((), custom_pointer) == FixedLayout((), 0, 0)


def test_region_size_follows_highest_bit() -> None:
    cases = [
        ((bit_point(0, W, 0, 0),), 1),
        ((bit_point(0, W, 0, 0), bit_point(1, W, 0, 7)), 1),
        ((bit_point(0, W, 0, 0), bit_point(1, W, 1, 8)), 2),
        ((bit_point(0, W, 0, 0), bit_point(1, W, 1, 15)), 2),
        ((bit_point(0, W, 0, 0), bit_point(1, W, 2, 16)), 3),
        ((bit_point(0, W, 0, 7, 2),), 2),  # enum at bits 7-8 straddles into a second byte
    ]
    for points, size in cases:
        layout = compute_layout(points, custom_pointer)
        assert [(r.start, r.size) for r in layout.regions] == [(0, size)], points
        assert layout.status_len == size
        assert layout.writable_len == size


def test_region_starts_at_smallest_byte_offset() -> None:
    points = (byte_point(0, W, 0), bit_point(1, R, 3, 9), bit_point(2, R, 2, 1), byte_point(3, R, 1))
    layout = compute_layout(points, custom_pointer)
    assert regions(layout) == [(2, 2, R, ["p1", "p2"])]
    assert layout.status_len == 4
    assert layout.writable_len == 1
    assert [type(item) for item in layout.items] == [ByteField, ByteField, BitRegion]


def test_pointer_callback_names_the_offender() -> None:
    points = (byte_point(0, W, 0), byte_point(1, W, 0))
    with pytest.raises(SchemaError) as info:
        compute_layout(points, custom_pointer)
    assert info.value.pointer == "/custom/p1/position"
    assert "overlaps 'p0' (bytes 0..0)" in info.value.reason


def test_binary_overlap_on_its_last_byte() -> None:
    # a 4-byte binary at 0 and a uint8 at 3 (with a free uint8 at 5 after both)
    points = (byte_point(0, W, 0, 4), byte_point(1, W, 5), byte_point(2, W, 3))
    with pytest.raises(SchemaError) as info:
        compute_layout(points, custom_pointer)
    assert info.value.pointer == "/custom/p2/position"
    assert "(bytes 0..3)" in info.value.reason


def test_writable_first_is_the_default() -> None:
    points = (byte_point(0, R, 0), byte_point(1, W, 1))
    with pytest.raises(SchemaError) as info:
        compute_layout(points, custom_pointer)
    assert info.value.pointer == "/custom/p0/position/byte_offset"
    layout = compute_layout(points, custom_pointer, writable_first=False)
    assert (layout.status_len, layout.writable_len) == (2, 2)


def test_bits_of_different_types_never_share_a_region() -> None:
    points = (bit_point(0, W, 0, 0), bit_point(1, AL, 1, 0), bit_point(2, F, 2, 0), bit_point(3, R, 3, 0))
    layout = compute_layout(points, custom_pointer)
    assert regions(layout) == [(0, 1, W, ["p0"]), (1, 1, AL, ["p1"]), (2, 1, F, ["p2"]), (3, 1, R, ["p3"])]
    assert layout.writable_len == 1
    # put the read-only bit in byte 0 bit 1 (free in the writable region): still an overlap of two regions
    clash = (bit_point(0, W, 0, 0), bit_point(1, R, 0, 1))
    with pytest.raises(SchemaError) as info:
        compute_layout(clash, custom_pointer)
    assert info.value.pointer == "/custom/p1/position"
    assert "overlaps the status_writable bit region (bytes 0..0)" in info.value.reason


# ---- property: any group-ordered schema has exactly the layout it was built with -------------------------

GROUP_ORDER = ("status_writable", "status_readonly", "alert", "fault")


@st.composite
def group_ordered(draw: st.DrawFn) -> tuple[dict[str, Any], int, int, list[tuple[int, int, str]]]:
    """A fixed-length document laid out as §4.5 prescribes, with its expected status/writable length and
    regions (start, size, type)."""
    attrs: list[dict[str, Any]] = []
    cursor = 0
    writable_len = 0
    expected_regions: list[tuple[int, int, str]] = []
    for group in GROUP_ORDER:
        kinds = ["bool"] if group in ("alert", "fault") else ["bool", "enum", "uint8", "uint16", "uint32", "binary"]
        points = draw(st.lists(st.sampled_from(kinds), max_size=10))
        bit_cursor = 0
        for kind in points:
            if kind not in ("bool", "enum"):
                continue
            count = draw(st.integers(1, 9)) if kind == "enum" else 0
            length = max(1, (count - 1).bit_length()) if kind == "enum" else 1
            attr: dict[str, Any] = {"type": group, "data_type": kind}
            if kind == "enum":
                attr["enum"] = [f"v{i}" for i in range(count)]
            attr["position"] = {
                "byte_offset": cursor + bit_cursor // 8,
                "bit_offset": bit_cursor,
                "len": length,
                "unit": "bit",
            }
            bit_cursor += length + draw(st.integers(0, 2))  # unused bits between points are allowed
            attrs.append(attr)
        if bit_cursor:
            used = max(a["position"]["bit_offset"] + a["position"]["len"] for a in attrs if a["type"] == group)
            size = (used + 7) // 8
            expected_regions.append((cursor, size, group))
            cursor += size
        for kind in points:
            if kind in ("bool", "enum"):
                continue
            width = {"uint8": 1, "uint16": 2, "uint32": 4}.get(kind) or draw(st.integers(1, 8))
            attr = {
                "type": group,
                "data_type": kind,
                "position": {"byte_offset": cursor, "bit_offset": 0, "len": width, "unit": "byte"},
            }
            if kind != "binary":
                attr["uint_spec"] = {"min": 0, "max": (1 << (8 * width)) - 1, "ratio": 1, "addition": 0}
            cursor += width
            attrs.append(attr)
        if group == "status_writable":
            writable_len = cursor
    if not attrs:
        attrs.append(
            {
                "type": "fault",
                "data_type": "bool",
                "position": {"byte_offset": 0, "bit_offset": 0, "len": 1, "unit": "bit"},
            }
        )
        expected_regions.append((0, 1, "fault"))
        cursor = 1
    for index, attr in enumerate(attrs):
        attr.update(id=index, name=f"dp{index}")
    shuffled = draw(st.permutations(attrs))
    doc = {"name": "generated", "protocolType": "standard", "entities": [{"attrs": list(shuffled)}]}
    return doc, cursor, writable_len, expected_regions


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_ordered())
def test_group_ordered_documents_have_the_expected_layout(
    case: tuple[dict[str, Any], int, int, list[tuple[int, int, str]]],
) -> None:
    doc, status_len, writable_len, expected_regions = case
    schema = parse_schema(doc)
    layout = compute_layout(schema.datapoints, pointer_by_id)
    assert layout.status_len == status_len
    assert layout.writable_len == writable_len
    assert [(r.start, r.size, r.type.value) for r in layout.regions] == expected_regions
    assert parse_schema(schema_to_json(schema)) == schema
    # as a var_len product the same positions are just as valid
    varlen = parse_schema(dict(doc, protocolType="var_len"))
    assert varlen.datapoints == schema.datapoints


@settings(max_examples=50, deadline=None)
@given(st.permutations(LIGHT_DOC["entities"][0]["attrs"]))
def test_file_order_does_not_matter(attrs: list[dict[str, Any]]) -> None:
    doc = mutated(LIGHT_DOC, {"/entities/0/attrs": attrs})
    schema = parse_schema(doc)
    assert schema == load_schema(LIGHT_PATH)
    layout = compute_layout(schema.datapoints, pointer_by_id)
    assert (layout.status_len, layout.writable_len) == (38, 24)
