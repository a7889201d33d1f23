"""Schema loader: the valid example files, every rejection (with its JSON pointer), hostile input and round trips."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gizdev.errors import GizdevError, SchemaError
from gizdev.schema import (
    AttrType,
    DataType,
    Position,
    ProductSchema,
    ProtocolType,
    UintSpec,
    load_schema,
    parse_schema,
    schema_to_json,
)
from gizdev.schema import loader as loader_module
from tests.conftest import REPO_ROOT, SHARED_EXAMPLES, product_path

GOKIT_PATH = REPO_ROOT / "protocols" / "gokit.json"
LIGHT_PATH = product_path("light")
FAN_PATH = product_path("fan")

needs_shared = pytest.mark.shared_examples  # skipped in a plain clone, with one reason (tests/conftest.py)


def shared_param(name: str) -> Any:
    return pytest.param(SHARED_EXAMPLES / name, id=name, marks=needs_shared)


VALID_FILES = [
    pytest.param(GOKIT_PATH, id="gokit.json"),
    pytest.param(LIGHT_PATH, id="light-sdk-fixed"),
    pytest.param(FAN_PATH, id="fan-sdk-varlen"),
    shared_param("gizkit_soc_pet.json"),
    shared_param("ph803w.json"),
    shared_param("clearlight.json"),
]

A = "/entities/0/attrs"


def read_doc(path: Path) -> dict[str, Any]:
    """A schema file as plain JSON (floats as float), the way a caller of parse_schema would have it."""
    return dict(json.loads(path.read_text(encoding="utf-8")))


GOKIT_DOC = read_doc(GOKIT_PATH)
LIGHT_DOC = read_doc(LIGHT_PATH)
FAN_DOC = read_doc(FAN_PATH)
BASES = {"gokit": GOKIT_DOC, "light": LIGHT_DOC, "fan": FAN_DOC}

DELETE = object()


def _steps(pointer: str) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in pointer.strip("/").split("/")]


def mutated(doc: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``doc`` with each JSON pointer in ``edits`` set to its value (or deleted for DELETE)."""
    new = copy.deepcopy(doc)
    for pointer, value in edits.items():
        *parents, last = _steps(pointer)
        target: Any = new
        for step in parents:
            target = target[step]
        if value is DELETE:
            del target[last]
        else:
            target[last] = copy.deepcopy(value)
    return new


def rejection(doc: Any, **kwargs: Any) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        parse_schema(doc, **kwargs)
    return info.value


def write(tmp_path: Path, content: str | bytes, name: str = "product.json") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


# ---- 1. valid files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID_FILES)
def test_valid_file_loads(path: Path) -> None:
    schema = load_schema(path)
    assert isinstance(schema, ProductSchema)
    raw_attrs = read_doc(path)["entities"][0]["attrs"]
    assert len(schema.datapoints) == len(raw_attrs)
    assert [dp.id for dp in schema.datapoints] == sorted(attr["id"] for attr in raw_attrs)
    assert set(schema.names) == {attr["name"] for attr in raw_attrs}
    # str paths work as well as Path objects
    assert load_schema(str(path)) == schema


def test_gokit_facts() -> None:
    schema = load_schema(GOKIT_PATH)
    assert schema.name == "GoKit"
    assert schema.product_key == "0123456789abcdef0123456789abcdef"
    assert schema.protocol_type is ProtocolType.FIXED
    assert not schema.is_varlen
    assert schema.packet_version == "0x00000004"
    assert schema.names == (
        "LED_OnOff",
        "LED_Color",
        "LED_R",
        "LED_G",
        "LED_B",
        "Motor_Speed",
        "Infrared",
        "Temperature",
        "Humidity",
        "Alert_1",
        "Alert_2",
        "Fault_LED",
        "Fault_Motor",
        "Fault_TemHum",
        "Fault_IR",
    )
    assert [dp.name for dp in schema.writable] == ["LED_OnOff", "LED_Color", "LED_R", "LED_G", "LED_B", "Motor_Speed"]
    color = schema["LED_Color"]
    assert color.data_type is DataType.ENUM
    assert color.enum == ("Customize", "Yellow", "Purple", "Pink")
    assert color.position == Position(byte_offset=0, bit_offset=1, len=2, unit="bit")
    assert color.is_bits
    assert color.uint_spec is None
    motor = schema["Motor_Speed"]
    assert motor.uint_spec == UintSpec(min=0, max=10, ratio=Decimal(1), addition=Decimal(-5))
    assert motor.uint_spec.addition < 0
    assert motor.uint_spec.to_app(0) == -5
    assert motor.uint_spec.to_app(10) == 5
    assert schema["Temperature"].uint_spec == UintSpec(min=0, max=200, ratio=Decimal(1), addition=Decimal(-13))
    assert schema["Infrared"].type is AttrType.READONLY
    assert schema["Infrared"].data_type is DataType.BOOL
    assert [dp.name for dp in schema.datapoints if dp.type is AttrType.ALERT] == ["Alert_1", "Alert_2"]
    assert [dp.name for dp in schema.datapoints if dp.type is AttrType.FAULT] == [
        "Fault_LED",
        "Fault_Motor",
        "Fault_TemHum",
        "Fault_IR",
    ]
    assert schema["LED_OnOff"].display_name == "LED on/off"
    assert schema["LED_OnOff"].desc == "Switches the RGB LED on or off"
    assert schema.get("nope") is None
    with pytest.raises(KeyError):
        schema["nope"]


def test_light_sdk_fixed_facts() -> None:
    schema = load_schema(LIGHT_PATH)
    assert schema.product_key == "1" * 32
    assert schema.protocol_type is ProtocolType.FIXED
    assert len(schema.datapoints) == 39
    assert len(schema.writable) == 31
    assert [dp.id for dp in schema.writable] == list(range(31))
    assert schema["enum"].enum == ("enum0", "enum1", "enum2")
    assert schema["enum"].position == Position(byte_offset=1, bit_offset=13, len=2, unit="bit")
    assert schema["switch1"].position == Position(byte_offset=1, bit_offset=8, len=1, unit="bit")
    data1 = schema["data1"]
    assert data1.data_type is DataType.UINT16
    assert data1.byte_len == 2
    assert data1.uint_spec == UintSpec(min=0, max=1000, ratio=Decimal(1), addition=Decimal(0))
    assert schema["read5"].type is AttrType.READONLY


