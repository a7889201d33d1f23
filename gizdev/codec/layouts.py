"""construct declarations of a product's P0 bodies, generated once per product from its schema.

These layouts work on *raw* values (bit fields and unsigned integers before scaling) keyed by datapoint id;
:mod:`gizdev.codec.values` turns them into app values. They are the reference for the generated fast path in
:mod:`gizdev.codec.fastpath`, and the runtime path for writes and variable-length bodies.

Field names are ``p<id>`` rather than datapoint names, so a datapoint called ``flags`` cannot collide with ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import construct as cs

from gizdev.schema.layout import BitRegion, ByteField, FixedLayout
from gizdev.schema.model import Datapoint, DataType, ProductSchema

__all__ = ["FixedLayouts", "VarlenLayouts", "flags_len", "raw_construct"]

Raw = int | bytes
RawValues = dict[int, Raw]

_UINT = {DataType.UINT8: cs.Int8ub, DataType.UINT16: cs.Int16ub, DataType.UINT32: cs.Int32ub}


def _field(dp: Datapoint) -> str:
    return f"p{dp.id}"


def raw_construct(dp: Datapoint) -> Any:
    """The byte-aligned construct of a number or binary point."""
    if dp.data_type is DataType.BINARY:
        return cs.Bytes(dp.byte_len)
    return _UINT[dp.data_type]


def flags_len(count: int) -> int:
    """Bytes of a flag field with ``count`` bits (attr_flags, variable-length flags)."""
    return (count + 7) // 8


def _region_construct(region: BitRegion) -> Any:
    """A bit region is one big-endian integer whose bit 0 is the last wire bit: declare it MSB first."""
    fields: list[Any] = []
    cursor = region.size * 8  # bit position (from the LSB) just above the next field to emit
    for dp in sorted(region.members, key=lambda dp: dp.position.bit_offset, reverse=True):
        top = dp.position.bit_offset + dp.bit_len
        if cursor > top:
            fields.append(cs.Padding(cursor - top))
        fields.append(_field(dp) / cs.BitsInteger(dp.bit_len))
        cursor = dp.position.bit_offset
    if cursor:
        fields.append(cs.Padding(cursor))
    return cs.BitStruct(*fields)


class FixedLayouts:
    """dev_status and the fixed-length write (``attr_flags`` + ``attr_vals``) of one product."""

    def __init__(self, schema: ProductSchema, layout: FixedLayout) -> None:
        self.layout = layout
        self.writable = schema.writable
        self.flags_len = flags_len(len(self.writable))
        self.status = self._status_struct(layout.items, layout.status_len)
        writable_items = tuple(item for item in layout.items if item.start < layout.writable_len)
        self.attr_vals = self._status_struct(writable_items, layout.writable_len)
        self.write = cs.Struct("attr_flags" / cs.BytesInteger(self.flags_len), "attr_vals" / self.attr_vals)

    @staticmethod
    def _status_struct(items: tuple[BitRegion | ByteField, ...], total: int) -> Any:
        fields: list[Any] = []
        cursor = 0
        for index, item in enumerate(items):
            if item.start > cursor:
                fields.append(cs.Padding(item.start - cursor))
            if isinstance(item, BitRegion):
                fields.append(f"r{index}" / _region_construct(item))
            else:
                fields.append(_field(item.datapoint) / raw_construct(item.datapoint))
            cursor = item.start + item.size
        if total > cursor:
            fields.append(cs.Padding(total - cursor))
        return cs.Struct(*fields)

    def parse_status(self, data: bytes) -> RawValues:
        return _flatten(self.status.parse(data))

    def build_status(self, raws: Mapping[int, Raw]) -> bytes:
        return bytes(self.status.build(_nest(self.status, raws)))

    def parse_write(self, data: bytes) -> tuple[int, RawValues]:
        parsed = self.write.parse(data)
        return int(parsed.attr_flags), _flatten(parsed.attr_vals)

    def build_write(self, attr_flags: int, raws: Mapping[int, Raw]) -> bytes:
        """attr_vals with every unflagged position zero (what the spec leaves to the sender)."""
        values = {dp.id: raws.get(dp.id, _zero(dp)) for dp in self.writable}
        return bytes(self.write.build({"attr_flags": attr_flags, "attr_vals": _nest(self.attr_vals, values)}))


class VarlenLayouts:
    """``flags | bit region of the present bool/enum points | values of the present numbers`` (§4.6)."""

    def __init__(self, schema: ProductSchema) -> None:
        points = schema.datapoints
        self.flags_len = flags_len(max(dp.id for dp in points) + 1)
        bit_points = [dp for dp in points if dp.is_bits]

        def present(dp: Datapoint) -> Callable[[Any], bool]:
            return lambda ctx: bool(ctx._.flags >> dp.id & 1)

        def padding(ctx: Any) -> int:
            used = sum(dp.bit_len for dp in bit_points if ctx._.flags >> dp.id & 1)
            return -used % 8

        # Present points pack from bit 0 upwards in id order, so MSB-first they come in reverse.
        bits = cs.Struct(
            "pad" / cs.Padding(padding),
            *(_field(dp) / cs.If(present(dp), cs.BitsInteger(dp.bit_len)) for dp in reversed(bit_points)),
        )
        values = [
            _field(dp) / cs.If(lambda ctx, dp=dp: bool(ctx.flags >> dp.id & 1), raw_construct(dp))
            for dp in points
            if not dp.is_bits
        ]
        self._bit_ids = [dp.id for dp in bit_points]
        self._value_ids = [dp.id for dp in points if not dp.is_bits]
        self.body = cs.Struct(
            "flags" / cs.BytesInteger(self.flags_len), "bits" / cs.Bitwise(bits), *values, "end" / cs.Tell
        )
        self.flags = cs.BytesInteger(self.flags_len)

    def parse_body(self, data: bytes) -> tuple[int, RawValues, int]:
        """(flags, raw values of the flagged points, bytes consumed); bytes after the last value are ignored."""
        parsed = self.body.parse(data)
        return int(parsed.flags), _flatten(parsed), int(parsed.end)

    def build_body(self, flags: int, raws: Mapping[int, Raw]) -> bytes:
        nested: dict[str, Any] = {f"p{dp_id}": raws.get(dp_id) for dp_id in self._value_ids}
        nested["flags"] = flags
        nested["bits"] = {f"p{dp_id}": raws.get(dp_id) for dp_id in self._bit_ids}
        return bytes(self.body.build(nested))


def _zero(dp: Datapoint) -> Raw:
    return bytes(dp.byte_len) if dp.data_type is DataType.BINARY else 0


def _flatten(container: Any) -> RawValues:
    """{id: raw} from a parsed container, descending into bit regions; absent (None) fields are left out."""
    raws: RawValues = {}
    for key, value in container.items():
        if key.startswith("_") or value is None:
            continue
        if key[0] == "p":
            raws[int(key[1:])] = value if isinstance(value, int) else bytes(value)
        elif isinstance(value, dict):
            raws.update(_flatten(value))
    return raws


def _nest(struct: Any, raws: Mapping[int, Raw]) -> dict[str, Any]:
    """The build dict for a status struct: region sub-dicts hold their members' raw values."""
    nested: dict[str, Any] = {}
    for sub in struct.subcons:
        if not sub.name:
            continue
        if sub.name[0] == "p":
            nested[sub.name] = raws[int(sub.name[1:])]
        else:  # a bit region: BitStruct = Transformed(Struct)
            nested[sub.name] = {bit.name: raws[int(bit.name[1:])] for bit in sub.subcon.subcon.subcons if bit.name}
    return nested
