"""Where each datapoint lives in the fixed-length ``dev_status`` (serial protocol §4.3-§4.5), with validation.

bool/enum points of one ``type`` (writable, read-only, alert, fault) share one bit region: an R-byte big-endian
integer in which a point with ``bit_offset`` o and ``len`` L holds ``value << o``. Numbers and binary points take
whole bytes at ``byte_offset``. The writable part comes first, because a write carries it whole as ``attr_vals``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from gizdev.errors import SchemaError
from gizdev.schema.model import AttrType, Datapoint

__all__ = ["BitRegion", "ByteField", "FixedLayout", "compute_layout"]

#: Bound on dev_status so that a hostile schema cannot ask for huge buffers; a serial frame caps P0 far lower.
MAX_STATUS_LEN = 4096


@dataclass(frozen=True, slots=True)
class BitRegion:
    start: int
    size: int
    type: AttrType
    members: tuple[Datapoint, ...]  # in id order


@dataclass(frozen=True, slots=True)
class ByteField:
    datapoint: Datapoint
    start: int
    size: int


@dataclass(frozen=True, slots=True)
class FixedLayout:
    items: tuple[BitRegion | ByteField, ...]  # in byte order
    status_len: int  # bytes of dev_status
    writable_len: int  # bytes of attr_vals: the writable prefix of dev_status

    @property
    def regions(self) -> tuple[BitRegion, ...]:
        return tuple(item for item in self.items if isinstance(item, BitRegion))


def _span(item: BitRegion | ByteField) -> tuple[int, int]:
    return item.start, item.start + item.size


def compute_layout(
    datapoints: tuple[Datapoint, ...],
    pointer_of: Callable[[Datapoint], str],
    *,
    writable_first: bool = True,
) -> FixedLayout:
    """Group bit points into regions, check that nothing overlaps, and find the writable prefix.

    ``writable_first`` enforces what a fixed-length write needs; variable-length products interleave freely.
    """
    items: list[BitRegion | ByteField] = []
    for attr_type in AttrType:
        members = tuple(dp for dp in datapoints if dp.is_bits and dp.type is attr_type)
        if members:
            items.append(_region(attr_type, members, pointer_of))
    items.extend(ByteField(dp, dp.position.byte_offset, dp.byte_len) for dp in datapoints if not dp.is_bits)
    items.sort(key=lambda item: (item.start, item.size))

    for before, after in itertools.pairwise(items):
        if _span(after)[0] < _span(before)[1]:
            raise SchemaError(_pointer(after, pointer_of) + "/position", f"overlaps {_describe(before)}")

    status_len = max((_span(item)[1] for item in items), default=0)
    if status_len > MAX_STATUS_LEN:
        raise SchemaError("/entities/0/attrs", f"device status of {status_len} bytes exceeds {MAX_STATUS_LEN}")

    writable = [item for item in items if _item_type(item) is AttrType.WRITABLE]
    others = [item for item in items if _item_type(item) is not AttrType.WRITABLE]
    writable_len = max((_span(item)[1] for item in writable), default=0)
    for item in others:
        if writable_first and item.start < writable_len:
            raise SchemaError(
                _pointer(item, pointer_of) + "/position/byte_offset",
                f"non-writable data lies inside the writable part (bytes 0..{writable_len - 1}); "
                "a fixed-length write carries that part whole, so writable datapoints must come first",
            )
    return FixedLayout(tuple(items), status_len, writable_len)


def _region(attr_type: AttrType, members: tuple[Datapoint, ...], pointer_of: Callable[[Datapoint], str]) -> BitRegion:
    start = min(dp.position.byte_offset for dp in members)
    used = 0
    for dp in members:
        pos = dp.position
        expected_byte = start + pos.bit_offset // 8
        if pos.byte_offset != expected_byte:
            raise SchemaError(
                pointer_of(dp) + "/position/byte_offset",
                f"bit {pos.bit_offset} of the {attr_type.value} bit region starting at byte {start} "
                f"is in byte {expected_byte}, not {pos.byte_offset}",
            )
        mask = ((1 << pos.len) - 1) << pos.bit_offset
        if used & mask:
            raise SchemaError(pointer_of(dp) + "/position/bit_offset", "overlaps another point's bits")
        used |= mask
    size = (used.bit_length() + 7) // 8
    return BitRegion(start, size, attr_type, members)


def _item_type(item: BitRegion | ByteField) -> AttrType:
    return item.type if isinstance(item, BitRegion) else item.datapoint.type


def _pointer(item: BitRegion | ByteField, pointer_of: Callable[[Datapoint], str]) -> str:
    dp = item.members[0] if isinstance(item, BitRegion) else item.datapoint
    return pointer_of(dp)


def _describe(item: BitRegion | ByteField) -> str:
    first, end = _span(item)
    if isinstance(item, BitRegion):
        return f"the {item.type.value} bit region (bytes {first}..{end - 1})"
    return f"{item.datapoint.name!r} (bytes {first}..{end - 1})"