def test_fan_sdk_varlen_facts() -> None:
    schema = load_schema(FAN_PATH)
    assert schema.protocol_type is ProtocolType.VARLEN
    assert schema.is_varlen
    assert schema.names == ("windspeed", "work_mod", "wendu", "wemdu_kongzhi", "shidu")
    # writable order is id order, with a read-only point (wendu, id 2) between them
    assert [dp.name for dp in schema.writable] == ["windspeed", "work_mod", "wemdu_kongzhi"]
    assert schema["windspeed"].enum == ("low", "mid", "high")
    assert schema["windspeed"].bit_len == 2
    assert schema["work_mod"].enum == ("could", "harm")
    assert schema["work_mod"].bit_len == 1
    assert schema["wendu"].uint_spec == UintSpec(min=0, max=120, ratio=Decimal(1), addition=Decimal(-20))
    assert schema["wemdu_kongzhi"].uint_spec == UintSpec(min=0, max=24, ratio=Decimal(1), addition=Decimal(16))


@needs_shared
def test_gizkit_soc_pet_matches_our_gokit() -> None:
    theirs = load_schema(SHARED_EXAMPLES / "gizkit_soc_pet.json")
    ours = load_schema(GOKIT_PATH)
    assert theirs.product_key == "de9e8d18d9394cce9081b25a531e552b"
    assert theirs.name == "My WeChat Pet House SOC"
    assert theirs.protocol_type is ProtocolType.FIXED
    assert len(theirs.datapoints) == 15

    def shape(schema: ProductSchema) -> list[tuple[Any, ...]]:
        return [(dp.id, dp.name, dp.type, dp.data_type, dp.position, dp.uint_spec, dp.enum) for dp in schema.datapoints]

    assert shape(theirs) == shape(ours)
    assert theirs["Motor_Speed"].uint_spec is not None
    assert theirs["Motor_Speed"].uint_spec.addition == Decimal(-5)


@needs_shared
def test_ph803w_facts() -> None:
    schema = load_schema(SHARED_EXAMPLES / "ph803w.json")
    assert schema.name == "iMoniter"
    assert schema.product_key == "2d3d954d9bb741b4a19ba1153104932b"
    assert len(schema.datapoints) == 8
    assert schema.writable == ()
    assert {dp.type for dp in schema.datapoints} == {AttrType.READONLY}
    ph = schema["pH"]
    assert ph.data_type is DataType.UINT16
    assert ph.uint_spec is not None
    # exact decimal, not the binary float 0.01000000000000000020816681711721685...
    assert ph.uint_spec.ratio == Decimal("0.01")
    assert ph.uint_spec.ratio != Decimal.from_float(0.01)
    assert ph.uint_spec.to_app(700) == Decimal("7.00")
    assert not ph.uint_spec.is_integral
    assert schema["EC"].uint_spec == UintSpec(min=0, max=2000, ratio=Decimal("0.01"), addition=Decimal(0))
    assert schema["TEMP"].uint_spec == UintSpec(min=0, max=1000, ratio=Decimal("0.1"), addition=Decimal(0))
    assert schema["TEMP"].uint_spec.to_app(255) == Decimal("25.5")
    assert schema["mV"].uint_spec == UintSpec(min=0, max=4000, ratio=Decimal(1), addition=Decimal(-2000))
    assert schema["mV"].uint_spec.is_integral


@needs_shared
def test_ph803w_ratio_exact_from_python_floats() -> None:
    """parse_schema given floats (plain json.load) must still give Decimal("0.01"), like load_schema does."""
    schema = parse_schema(read_doc(SHARED_EXAMPLES / "ph803w.json"))
    assert schema["pH"].uint_spec is not None
    assert schema["pH"].uint_spec.ratio == Decimal("0.01")
    assert schema["TEMP"].uint_spec is not None
    assert schema["TEMP"].uint_spec.ratio == Decimal("0.1")
    assert schema == load_schema(SHARED_EXAMPLES / "ph803w.json")


@needs_shared
def test_clearlight_facts() -> None:
    schema = load_schema(SHARED_EXAMPLES / "clearlight.json")
    assert schema.product_key == "4bde5ccdff4a48c0840e055204a71e1f"
    assert len(schema.datapoints) == 18
    assert len(schema.writable) == 16
    assert [dp.name for dp in schema.writable][:3] == ["EXTERNAL_LIGHT", "INTERNAL_LIGHT", "PRE_TIME_FLAG"]
    assert [dp.name for dp in schema.datapoints if not dp.writable] == ["CURRENT_TEMP", "heart_pulse"]
    assert schema["SN"].uint_spec == UintSpec(min=0, max=255, ratio=Decimal(1), addition=Decimal(0))


def test_product_key_is_lowercased() -> None:
    doc = mutated(GOKIT_DOC, {"/product_key": "0123456789ABCDEF0123456789abcdef"})
    assert parse_schema(doc).product_key == "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("edit", [DELETE, None], ids=["missing", "null"])
def test_product_key_optional(edit: Any) -> None:
    assert parse_schema(mutated(GOKIT_DOC, {"/product_key": edit})).product_key is None


def test_top_level_defaults() -> None:
    doc = mutated(GOKIT_DOC, {"/protocolType": DELETE, "/packetVersion": DELETE, "/name": DELETE})
    schema = parse_schema(doc)
    assert schema.protocol_type is ProtocolType.FIXED
    assert schema.packet_version == "0x00000004"
    assert schema.name == "product"


def test_packet_version_kept() -> None:
    assert parse_schema(mutated(GOKIT_DOC, {"/packetVersion": "0x00000005"})).packet_version == "0x00000005"


def test_attribute_defaults() -> None:
    doc = mutated(
        GOKIT_DOC,
        {
            f"{A}/2/display_name": DELETE,
            f"{A}/2/desc": DELETE,
            f"{A}/2/uint_spec/ratio": DELETE,
            f"{A}/2/uint_spec/addition": DELETE,
            f"{A}/3/display_name": None,
        },
    )
    schema = parse_schema(doc)
    assert schema["LED_R"].display_name == "LED_R"
    assert schema["LED_R"].desc == ""
    assert schema["LED_R"].uint_spec == UintSpec(min=0, max=254, ratio=Decimal(1), addition=Decimal(0))
    assert schema["LED_G"].display_name == "LED_G"


def test_unknown_keys_are_ignored() -> None:
    doc = mutated(GOKIT_DOC, {"/ui": {"sections": []}, f"{A}/0/perm": "W"})
    assert parse_schema(doc) == parse_schema(GOKIT_DOC)


def test_datapoints_sorted_by_id_whatever_the_file_order() -> None:
    doc = copy.deepcopy(GOKIT_DOC)
    doc["entities"][0]["attrs"].reverse()
    schema = parse_schema(doc)
    assert [dp.id for dp in schema.datapoints] == list(range(15))
    assert [dp.name for dp in schema.writable] == ["LED_OnOff", "LED_Color", "LED_R", "LED_G", "LED_B", "Motor_Speed"]
    assert schema == parse_schema(GOKIT_DOC)


