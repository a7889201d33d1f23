"""Load and validate a Gizwits datapoint JSON export into a :class:`ProductSchema`.

Every rejection is a :class:`SchemaError` whose ``pointer`` is the JSON pointer of the offending field, so a user
can find it in a file of hundreds of lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from gizdev.errors import SchemaError, SchemaFileError
from gizdev.schema.layout import compute_layout
from gizdev.schema.model import (
    UINT_WIDTH_BYTES,
    AttrType,
    Datapoint,
    DataType,
    Position,
    ProductSchema,
    ProtocolType,
    UintSpec,
)

__all__ = ["load_schema", "parse_schema", "schema_to_json"]

_Choice = TypeVar("_Choice", AttrType, DataType)

MAX_DATAPOINTS = 1024
MAX_NAME_LEN = 128
MAX_ENUM_MEMBERS = 1 << 16
MAX_SCHEMA_BYTES = 4 * 1024 * 1024
_PRODUCT_KEY = re.compile(r"[0-9a-fA-F]{32}")
#: Ratios and additions are kept to what a float carries exactly, so that schema_to_json round-trips them.
MAX_SIGNIFICANT_DIGITS = 15
MIN_RATIO = Decimal("1e-9")
MAX_MAGNITUDE = Decimal(2**40)


def _show(value: object) -> str:
    """A short, always printable rendering of a value for an error message."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a huge integer"
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) > 40:
        return "a number of extreme magnitude"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_schema(path: str | Path) -> ProductSchema:
    """Read a schema file; JSON syntax errors and invalid fields become SchemaError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SchemaFileError(str(path), exc.strerror or str(exc)) from exc
    if len(raw) > MAX_SCHEMA_BYTES:
        raise SchemaError("", f"file of {len(raw)} bytes is larger than {MAX_SCHEMA_BYTES}", source=str(path))
    try:
        # Decimal keeps ratios such as 0.1 exact, so that scaled values come out as 23.4, not 23.400000000000002.
        document = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, over-long integers, deep nesting
        raise SchemaError("", f"not valid JSON: {exc}", source=str(path)) from exc
    return parse_schema(document, source=str(path))


def parse_schema(document: Any, *, source: str | None = None) -> ProductSchema:
    """Validate an already-parsed schema document (floats may be float or Decimal)."""
    try:
        return _Parser().product(document)
    except SchemaError as exc:
        if source and not exc.source:
            exc.source = source
        raise


class _Parser:
    def product(self, doc: Any) -> ProductSchema:
        doc = self._object(doc, "")
        name = self._optional_str(doc, "name", "") or "product"
        product_key = doc.get("product_key")
        if product_key is not None and not (isinstance(product_key, str) and _PRODUCT_KEY.fullmatch(product_key)):
            raise SchemaError("/product_key", "must be 32 hexadecimal characters")
        protocol = doc.get("protocolType", ProtocolType.FIXED.value)
        try:
            protocol_type = ProtocolType(protocol)
        except ValueError:
            raise SchemaError(
                "/protocolType", f"unknown protocol type {_show(protocol)} (expected 'standard' or 'var_len')"
            ) from None
        packet_version = self._optional_str(doc, "packetVersion", "0x00000004")

        entities = doc.get("entities")
        if not isinstance(entities, list) or not entities:
            raise SchemaError("/entities", "must be a non-empty array")
        if len(entities) > 1:
            raise SchemaError("/entities/1", "products with more than one entity are not supported")
        entity = self._object(entities[0], "/entities/0")
        attrs = entity.get("attrs")
        if not isinstance(attrs, list) or not attrs:
            raise SchemaError("/entities/0/attrs", "must be a non-empty array")
        if len(attrs) > MAX_DATAPOINTS:
            raise SchemaError("/entities/0/attrs", f"{len(attrs)} datapoints exceed the limit of {MAX_DATAPOINTS}")

        points: list[Datapoint] = []
        pointers: dict[int, str] = {}
        names: dict[str, str] = {}
        for index, attr in enumerate(attrs):
            pointer = f"/entities/0/attrs/{index}"
            dp = self.datapoint(attr, pointer)
            if dp.id in pointers:
                raise SchemaError(pointer + "/id", f"duplicate id {dp.id} (also at {pointers[dp.id]})")
            if dp.name in names:
                raise SchemaError(pointer + "/name", f"duplicate name {dp.name!r} (also at {names[dp.name]})")
            pointers[dp.id] = pointer
            names[dp.name] = pointer
            points.append(dp)
        points.sort(key=lambda dp: dp.id)
        datapoints = tuple(points)
        # Validates positions (overlaps, region consistency, writable prefix) for both formats: in a
        # variable-length product they describe the SDK's status struct even though the wire ignores them.
        compute_layout(
            datapoints,
            lambda dp: pointers[dp.id],
            writable_first=protocol_type is ProtocolType.FIXED,
        )
        return ProductSchema(
            name=name,
            product_key=product_key.lower() if product_key else None,
            protocol_type=protocol_type,
            datapoints=datapoints,
            packet_version=packet_version,
        )

    def datapoint(self, attr: Any, pointer: str) -> Datapoint:
        attr = self._object(attr, pointer)
        dp_id = self._int(attr, "id", pointer, minimum=0, maximum=MAX_DATAPOINTS - 1)
        name = attr.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LEN or not name.isprintable():
            raise SchemaError(
                pointer + "/name",
                f"must be a non-empty string of at most {MAX_NAME_LEN} printable characters",
            )
        attr_type = self._choice(attr, "type", AttrType, pointer)
        data_type = self._choice(attr, "data_type", DataType, pointer)
        if attr_type in (AttrType.ALERT, AttrType.FAULT) and data_type is not DataType.BOOL:
            raise SchemaError(pointer + "/data_type", f"{attr_type.value} datapoints must be bool")
        position = self.position(attr.get("position"), pointer + "/position")

        enum: tuple[str, ...] = ()
        uint_spec: UintSpec | None = None
        if data_type is DataType.BOOL:
            self._expect_position(position, "bit", 1, pointer, "a bool takes 1 bit")
        elif data_type is DataType.ENUM:
            enum = self.enum(attr.get("enum"), pointer + "/enum")
            bits = max(1, (len(enum) - 1).bit_length())
            self._expect_position(position, "bit", bits, pointer, f"an enum of {len(enum)} members takes {bits} bits")
        elif data_type is DataType.BINARY:
            if position.unit != "byte":
                raise SchemaError(pointer + "/position/unit", "binary datapoints are measured in bytes")
        else:
            width = UINT_WIDTH_BYTES[data_type]
            self._expect_position(position, "byte", width, pointer, f"{data_type.value} takes {width} bytes")
            uint_spec = self.uint_spec(attr.get("uint_spec"), pointer + "/uint_spec", width)

        return Datapoint(
            id=dp_id,
            name=name,
            type=attr_type,
            data_type=data_type,
            position=position,
            display_name=self._optional_str(attr, "display_name", name, pointer),
            desc=self._optional_str(attr, "desc", "", pointer),
            uint_spec=uint_spec,
            enum=enum,
        )

    def position(self, doc: Any, pointer: str) -> Position:
        if doc is None:
            raise SchemaError(pointer, "is missing")
        doc = self._object(doc, pointer)
        unit = doc.get("unit")
        if unit not in ("bit", "byte"):
            raise SchemaError(pointer + "/unit", "must be 'bit' or 'byte'")
        length = self._int(doc, "len", pointer, minimum=1, maximum=4096)
        return Position(
            byte_offset=self._int(doc, "byte_offset", pointer, minimum=0, maximum=4095),
            bit_offset=self._int(doc, "bit_offset", pointer, minimum=0, maximum=8 * 4096 - 1),
            len=length,
            unit=unit,
        )

    def enum(self, doc: Any, pointer: str) -> tuple[str, ...]:
        if not isinstance(doc, list) or not doc:
            raise SchemaError(pointer, "an enum needs a non-empty list of member names")
        if len(doc) > MAX_ENUM_MEMBERS:
            raise SchemaError(pointer, f"{len(doc)} members exceed the limit of {MAX_ENUM_MEMBERS}")
        seen: set[str] = set()
        for index, member in enumerate(doc):
            if not isinstance(member, str) or not member:
                raise SchemaError(f"{pointer}/{index}", "enum members must be non-empty strings")
            if member in seen:
                raise SchemaError(f"{pointer}/{index}", f"duplicate enum member {member!r}")
            seen.add(member)
        return tuple(doc)

    def uint_spec(self, doc: Any, pointer: str, width: int) -> UintSpec:
        if doc is None:
            raise SchemaError(pointer, "is missing (numbers need min, max, ratio and addition)")
        doc = self._object(doc, pointer)
        limit = (1 << (8 * width)) - 1
        minimum = self._int(doc, "min", pointer, minimum=0, maximum=limit)
        maximum = self._int(doc, "max", pointer, minimum=0, maximum=limit)
        if minimum > maximum:
            raise SchemaError(pointer + "/min", f"min {minimum} is greater than max {maximum}")
        ratio = self._decimal(doc, "ratio", pointer, Decimal(1))
        if ratio < MIN_RATIO:
            raise SchemaError(pointer + "/ratio", f"ratio must be positive (at least {MIN_RATIO}), not {_show(ratio)}")
        addition = self._decimal(doc, "addition", pointer, Decimal(0))
        return UintSpec(min=minimum, max=maximum, ratio=ratio, addition=addition)

    # ---- small typed getters -------------------------------------------------------------------------------

    @staticmethod
    def _object(doc: Any, pointer: str) -> Mapping[str, Any]:
        if not isinstance(doc, Mapping):
            raise SchemaError(pointer, f"must be an object, not {type(doc).__name__}")
        return doc

    @staticmethod
    def _int(doc: Mapping[str, Any], key: str, pointer: str, *, minimum: int, maximum: int) -> int:
        value = doc.get(key)
        if isinstance(value, float | Decimal) and not isinstance(value, bool):
            # Checked before int(): int(Decimal("1e999999999")) would take minutes and gigabytes.
            exact = Decimal(repr(value)) if isinstance(value, float) else value
            if not exact.is_finite() or exact.adjusted() > 18 or exact != exact.to_integral_value():
                raise SchemaError(f"{pointer}/{key}", f"must be an integer, not {_show(value)}")
            value = int(exact)
        if not isinstance(value, int) or isinstance(value, bool):
            raise SchemaError(f"{pointer}/{key}", "must be an integer" if value is not None else "is missing")
        if not minimum <= value <= maximum:
            raise SchemaError(f"{pointer}/{key}", f"{_show(value)} is outside {minimum}..{maximum}")
        return value

    @staticmethod
    def _decimal(doc: Mapping[str, Any], key: str, pointer: str, default: Decimal) -> Decimal:
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise SchemaError(f"{pointer}/{key}", "must be a number")
        # repr() gives the shortest text that round-trips, so a float 0.1 becomes exactly Decimal("0.1").
        if isinstance(value, int) and value.bit_length() > 64:
            raise SchemaError(f"{pointer}/{key}", f"{_show(value)} is not a usable number")
        number = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
        if not number.is_finite() or abs(number) > MAX_MAGNITUDE:
            raise SchemaError(f"{pointer}/{key}", f"{_show(value)} is not a usable number")
        if number and len(number.normalize().as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
            raise SchemaError(
                f"{pointer}/{key}", f"{_show(value)} has more than {MAX_SIGNIFICANT_DIGITS} significant digits"
            )
        return number

    @staticmethod
    def _optional_str(doc: Mapping[str, Any], key: str, default: str, pointer: str = "") -> str:
        value = doc.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise SchemaError(f"{pointer}/{key}", "must be a string")
        return value

    @staticmethod
    def _choice(doc: Mapping[str, Any], key: str, kind: type[_Choice], pointer: str) -> _Choice:
        value = doc.get(key)
        try:
            return kind(str(value))
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise SchemaError(f"{pointer}/{key}", f"unknown {key} {_show(value)} (expected one of {allowed})") from None

    @staticmethod
    def _expect_position(position: Position, unit: str, length: int, pointer: str, why: str) -> None:
        if position.unit != unit:
            raise SchemaError(pointer + "/position/unit", f"must be {unit!r}: {why}")
        if position.len != length:
            raise SchemaError(pointer + "/position/len", f"is {position.len}, but {why}")


def schema_to_json(schema: ProductSchema) -> dict[str, Any]:
    """The schema back in the console's export format (as served by GET /app/datapoint)."""

    def number(value: Decimal) -> int | float:
        return int(value) if value == value.to_integral_value() else float(value)

    attrs: list[dict[str, Any]] = []
    for dp in schema.datapoints:
        attr: dict[str, Any] = {
            "id": dp.id,
            "name": dp.name,
            "display_name": dp.display_name,
            "desc": dp.desc,
            "type": dp.type.value,
            "data_type": dp.data_type.value,
            "position": {
                "byte_offset": dp.position.byte_offset,
                "bit_offset": dp.position.bit_offset,
                "len": dp.position.len,
                "unit": dp.position.unit,
            },
        }
        if dp.enum:
            attr["enum"] = list(dp.enum)
        if dp.uint_spec is not None:
            spec = dp.uint_spec
            attr["uint_spec"] = {
                "min": spec.min,
                "max": spec.max,
                "ratio": number(spec.ratio),
                "addition": number(spec.addition),
            }
        attrs.append(attr)
    document: dict[str, Any] = {
        "name": schema.name,
        "packetVersion": schema.packet_version,
        "protocolType": schema.protocol_type.value,
        "entities": [{"id": 0, "name": "entity0", "display_name": schema.name, "attrs": attrs}],
    }
    if schema.product_key:
        document["product_key"] = schema.product_key
    return document
