"""Per-product fast path for the full fixed-length ``dev_status`` (reports and read replies).

construct, even compiled, decodes a GoKit report at roughly 35,000 frames/s here; a bridge relaying reports and
the cloud decoding them want several times that. So for each product we generate, from the same
:class:`~gizdev.schema.layout.FixedLayout` that the construct declaration in :mod:`gizdev.codec.layouts` is built
from, two straight-line functions around one precompiled :class:`struct.Struct`. The common cases (bools, enums,
integer scaling) are inlined; anything unusual falls back to the datapoint's :class:`PointCodec`, which is also
what the construct path uses, so both agree by construction on values and are tested against each other on
layouts (``tests/codec/test_fastpath.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from gizdev.codec.values import Anomaly, PointCodec, Value
from gizdev.errors import PayloadError
from gizdev.schema.layout import BitRegion, ByteField, FixedLayout
from gizdev.schema.model import DataType

__all__ = ["StatusCodec"]

_INT_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}

DecodeFn = Callable[[bytes, int], tuple[dict[str, Value], tuple[Anomaly, ...]]]
EncodeFn = Callable[[Mapping[str, object]], bytes]


class StatusCodec:
    """Generated ``decode(payload, offset)`` and ``encode(attrs)`` for one product's full device status."""

    def __init__(
        self,
        layout: FixedLayout,
        codecs: Mapping[str, PointCodec],
        find_anomalies: Callable[[bytes], tuple[Anomaly, ...]],
        report_bad_names: Callable[[Mapping[str, object]], PayloadError],
    ) -> None:
        self.size = layout.status_len
        fmt, slots = _struct_format(layout)
        self.struct = struct.Struct(fmt)
        namespace: dict[str, Any] = {
            "_S": self.struct,
            "_find_anomalies": find_anomalies,
            "_bad_names": report_bad_names,
            "_KEYS": frozenset(codecs),
        }
        decode_src = _decode_source(layout, slots, codecs, namespace)
        encode_src = _encode_source(layout, slots, codecs, namespace)
        self.source = decode_src + "\n" + encode_src
        exec(compile(self.source, f"<gizdev status codec {id(self):x}>", "exec"), namespace)
        self.decode: DecodeFn = namespace["decode"]
        self.encode: EncodeFn = namespace["encode"]


def _struct_format(layout: FixedLayout) -> tuple[str, list[tuple[BitRegion | ByteField, bool]]]:
    """One struct format for the whole status; slots say per item whether it unpacks as bytes."""
    parts = [">"]
    slots: list[tuple[BitRegion | ByteField, bool]] = []
    cursor = 0
    for item in layout.items:
        if item.start > cursor:
            parts.append(f"{item.start - cursor}x")
        as_int = item.size in _INT_FORMATS and (
            isinstance(item, BitRegion) or item.datapoint.data_type is not DataType.BINARY
        )
        parts.append(_INT_FORMATS[item.size] if as_int else f"{item.size}s")
        slots.append((item, not as_int))
        cursor = item.start + item.size
    if layout.status_len > cursor:
        parts.append(f"{layout.status_len - cursor}x")
    return "".join(parts), slots