@pytest.mark.parametrize(
    ("edits", "check"),
    [
        pytest.param({f"{A}/3/name": "x" * 128}, lambda s: s["x" * 128].id == 3, id="name-128-chars"),
        pytest.param({f"{A}/14/id": 1023}, lambda s: s["Fault_IR"].id == 1023, id="id-1023"),
        pytest.param({f"{A}/2/uint_spec/max": 255}, lambda s: s["LED_R"].uint_spec.max == 255, id="uint8-max-255"),
        pytest.param(
            {f"{A}/1/enum": ["only"], f"{A}/1/position/len": 1},
            lambda s: s["LED_Color"].enum == ("only",),
            id="enum-1-member-1-bit",
        ),
        pytest.param(
            {f"{A}/1/enum": ["a", "b"], f"{A}/1/position/len": 1},
            lambda s: s["LED_Color"].bit_len == 1,
            id="enum-2-members-1-bit",
        ),
        pytest.param(
            {f"{A}/1/enum": ["a", "b", "c", "d", "e"], f"{A}/1/position/len": 3},
            lambda s: s["LED_Color"].bit_len == 3,
            id="enum-5-members-3-bits",
        ),
        pytest.param(
            {f"{A}/2/data_type": "binary", f"{A}/2/uint_spec": DELETE},
            lambda s: s["LED_R"].data_type is DataType.BINARY and s["LED_R"].uint_spec is None,
            id="binary-1-byte",
        ),
        pytest.param(
            {f"{A}/5/uint_spec/ratio": 0.5, f"{A}/5/uint_spec/addition": -2.5},
            lambda s: s["Motor_Speed"].uint_spec == UintSpec(0, 10, Decimal("0.5"), Decimal("-2.5")),
            id="fractional-ratio-and-addition",
        ),
        pytest.param(
            {f"{A}/5/uint_spec/ratio": Decimal("0.001")},
            lambda s: s["Motor_Speed"].uint_spec.ratio == Decimal("0.001"),
            id="decimal-ratio",
        ),
    ],
)
def test_accepted_boundaries(edits: dict[str, Any], check: Any) -> None:
    assert check(parse_schema(mutated(GOKIT_DOC, edits)))


def test_uint16_and_uint32_maxima_accepted() -> None:
    light = parse_schema(mutated(LIGHT_DOC, {f"{A}/26/uint_spec/max": 65535}))
    assert light["data1"].uint_spec is not None
    assert light["data1"].uint_spec.max == 65535
    # Humidity (read-only, byte 7) as a uint32 at the end of dev_status
    doc = mutated(
        GOKIT_DOC,
        {
            f"{A}/8/data_type": "uint32",
            f"{A}/8/position": {"byte_offset": 10, "bit_offset": 0, "len": 4, "unit": "byte"},
            f"{A}/8/uint_spec/max": 2**32 - 1,
        },
    )
    humidity = parse_schema(doc)["Humidity"]
    assert humidity.data_type is DataType.UINT32
    assert humidity.byte_len == 4
    assert humidity.uint_spec is not None
    assert humidity.uint_spec.max == 2**32 - 1


# ---- 2. rejections ----------------------------------------------------------------------------------------


def _case(base: str, edits: dict[str, Any], pointer: str, fragment: str, id: str) -> Any:
    return pytest.param(base, edits, pointer, fragment, id=id)


GOKIT_ENTITY = GOKIT_DOC["entities"][0]

