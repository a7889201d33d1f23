"""Frozen, typed model of a Gizwits product datapoint schema (the console's JSON export)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

__all__ = [
    "AttrType",
    "DataType",
    "Datapoint",
    "Position",
    "ProductSchema",
    "ProtocolType",
    "UintSpec",
]


class DataType(StrEnum):
    BOOL = "bool"
    ENUM = "enum"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    BINARY = "binary"


#: Width in bytes of each fixed-width number type (serial protocol §4.2).
UINT_WIDTH_BYTES = {DataType.UINT8: 1, DataType.UINT16: 2, DataType.UINT32: 4}


class AttrType(StrEnum):
    WRITABLE = "status_writable"
    READONLY = "status_readonly"
    ALERT = "alert"
    FAULT = "fault"


class ProtocolType(StrEnum):
    """Which P0 format the product uses (serial protocol §4.5 / §4.6)."""

    FIXED = "standard"
    VARLEN = "var_len"


@dataclass(frozen=True, slots=True)
class Position:
    byte_offset: int
    bit_offset: int
    len: int
    unit: str  # "bit" or "byte"


@dataclass(frozen=True, slots=True)
class UintSpec:
    """Raw (transmitted) range and the scaling y = x * ratio + addition to app units."""

    min: int
    max: int
    ratio: Decimal
    addition: Decimal

    @property
    def is_integral(self) -> bool:
        """True when every app value is an integer (integer ratio and addition)."""
        return self.ratio == self.ratio.to_integral_value() and self.addition == self.addition.to_integral_value()

    def to_app(self, raw: int) -> Decimal:
        return raw * self.ratio + self.addition


@dataclass(frozen=True, slots=True)
class Datapoint:
    id: int
    name: str
    type: AttrType
    data_type: DataType
    position: Position
    display_name: str = ""
    desc: str = ""
    uint_spec: UintSpec | None = None
    enum: tuple[str, ...] = ()

    @property
    def writable(self) -> bool:
        return self.type is AttrType.WRITABLE

    @property
    def is_bits(self) -> bool:
        """bool and enum points live in a bit region; numbers and binary in whole bytes."""
        return self.data_type in (DataType.BOOL, DataType.ENUM)

    @property
    def bit_len(self) -> int:
        """Bits taken in a bit region (bool/enum only)."""
        return self.position.len

    @property
    def byte_len(self) -> int:
        """Bytes taken by a number or binary point."""
        return self.position.len


@dataclass(frozen=True, slots=True)
class ProductSchema:
    name: str
    product_key: str | None
    protocol_type: ProtocolType
    datapoints: tuple[Datapoint, ...]  # sorted by id
    packet_version: str = "0x00000004"
    _by_name: dict[str, Datapoint] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {dp.name: dp for dp in self.datapoints})

    @property
    def is_varlen(self) -> bool:
        return self.protocol_type is ProtocolType.VARLEN

    def get(self, name: str) -> Datapoint | None:
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> Datapoint:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dp.name for dp in self.datapoints)

    @property
    def writable(self) -> tuple[Datapoint, ...]:
        """Writable points in id order: writable point k is bit k of a fixed-length write's attr_flags."""
        return tuple(dp for dp in self.datapoints if dp.writable)