def _decode_source(
    layout: FixedLayout,
    slots: list[tuple[BitRegion | ByteField, bool]],
    codecs: Mapping[str, PointCodec],
    namespace: dict[str, Any],
) -> str:
    names = [f"t{index}" for index in range(len(slots))]
    lines = ["def decode(p, o):"]
    lines.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = _S.unpack_from(p, o)")
    entries: list[str] = []
    suspicious: list[str] = []
    for (item, is_bytes), var in zip(slots, names, strict=True):
        if isinstance(item, BitRegion):
            if is_bytes:  # regions of 3, 5, 6 or 7 bytes have no struct code
                lines.append(f"    {var} = int.from_bytes({var}, 'big')")
            for dp in item.members:
                codec = codecs[dp.name]
                shift, mask = dp.position.bit_offset, (1 << dp.bit_len) - 1
                raw = f"({var} >> {shift} & {mask})" if shift else f"({var} & {mask})"
                if dp.data_type is DataType.BOOL:
                    entries.append(f"{dp.name!r}: {raw} == 1")
                else:
                    table = f"_E{dp.id}"
                    # Indexes past the last member decode to the bare number (reported as an anomaly).
                    namespace[table] = tuple(dp.enum) + tuple(range(len(dp.enum), mask + 1))
                    entries.append(f"{dp.name!r}: {table}[{raw}]")
                    if codec.raw_max < mask:
                        suspicious.append(f"{raw} > {codec.raw_max}")
            continue
        dp = item.datapoint
        codec = codecs[dp.name]
        if dp.data_type is DataType.BINARY:
            entries.append(f"{dp.name!r}: {var}")
            continue
        spec = dp.uint_spec
        assert spec is not None
        if codec.raw_min > 0:
            suspicious.append(f"{var} < {codec.raw_min}")
        if codec.raw_max < codec.raw_limit:
            suspicious.append(f"{var} > {codec.raw_max}")
        if spec.ratio == 1 and codec.integral:
            addition = int(spec.addition)
            entries.append(f"{dp.name!r}: {var} + {addition}" if addition else f"{dp.name!r}: {var}")
        else:
            namespace[f"_D{dp.id}"] = codec.from_raw
            entries.append(f"{dp.name!r}: _D{dp.id}({var})")
    lines.append("    a = {" + ", ".join(entries) + "}")
    if suspicious:
        lines.append(f"    if {' or '.join(suspicious)}:")
        lines.append(f"        return a, _find_anomalies(p[o:o + {layout.status_len}])")
    lines.append("    return a, ()")
    return "\n".join(lines) + "\n"


def _encode_source(
    layout: FixedLayout,
    slots: list[tuple[BitRegion | ByteField, bool]],
    codecs: Mapping[str, PointCodec],
    namespace: dict[str, Any],
) -> str:
    lines = ["def encode(a):", f"    if len(a) != {len(codecs)}:", "        raise _bad_names(a)", "    try:"]
    for index, name in enumerate(codecs):
        lines.append(f"        v{index} = a[{name!r}]")
    lines += ["    except (KeyError, TypeError):", "        raise _bad_names(a) from None"]
    var_of = {name: f"v{index}" for index, name in enumerate(codecs)}
    packed: list[str] = []
    for item, is_bytes in slots:
        if isinstance(item, BitRegion):
            terms: list[str] = []
            for dp in item.members:
                value, raw = var_of[dp.name], f"x{dp.id}"
                namespace[f"_C{dp.id}"] = codecs[dp.name].to_raw
                if dp.data_type is DataType.BOOL:
                    lines += [
                        f"    if {value} is True: {raw} = 1",
                        f"    elif {value} is False: {raw} = 0",
                        f"    else: {raw} = _C{dp.id}({value})",
                    ]
                else:
                    namespace[f"_I{dp.id}"] = codecs[dp.name].enum_index
                    lines += [
                        f"    {raw} = _I{dp.id}.get({value}) if {value}.__class__ is str else None",
                        f"    if {raw} is None: {raw} = _C{dp.id}({value})",
                    ]
                shift = dp.position.bit_offset
                terms.append(f"{raw} << {shift}" if shift else raw)
            region = " | ".join(terms)
            packed.append(f"({region}).to_bytes({item.size}, 'big')" if is_bytes else f"({region})")
            continue
        dp = item.datapoint
        codec = codecs[dp.name]
        value, raw = var_of[dp.name], f"x{dp.id}"
        namespace[f"_C{dp.id}"] = codec.to_raw
        spec = dp.uint_spec
        if spec is not None and spec.ratio == 1 and codec.integral:
            addition = int(spec.addition)
            low, high = codec.raw_min + addition, codec.raw_max + addition
            lines += [
                f"    if {value}.__class__ is int and {low} <= {value} <= {high}: {raw} = {value} - {addition}",
                f"    else: {raw} = _C{dp.id}({value})",
            ]
        else:  # fractional scaling and binary: the point codec validates (binary length included)
            lines.append(f"    {raw} = _C{dp.id}({value})")
        packed.append(raw)
    lines.append(f"    return _S.pack({', '.join(packed)})")
    return "\n".join(lines) + "\n"