REJECTIONS = [
    # top level
    _case("gokit", {"/product_key": "abc"}, "/product_key", "32 hexadecimal", "product-key-short"),
    _case("gokit", {"/product_key": "0" * 31}, "/product_key", "32 hexadecimal", "product-key-31"),
    _case("gokit", {"/product_key": "0" * 33}, "/product_key", "32 hexadecimal", "product-key-33"),
    _case("gokit", {"/product_key": "g" * 32}, "/product_key", "32 hexadecimal", "product-key-not-hex"),
    _case("gokit", {"/product_key": "0" * 31 + "\n"}, "/product_key", "32 hexadecimal", "product-key-newline"),
    _case("gokit", {"/product_key": "0" * 32 + "\n"}, "/product_key", "32 hexadecimal", "product-key-trailing-nl"),
    _case("gokit", {"/product_key": ""}, "/product_key", "32 hexadecimal", "product-key-empty"),
    _case("gokit", {"/product_key": 12345}, "/product_key", "32 hexadecimal", "product-key-int"),
    _case("gokit", {"/product_key": ["0" * 32]}, "/product_key", "32 hexadecimal", "product-key-list"),
    _case("gokit", {"/protocolType": "fixed"}, "/protocolType", "unknown protocol type", "protocol-unknown"),
    _case("gokit", {"/protocolType": "VAR_LEN"}, "/protocolType", "unknown protocol type", "protocol-case"),
    _case("gokit", {"/protocolType": 0}, "/protocolType", "unknown protocol type", "protocol-int"),
    _case("gokit", {"/protocolType": None}, "/protocolType", "unknown protocol type", "protocol-null"),
    _case("gokit", {"/protocolType": ["standard"]}, "/protocolType", "unknown protocol type", "protocol-list"),
    _case("gokit", {"/packetVersion": 4}, "/packetVersion", "must be a string", "packet-version-int"),
    _case("gokit", {"/name": 5}, "/name", "must be a string", "name-int"),
    _case("gokit", {"/entities": DELETE}, "/entities", "non-empty array", "entities-missing"),
    _case("gokit", {"/entities": []}, "/entities", "non-empty array", "entities-empty"),
    _case("gokit", {"/entities": {}}, "/entities", "non-empty array", "entities-object"),
    _case("gokit", {"/entities": None}, "/entities", "non-empty array", "entities-null"),
    _case(
        "gokit",
        {"/entities": [GOKIT_ENTITY, GOKIT_ENTITY]},
        "/entities/1",
        "more than one entity",
        "two-entities",
    ),
    _case("gokit", {"/entities/0": "entity0"}, "/entities/0", "must be an object", "entity-not-object"),
    _case("gokit", {"/entities/0/attrs": DELETE}, A, "non-empty array", "attrs-missing"),
    _case("gokit", {"/entities/0/attrs": []}, A, "non-empty array", "attrs-empty"),
    _case("gokit", {"/entities/0/attrs": {}}, A, "non-empty array", "attrs-object"),
    _case("gokit", {"/entities/0/attrs": [{}] * 1025}, A, "exceed the limit of 1024", "attrs-too-many"),
    _case("gokit", {f"{A}/3": "LED_G"}, f"{A}/3", "must be an object", "attr-not-object"),
    _case("gokit", {f"{A}/3": None}, f"{A}/3", "must be an object", "attr-null"),
    # id
    _case("gokit", {f"{A}/3/id": DELETE}, f"{A}/3/id", "is missing", "id-missing"),
    _case("gokit", {f"{A}/3/id": None}, f"{A}/3/id", "is missing", "id-null"),
    _case("gokit", {f"{A}/3/id": -1}, f"{A}/3/id", "outside 0..1023", "id-negative"),
    _case("gokit", {f"{A}/3/id": 1024}, f"{A}/3/id", "outside 0..1023", "id-too-big"),
    _case("gokit", {f"{A}/3/id": True}, f"{A}/3/id", "must be an integer", "id-true"),
    _case("gokit", {f"{A}/0/id": False}, f"{A}/0/id", "must be an integer", "id-false"),
    _case("gokit", {f"{A}/3/id": 3.5}, f"{A}/3/id", "must be an integer", "id-float"),
    _case("gokit", {f"{A}/3/id": Decimal("3.5")}, f"{A}/3/id", "must be an integer", "id-decimal"),
    _case("gokit", {f"{A}/3/id": "3"}, f"{A}/3/id", "must be an integer", "id-string"),
    _case("gokit", {f"{A}/3/id": float("nan")}, f"{A}/3/id", "must be an integer", "id-nan"),
    _case("gokit", {f"{A}/3/id": 2}, f"{A}/3/id", "duplicate id 2 (also at /entities/0/attrs/2)", "id-duplicate"),
    # name
    _case(
        "gokit",
        {f"{A}/3/name": "LED_R"},
        f"{A}/3/name",
        "duplicate name 'LED_R' (also at /entities/0/attrs/2)",
        "name-duplicate",
    ),
    _case("gokit", {f"{A}/3/name": DELETE}, f"{A}/3/name", "non-empty string", "name-missing"),
    _case("gokit", {f"{A}/3/name": ""}, f"{A}/3/name", "non-empty string", "name-empty"),
    _case("gokit", {f"{A}/3/name": "x" * 129}, f"{A}/3/name", "at most 128", "name-129-chars"),
    _case("gokit", {f"{A}/3/name": "LED\nG"}, f"{A}/3/name", "printable", "name-newline"),
    _case("gokit", {f"{A}/3/name": "LED\tG"}, f"{A}/3/name", "printable", "name-tab"),
    _case("gokit", {f"{A}/3/name": "LED\x00"}, f"{A}/3/name", "printable", "name-nul"),
    _case("gokit", {f"{A}/3/name": "LED\x1b[0m"}, f"{A}/3/name", "printable", "name-escape"),
    _case("gokit", {f"{A}/3/name": "LED\x7f"}, f"{A}/3/name", "printable", "name-del"),
    _case("gokit", {f"{A}/3/name": 7}, f"{A}/3/name", "non-empty string", "name-int"),
    _case("gokit", {f"{A}/3/display_name": 7}, f"{A}/3/display_name", "must be a string", "display-name-int"),
    _case("gokit", {f"{A}/3/desc": ["x"]}, f"{A}/3/desc", "must be a string", "desc-list"),
    # type and data_type
    _case("gokit", {f"{A}/3/type": "writable"}, f"{A}/3/type", "unknown type 'writable'", "type-unknown"),
    _case("gokit", {f"{A}/3/type": DELETE}, f"{A}/3/type", "unknown type", "type-missing"),
    _case("gokit", {f"{A}/3/type": 1}, f"{A}/3/type", "unknown type", "type-int"),
    _case("gokit", {f"{A}/3/data_type": "int8"}, f"{A}/3/data_type", "unknown data_type 'int8'", "dtype-unknown"),
    _case("gokit", {f"{A}/3/data_type": "UINT8"}, f"{A}/3/data_type", "unknown data_type", "dtype-case"),
    _case("gokit", {f"{A}/3/data_type": DELETE}, f"{A}/3/data_type", "unknown data_type", "dtype-missing"),
    _case("gokit", {f"{A}/9/data_type": "uint8"}, f"{A}/9/data_type", "alert datapoints must be bool", "alert-uint8"),
    _case("gokit", {f"{A}/10/data_type": "enum"}, f"{A}/10/data_type", "alert datapoints must be bool", "alert-enum"),
    _case("gokit", {f"{A}/11/data_type": "uint8"}, f"{A}/11/data_type", "fault datapoints must be bool", "fault-uint8"),
    _case("gokit", {f"{A}/12/data_type": "binary"}, f"{A}/12/data_type", "fault datapoints must be bool", "fault-bin"),
    # position
    _case("gokit", {f"{A}/3/position": DELETE}, f"{A}/3/position", "is missing", "position-missing"),
    _case("gokit", {f"{A}/3/position": None}, f"{A}/3/position", "is missing", "position-null"),
    _case("gokit", {f"{A}/3/position": [2, 0, 1]}, f"{A}/3/position", "must be an object", "position-list"),
    _case("gokit", {f"{A}/3/position/unit": "bits"}, f"{A}/3/position/unit", "'bit' or 'byte'", "unit-unknown"),
    _case("gokit", {f"{A}/3/position/unit": DELETE}, f"{A}/3/position/unit", "'bit' or 'byte'", "unit-missing"),
    _case("gokit", {f"{A}/3/position/unit": "BYTE"}, f"{A}/3/position/unit", "'bit' or 'byte'", "unit-case"),
    _case("gokit", {f"{A}/3/position/len": DELETE}, f"{A}/3/position/len", "is missing", "len-missing"),
    _case("gokit", {f"{A}/3/position/len": 0}, f"{A}/3/position/len", "outside 1..4096", "len-zero"),
    _case("gokit", {f"{A}/3/position/len": -1}, f"{A}/3/position/len", "outside 1..4096", "len-negative"),
    _case("gokit", {f"{A}/3/position/len": "1"}, f"{A}/3/position/len", "must be an integer", "len-string"),
    _case("gokit", {f"{A}/3/position/byte_offset": DELETE}, f"{A}/3/position/byte_offset", "is missing", "byte-miss"),
    _case("gokit", {f"{A}/3/position/byte_offset": -1}, f"{A}/3/position/byte_offset", "outside 0..4095", "byte-neg"),
    _case(
        "gokit", {f"{A}/3/position/byte_offset": 4096}, f"{A}/3/position/byte_offset", "outside 0..4095", "byte-4096"
    ),
    _case("gokit", {f"{A}/3/position/byte_offset": 1.5}, f"{A}/3/position/byte_offset", "an integer", "byte-float"),
    _case("gokit", {f"{A}/3/position/bit_offset": DELETE}, f"{A}/3/position/bit_offset", "is missing", "bit-missing"),
    _case("gokit", {f"{A}/0/position/bit_offset": -1}, f"{A}/0/position/bit_offset", "outside 0..32767", "bit-neg"),
    # bool and enum sizes
    _case("gokit", {f"{A}/0/position/len": 2}, f"{A}/0/position/len", "a bool takes 1 bit", "bool-len-2"),
    _case("gokit", {f"{A}/0/position/unit": "byte"}, f"{A}/0/position/unit", "must be 'bit'", "bool-unit-byte"),
    _case(
        "gokit",
        {f"{A}/1/enum": ["a", "b", "c"], f"{A}/1/position/len": 1},
        f"{A}/1/position/len",
        "an enum of 3 members takes 2 bits",
        "enum-3-len-1",
    ),
    _case(
        "gokit",
        {f"{A}/1/enum": ["a", "b", "c"], f"{A}/1/position/len": 3},
        f"{A}/1/position/len",
        "an enum of 3 members takes 2 bits",
        "enum-3-len-3",
    ),
    _case("gokit", {f"{A}/1/position/len": 1}, f"{A}/1/position/len", "4 members takes 2 bits", "enum-4-len-1"),
    _case(
        "gokit",
        {f"{A}/1/enum": ["a", "b", "c", "d", "e"]},
        f"{A}/1/position/len",
        "5 members takes 3 bits",
        "enum-5-len-2",
    ),
    _case("gokit", {f"{A}/1/enum": ["a", "b"]}, f"{A}/1/position/len", "2 members takes 1 bits", "enum-2-len-2"),
    _case("gokit", {f"{A}/1/position/unit": "byte"}, f"{A}/1/position/unit", "must be 'bit'", "enum-unit-byte"),
    _case("gokit", {f"{A}/1/enum": []}, f"{A}/1/enum", "non-empty list", "enum-empty"),
    _case("gokit", {f"{A}/1/enum": DELETE}, f"{A}/1/enum", "non-empty list", "enum-missing"),
    _case("gokit", {f"{A}/1/enum": "abcd"}, f"{A}/1/enum", "non-empty list", "enum-string"),
    _case("gokit", {f"{A}/1/enum": {"0": "a"}}, f"{A}/1/enum", "non-empty list", "enum-object"),
    _case("gokit", {f"{A}/1/enum/1": 5}, f"{A}/1/enum/1", "non-empty strings", "enum-member-int"),
    _case("gokit", {f"{A}/1/enum/3": None}, f"{A}/1/enum/3", "non-empty strings", "enum-member-null"),
    _case("gokit", {f"{A}/1/enum/2": ""}, f"{A}/1/enum/2", "non-empty strings", "enum-member-empty"),
    _case(
        "gokit",
        {f"{A}/1/enum/3": "Yellow"},
        f"{A}/1/enum/3",
        "duplicate enum member 'Yellow'",
        "enum-member-duplicate",
    ),
    # number widths
    _case("gokit", {f"{A}/2/position/len": 2}, f"{A}/2/position/len", "uint8 takes 1 bytes", "uint8-len-2"),
    _case("gokit", {f"{A}/2/position/unit": "bit"}, f"{A}/2/position/unit", "must be 'byte'", "uint8-unit-bit"),
    _case("light", {f"{A}/26/position/unit": "bit"}, f"{A}/26/position/unit", "must be 'byte'", "uint16-unit-bit"),
    _case("light", {f"{A}/26/position/len": 1}, f"{A}/26/position/len", "uint16 takes 2 bytes", "uint16-len-1"),
    _case("light", {f"{A}/26/position/len": 4}, f"{A}/26/position/len", "uint16 takes 2 bytes", "uint16-len-4"),
    _case("gokit", {f"{A}/2/data_type": "uint32"}, f"{A}/2/position/len", "uint32 takes 4 bytes", "uint32-len-1"),
    # binary
    _case(
        "gokit",
        {f"{A}/2/data_type": "binary", f"{A}/2/uint_spec": DELETE, f"{A}/2/position/len": DELETE},
        f"{A}/2/position/len",
        "is missing",
        "binary-no-len",
    ),
    _case(
        "gokit",
        {f"{A}/2/data_type": "binary", f"{A}/2/position/unit": "bit"},
        f"{A}/2/position/unit",
        "binary datapoints are measured in bytes",
        "binary-unit-bit",
    ),
    # uint_spec
    _case("gokit", {f"{A}/2/uint_spec": DELETE}, f"{A}/2/uint_spec", "is missing", "uint-spec-missing"),
    _case("gokit", {f"{A}/2/uint_spec": None}, f"{A}/2/uint_spec", "is missing", "uint-spec-null"),
    _case("gokit", {f"{A}/2/uint_spec": [0, 254, 1, 0]}, f"{A}/2/uint_spec", "must be an object", "uint-spec-list"),
    _case("gokit", {f"{A}/5/uint_spec/min": 11}, f"{A}/5/uint_spec/min", "min 11 is greater than max 10", "min-gt-max"),
    _case("gokit", {f"{A}/2/uint_spec/min": DELETE}, f"{A}/2/uint_spec/min", "is missing", "min-missing"),
    _case("gokit", {f"{A}/2/uint_spec/max": DELETE}, f"{A}/2/uint_spec/max", "is missing", "max-missing"),
    _case("gokit", {f"{A}/2/uint_spec/min": -1}, f"{A}/2/uint_spec/min", "outside 0..255", "min-negative"),
    _case("gokit", {f"{A}/2/uint_spec/max": 256}, f"{A}/2/uint_spec/max", "256 is outside 0..255", "uint8-max-256"),
    _case("gokit", {f"{A}/2/uint_spec/max": 10.5}, f"{A}/2/uint_spec/max", "must be an integer", "max-float"),
    _case("gokit", {f"{A}/2/uint_spec/max": True}, f"{A}/2/uint_spec/max", "must be an integer", "max-bool"),
    _case("light", {f"{A}/26/uint_spec/max": 65536}, f"{A}/26/uint_spec/max", "outside 0..65535", "uint16-max-65536"),
    _case(
        "gokit",
        {f"{A}/8/data_type": "uint32", f"{A}/8/position/len": 4, f"{A}/8/uint_spec/max": 2**32},
        f"{A}/8/uint_spec/max",
        "outside 0..4294967295",
        "uint32-max-2**32",
    ),
    _case("gokit", {f"{A}/2/uint_spec/ratio": 0}, f"{A}/2/uint_spec/ratio", "must be positive", "ratio-zero"),
    _case("gokit", {f"{A}/2/uint_spec/ratio": 0.0}, f"{A}/2/uint_spec/ratio", "must be positive", "ratio-zero-float"),
    _case("gokit", {f"{A}/2/uint_spec/ratio": -1}, f"{A}/2/uint_spec/ratio", "must be positive", "ratio-negative"),
    _case(
        "gokit",
        {f"{A}/2/uint_spec/ratio": Decimal("-0.01")},
        f"{A}/2/uint_spec/ratio",
        "must be positive",
        "ratio-negative-decimal",
    ),
    _case("gokit", {f"{A}/2/uint_spec/ratio": "1"}, f"{A}/2/uint_spec/ratio", "must be a number", "ratio-string"),
    _case("gokit", {f"{A}/2/uint_spec/ratio": True}, f"{A}/2/uint_spec/ratio", "must be a number", "ratio-bool"),
    _case("gokit", {f"{A}/2/uint_spec/ratio": None}, f"{A}/2/uint_spec/ratio", "must be a number", "ratio-null"),
    _case("gokit", {f"{A}/2/uint_spec/ratio": [1]}, f"{A}/2/uint_spec/ratio", "must be a number", "ratio-list"),
    _case("gokit", {f"{A}/2/uint_spec/ratio": math.nan}, f"{A}/2/uint_spec/ratio", "not a usable number", "ratio-nan"),
    _case("gokit", {f"{A}/2/uint_spec/ratio": math.inf}, f"{A}/2/uint_spec/ratio", "not a usable number", "ratio-inf"),
    _case(
        "gokit",
        {f"{A}/2/uint_spec/ratio": Decimal("NaN")},
        f"{A}/2/uint_spec/ratio",
        "not a usable number",
        "ratio-decimal-nan",
    ),
    _case(
        "gokit",
        {f"{A}/2/uint_spec/ratio": Decimal("Infinity")},
        f"{A}/2/uint_spec/ratio",
        "not a usable number",
        "ratio-decimal-inf",
    ),
    _case("gokit", {f"{A}/2/uint_spec/ratio": 2**41}, f"{A}/2/uint_spec/ratio", "not a usable number", "ratio-huge"),
    _case("gokit", {f"{A}/5/uint_spec/addition": "-5"}, f"{A}/5/uint_spec/addition", "must be a number", "add-str"),
    _case("gokit", {f"{A}/5/uint_spec/addition": False}, f"{A}/5/uint_spec/addition", "must be a number", "add-bool"),
    _case("gokit", {f"{A}/5/uint_spec/addition": {}}, f"{A}/5/uint_spec/addition", "must be a number", "add-object"),
    _case(
        "gokit", {f"{A}/5/uint_spec/addition": math.nan}, f"{A}/5/uint_spec/addition", "not a usable number", "add-nan"
    ),
    _case(
        "gokit",
        {f"{A}/5/uint_spec/addition": -math.inf},
        f"{A}/5/uint_spec/addition",
        "not a usable number",
        "add-minus-inf",
    ),
    _case(
        "gokit",
        {f"{A}/5/uint_spec/addition": -(2**41)},
        f"{A}/5/uint_spec/addition",
        "not a usable number",
        "add-huge",
    ),
]


@pytest.mark.parametrize(("base", "edits", "pointer", "fragment"), REJECTIONS)
def test_rejection(base: str, edits: dict[str, Any], pointer: str, fragment: str) -> None:
    error = rejection(mutated(BASES[base], edits))
    assert error.pointer == pointer
    assert fragment in error.reason
    assert error.source is None
    assert str(error) == f"{pointer}: {error.reason}"
    assert isinstance(error, GizdevError)


@pytest.mark.parametrize(
    "document",
    [[], "schema", 5, None, True, [GOKIT_DOC]],
    ids=["list", "string", "int", "null", "bool", "wrapped-in-list"],
)
def test_document_not_an_object(document: Any) -> None:
    error = rejection(document)
    assert error.pointer == ""
    assert "must be an object" in error.reason
    assert str(error).startswith("/: must be an object")


def test_source_given_to_parse_schema_appears_in_message() -> None:
    error = rejection(mutated(GOKIT_DOC, {f"{A}/3/id": -1}), source="pet.json")
    assert error.source == "pet.json"
    assert str(error) == f"pet.json: {A}/3/id: {error.reason}"


def test_file_errors_name_the_file_and_the_pointer(tmp_path: Path) -> None:
    doc = mutated(GOKIT_DOC, {f"{A}/5/uint_spec/ratio": 0})
    path = write(tmp_path, json.dumps(doc), "broken-gokit.json")
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    error = info.value
    assert error.pointer == f"{A}/5/uint_spec/ratio"
    assert error.source == str(path)
    assert "broken-gokit.json" in str(error)
    assert f"{A}/5/uint_spec/ratio" in str(error)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param("{", "not valid JSON", id="truncated"),
        pytest.param("", "not valid JSON", id="empty"),
        pytest.param("{'name': 'x'}", "not valid JSON", id="single-quotes"),
        pytest.param('{"entities": []} trailing', "not valid JSON", id="trailing-garbage"),
        pytest.param(b'{"name": "\xff\xfe"}', "not valid JSON", id="invalid-utf8"),
    ],
)
def test_not_json(tmp_path: Path, content: str | bytes, fragment: str) -> None:
    path = write(tmp_path, content, "garbage.json")
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer == ""
    assert fragment in info.value.reason
    assert "garbage.json" in str(info.value)


@pytest.mark.parametrize("content", ["[]", '"gokit"', "42", "null"])
def test_file_not_an_object(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer == ""
    assert "must be an object" in info.value.reason
    assert str(info.value).startswith(f"{path}: /: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer == ""
    # The file, then the system's reason; no JSON pointer: there is no document to point into.
    assert str(info.value) == f"cannot read schema file {path}: No such file or directory"
    assert isinstance(info.value.__cause__, OSError)


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SchemaError) as info:
        load_schema(tmp_path)
    assert info.value.pointer == ""
    assert str(info.value) == f"cannot read schema file {tmp_path}: Is a directory"


def test_file_too_large(tmp_path: Path) -> None:
    limit = loader_module.MAX_SCHEMA_BYTES
    assert limit == 4 * 1024 * 1024
    path = write(tmp_path, b" " * (limit + 1), "huge.json")
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer == ""
    assert f"{limit + 1} bytes is larger than {limit}" in info.value.reason
    assert "huge.json" in str(info.value)


def test_file_of_exactly_the_limit_loads(tmp_path: Path) -> None:
    text = GOKIT_PATH.read_bytes()
    path = write(tmp_path, text + b" " * (loader_module.MAX_SCHEMA_BYTES - len(text)))
    assert load_schema(path) == load_schema(GOKIT_PATH)


@pytest.mark.parametrize(
    ("literal", "pointer"),
    [
        pytest.param("NaN", f"{A}/2/uint_spec/ratio", id="ratio-NaN"),
        pytest.param("Infinity", f"{A}/2/uint_spec/ratio", id="ratio-Infinity"),
        pytest.param("-Infinity", f"{A}/5/uint_spec/addition", id="addition-minus-Infinity"),
    ],
)
def test_nan_and_infinity_literals_in_a_file(tmp_path: Path, literal: str, pointer: str) -> None:
    doc = mutated(GOKIT_DOC, {pointer: "@@"})
    path = write(tmp_path, json.dumps(doc).replace('"@@"', literal))
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer == pointer
    assert "not a usable number" in info.value.reason


def test_decimal_from_file_is_exact(tmp_path: Path) -> None:
    doc = mutated(GOKIT_DOC, {f"{A}/5/uint_spec/ratio": "@@"})
    path = write(tmp_path, json.dumps(doc).replace('"@@"', "0.1"))
    spec = load_schema(path)["Motor_Speed"].uint_spec
    assert spec is not None
    assert spec.ratio == Decimal("0.1")
    assert spec.to_app(3) == Decimal("-4.7")


# ---- hostile extremes (each of these found a non-SchemaError escaping) -----------------------------------

HUGE = 10**5000  # more digits than int -> str conversion allows (sys.get_int_max_str_digits() == 4300)


@pytest.mark.parametrize(
    ("pointer", "value"),
    [
        pytest.param(f"{A}/0/id", HUGE, id="id-huge-int"),
        pytest.param(f"{A}/2/uint_spec/max", HUGE, id="max-huge-int"),
        pytest.param(f"{A}/0/type", HUGE, id="type-huge-int"),
        pytest.param(f"{A}/0/data_type", HUGE, id="data_type-huge-int"),
        pytest.param("/protocolType", HUGE, id="protocolType-huge-int"),
        pytest.param(f"{A}/2/uint_spec/ratio", HUGE, id="ratio-huge-int"),
        pytest.param(f"{A}/2/uint_spec/addition", -HUGE, id="addition-huge-negative-int"),
        pytest.param(f"{A}/0/id", Decimal("1E+5000"), id="id-decimal-huge-exponent"),
        pytest.param(f"{A}/0/id", Decimal("Infinity"), id="id-decimal-infinity"),
        pytest.param(f"{A}/0/id", Decimal("-Infinity"), id="id-decimal-minus-infinity"),
        pytest.param(f"{A}/0/id", Decimal("sNaN"), id="id-decimal-snan"),
        pytest.param(f"{A}/2/uint_spec/min", Decimal("Infinity"), id="min-decimal-infinity"),
        pytest.param(f"{A}/2/uint_spec/ratio", Decimal("sNaN"), id="ratio-decimal-snan"),
    ],
)
def test_extreme_numbers_are_schema_errors(pointer: str, value: Any) -> None:
    error = rejection(mutated(GOKIT_DOC, {pointer: value}))
    assert error.pointer == pointer
    str(error)  # the message itself must be printable


def test_huge_integer_literal_in_file_is_schema_error(tmp_path: Path) -> None:
    doc = mutated(GOKIT_DOC, {f"{A}/0/id": "@@"})
    path = write(tmp_path, json.dumps(doc).replace('"@@"', "9" * 5000))
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer in ("", f"{A}/0/id")
    assert info.value.source == str(path)


def test_huge_exponent_literal_in_file_is_schema_error(tmp_path: Path) -> None:
    doc = mutated(GOKIT_DOC, {f"{A}/0/id": "@@"})
    path = write(tmp_path, json.dumps(doc).replace('"@@"', "1e5000"))
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer == f"{A}/0/id"


def test_huge_exponent_literal_is_rejected_quickly(tmp_path: Path) -> None:
    """``"id": 1e10000000`` (a 4 kB file) must not make the loader build a ten-million-digit integer."""
    doc = mutated(GOKIT_DOC, {f"{A}/0/id": "@@"})
    path = write(tmp_path, json.dumps(doc).replace('"@@"', "1e10000000"))
    script = (
        "import sys\n"
        "from gizdev.errors import SchemaError\n"
        "from gizdev.schema.loader import load_schema\n"
        "try:\n"
        "    load_schema(sys.argv[1])\n"
        "except SchemaError as exc:\n"
        "    print('SchemaError', exc.pointer)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=REPO_ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("load_schema took more than 5 s on a 4 kB file holding the number 1e10000000")
    assert result.stdout.strip() == f"SchemaError {A}/0/id", result.stderr[-2000:]


def test_deeply_nested_file_is_schema_error(tmp_path: Path) -> None:
    depth = 100_000
    path = write(tmp_path, "[" * depth + "]" * depth, "deep.json")
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert info.value.pointer == ""
    assert info.value.source == str(path)


# ---- 3. hostile input: only SchemaError ever escapes ----------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 50)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
# Values that the validator actually looks at: keys, type names, boundaries.
INTERESTING: st.SearchStrategy[Any] = st.sampled_from(
    [
        0,
        1,
        -1,
        2,
        7,
        8,
        255,
        256,
        1023,
        1024,
        4095,
        4096,
        65535,
        65536,
        2**32,
        True,
        False,
        None,
        "",
        "bit",
        "byte",
        "bool",
        "enum",
        "uint8",
        "uint16",
        "uint32",
        "binary",
        "status_writable",
        "status_readonly",
        "alert",
        "fault",
        "standard",
        "var_len",
        [],
        {},
        ["a"],
        ["a", "b", "c"],
        0.01,
        Decimal("0.1"),
        math.nan,
        math.inf,
    ]
)
SHAPED_DOCS = st.fixed_dictionaries(
    {},
    optional={
        "name": JSON_VALUES,
        "product_key": st.sampled_from(["ab" * 16, "AB" * 16, "x"]) | JSON_VALUES,
        "protocolType": st.sampled_from(["standard", "var_len"]) | JSON_VALUES,
        "entities": st.lists(
            st.fixed_dictionaries({}, optional={"attrs": st.lists(JSON_VALUES, max_size=4) | JSON_VALUES}),
            max_size=2,
        )
        | JSON_VALUES,
    },
)


def _all_pointers(value: Any, prefix: str = "") -> Iterator[str]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _all_pointers(child, f"{prefix}/{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _all_pointers(child, f"{prefix}/{index}")


POINTERS = {name: [p for p in _all_pointers(doc) if p] for name, doc in BASES.items()}


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid schema with 1-3 random fields replaced by random values or deleted."""
    base = draw(st.sampled_from(sorted(BASES)))
    doc = copy.deepcopy(BASES[base])
    for _ in range(draw(st.integers(1, 3))):
        pointer = draw(st.sampled_from(POINTERS[base]))
        value = draw(st.just(DELETE) | INTERESTING | JSON_VALUES)
        try:
            doc = mutated(doc, {pointer: value})
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this field's parent
    return doc


def _parse_only_schema_errors(document: Any) -> ProductSchema | None:
    try:
        schema = parse_schema(document)
    except SchemaError as exc:
        assert isinstance(exc.pointer, str)
        assert exc.pointer == "" or exc.pointer.startswith("/")
        assert exc.reason
        str(exc)
        return None
    assert isinstance(schema, ProductSchema)
    return schema


HOSTILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(HOSTILE, max_examples=100)
@given(JSON_VALUES)
def test_random_json_only_schema_errors(document: Any) -> None:
    _parse_only_schema_errors(document)


@settings(HOSTILE, max_examples=100)
@given(SHAPED_DOCS)
def test_random_schema_shaped_documents_only_schema_errors(document: dict[str, Any]) -> None:
    _parse_only_schema_errors(document)


@HOSTILE
@given(mutated_documents())
def test_mutated_schemas_only_schema_errors(document: dict[str, Any]) -> None:
    schema = _parse_only_schema_errors(document)
    if schema is not None:
        # whatever survives validation is a usable schema
        assert len({dp.id for dp in schema.datapoints}) == len(schema.datapoints)
        assert len(set(schema.names)) == len(schema.datapoints)
        assert [dp.id for dp in schema.datapoints] == sorted(dp.id for dp in schema.datapoints)


# ---- 4. schema_to_json round trip --------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID_FILES)
def test_round_trip(path: Path) -> None:
    schema = load_schema(path)
    document = schema_to_json(schema)
    assert parse_schema(document) == schema
    # ... and through JSON text, the way GET /app/datapoint serves it
    text = json.dumps(document)
    assert parse_schema(json.loads(text)) == schema
    assert parse_schema(json.loads(text, parse_float=Decimal)) == schema


@pytest.mark.parametrize("path", VALID_FILES)
def test_schema_to_json_shape(path: Path) -> None:
    schema = load_schema(path)
    document = schema_to_json(schema)
    assert document["protocolType"] == schema.protocol_type.value
    assert document["product_key"] == schema.product_key
    assert document["packetVersion"] == "0x00000004"
    assert len(document["entities"]) == 1
    attrs = document["entities"][0]["attrs"]
    assert [attr["id"] for attr in attrs] == [dp.id for dp in schema.datapoints]
    for attr, dp in zip(attrs, schema.datapoints, strict=True):
        assert ("enum" in attr) == (dp.data_type is DataType.ENUM)
        assert ("uint_spec" in attr) == (dp.uint_spec is not None)
        assert attr["position"] == dataclasses.asdict(dp.position)
    # the source file's attributes come back with the same values for the fields the model keeps
    raw = {attr["id"]: attr for attr in read_doc(path)["entities"][0]["attrs"]}
    for attr in attrs:
        original = raw[attr["id"]]
        assert attr["position"] == original["position"]
        assert attr.get("enum") == original.get("enum")
        assert attr.get("uint_spec") == original.get("uint_spec")


def test_schema_to_json_without_product_key() -> None:
    schema = parse_schema(mutated(GOKIT_DOC, {"/product_key": DELETE}))
    document = schema_to_json(schema)
    assert "product_key" not in document
    assert parse_schema(document) == schema


def test_round_trip_var_len_and_fractions() -> None:
    doc = mutated(FAN_DOC, {f"{A}/2/uint_spec/ratio": 0.5, f"{A}/2/uint_spec/addition": -20.25})
    schema = parse_schema(doc)
    again = parse_schema(json.loads(json.dumps(schema_to_json(schema))))
    assert again == schema
    assert again.is_varlen


@pytest.mark.parametrize(
    "ratio",
    [
        pytest.param(Decimal("0.123456789012345"), id="fifteen-digits"),
        pytest.param(Decimal("1E-9"), id="smallest-ratio"),
        pytest.param(Decimal("1099511627776"), id="largest-ratio"),
    ],
)
def test_round_trip_keeps_accepted_ratios(ratio: Decimal) -> None:
    """Any ratio that parse_schema accepts must survive schema_to_json (no float rounding)."""
    schema = parse_schema(mutated(GOKIT_DOC, {f"{A}/5/uint_spec/ratio": ratio}))
    assert schema["Motor_Speed"].uint_spec is not None
    assert schema["Motor_Speed"].uint_spec.ratio == ratio
    assert parse_schema(schema_to_json(schema)) == schema
    assert parse_schema(json.loads(json.dumps(schema_to_json(schema)))) == schema


@pytest.mark.parametrize(
    ("ratio", "fragment"),
    [
        pytest.param(Decimal("0.12345678901234567891"), "significant digits", id="more-digits-than-a-float"),
        pytest.param(Decimal("1E-400"), "must be positive", id="below-float-range"),
        pytest.param(Decimal("1E-10"), "must be positive", id="below-smallest-ratio"),
    ],
)
def test_ratios_a_float_cannot_carry_are_refused(ratio: Decimal, fragment: str) -> None:
    error = rejection(mutated(GOKIT_DOC, {f"{A}/5/uint_spec/ratio": ratio}))
    assert error.pointer == f"{A}/5/uint_spec/ratio"
    assert fragment in error.reason


# ---- 5. frozen model ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "field", "value"),
    [
        pytest.param(lambda s: s["LED_R"], "name", "LED_X", id="datapoint-name"),
        pytest.param(lambda s: s["LED_R"], "id", 99, id="datapoint-id"),
        pytest.param(lambda s: s["LED_R"], "uint_spec", None, id="datapoint-uint_spec"),
        pytest.param(lambda s: s["LED_R"].position, "byte_offset", 7, id="position"),
        pytest.param(lambda s: s["Motor_Speed"].uint_spec, "addition", Decimal(0), id="uint_spec"),
        pytest.param(lambda s: s, "product_key", None, id="product"),
        pytest.param(lambda s: s, "datapoints", (), id="product-datapoints"),
    ],
)
def test_model_is_frozen(target: Any, field: str, value: Any) -> None:
    schema = load_schema(GOKIT_PATH)
    obj = target(schema)
    before = getattr(obj, field)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, value)
    assert getattr(obj, field) == before


def test_collections_in_model_are_immutable() -> None:
    schema = load_schema(GOKIT_PATH)
    assert isinstance(schema.datapoints, tuple)
    assert isinstance(schema["LED_Color"].enum, tuple)
    assert isinstance(schema.writable, tuple)
