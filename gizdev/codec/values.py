"""App value <-> raw value conversion for one datapoint (serial protocol §4.2).

App values: ``bool``; an enum's label (``str``; an index is accepted on input); numbers after scaling
``y = x * ratio + addition`` (``int`` when ratio and addition are integers, else the ``float`` nearest to the exact
decimal result, so ratio 0.1 gives 23.4); binary as ``bytes`` of exactly the declared length.

The vendor SDK silently truncates out-of-range numbers and never checks types; we refuse them instead, with the
datapoint's path in the error.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from gizdev.errors import PayloadError
from gizdev.schema.model import UINT_WIDTH_BYTES, Datapoint, DataType

__all__ = ["Anomaly", "PointCodec", "Value"]

Value = bool | int | float | str | bytes

#: How far (in steps of the ratio) a float may sit from the grid and still count as on it: absorbs float noise
#: such as 0.1 + 0.2, refuses values that really fall between two steps.
_GRID_TOLERANCE = Decimal("1e-6")


class Anomaly(NamedTuple):
    """Something a decoder accepted but that the schema does not allow (kept, not dropped: forward compatible)."""

    name: str
    reason: str


class PointCodec:
    """Validates and converts the values of one datapoint; shared by the construct layouts and the fast path."""

    __slots__ = (
        "app_max",
        "app_min",
        "datapoint",
        "enum_index",
        "integral",
        "name",
        "path",
        "raw_limit",
        "raw_max",
        "raw_min",
        "spec",
    )

    def __init__(self, datapoint: Datapoint) -> None:
        self.datapoint = datapoint
        self.name = datapoint.name
        self.path = f"attrs/{datapoint.name}"
        self.spec = datapoint.uint_spec
        self.enum_index = {label: index for index, label in enumerate(datapoint.enum)}
        dtype = datapoint.data_type
        if dtype in UINT_WIDTH_BYTES:
            self.raw_limit = (1 << (8 * UINT_WIDTH_BYTES[dtype])) - 1
        elif datapoint.is_bits:
            self.raw_limit = (1 << datapoint.bit_len) - 1
        else:
            self.raw_limit = 0
        if self.spec is not None:
            self.raw_min, self.raw_max = self.spec.min, self.spec.max
            self.integral = self.spec.is_integral
            self.app_min = self._app(self.spec.min)
            self.app_max = self._app(self.spec.max)
        else:
            self.raw_min = 0
            self.raw_max = len(datapoint.enum) - 1 if dtype is DataType.ENUM else self.raw_limit
            self.integral = True
            self.app_min = self.app_max = 0

    # ---- decoding --------------------------------------------------------------------------------------

    def from_raw(self, raw: int | bytes) -> Value:
        """The app value of a raw field; never raises (anomalies are found by :meth:`check_raw`)."""
        dtype = self.datapoint.data_type
        if dtype is DataType.BOOL:
            return bool(raw)
        if dtype is DataType.ENUM:
            assert isinstance(raw, int)
            labels = self.datapoint.enum
            return labels[raw] if raw < len(labels) else raw
        if dtype is DataType.BINARY:
            assert isinstance(raw, bytes)
            return raw
        assert isinstance(raw, int)
        return self._app(raw)

    def _app(self, raw: int) -> int | float:
        assert self.spec is not None
        exact = raw * self.spec.ratio + self.spec.addition
        return int(exact) if self.integral else float(exact)

    def check_raw(self, raw: int | bytes) -> Anomaly | None:
        """An anomaly when a decoded raw value is outside what the schema declares."""
        if isinstance(raw, bytes | bytearray):
            return None
        if self.datapoint.data_type is DataType.ENUM and raw > self.raw_max:
            return Anomaly(self.name, f"enum index {raw} has no member (0..{self.raw_max})")
        if not self.raw_min <= raw <= self.raw_max:
            return Anomaly(self.name, f"raw {raw} outside the declared range {self.raw_min}..{self.raw_max}")
        return None

    # ---- encoding --------------------------------------------------------------------------------------

    def to_raw(self, value: object) -> int | bytes:
        """The raw field for an app value; raises PayloadError for a wrong type or an out-of-range value."""
        dtype = self.datapoint.data_type
        if dtype is DataType.BOOL:
            if value is True or value is False:
                return int(value)
            if type(value) is int and value in (0, 1):
                return value
            raise self._error(value, "expects true or false")
        if dtype is DataType.ENUM:
            if isinstance(value, str):
                index = self.enum_index.get(value)
                if index is None:
                    raise self._error(value, f"is not one of {', '.join(self.datapoint.enum)}")
                return index
            if type(value) is int and 0 <= value <= self.raw_max:
                return value
            raise self._error(value, f"expects one of {', '.join(self.datapoint.enum)} (or index 0..{self.raw_max})")
        if dtype is DataType.BINARY:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise self._error(value, f"expects {self.datapoint.byte_len} bytes")
            data = bytes(value)
            if len(data) != self.datapoint.byte_len:
                raise PayloadError(
                    f"expects exactly {self.datapoint.byte_len} bytes, got {len(data)}",
                    data=data,
                    path=self.path,
                )
            return data
        return self._number_to_raw(value)

    def _number_to_raw(self, value: object) -> int:
        assert self.spec is not None
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise self._error(value, "expects a number")
        if type(value) is int and self.integral:
            # Integral scaling: exact in integer arithmetic, the common case, kept cheap.
            steps, remainder = divmod(value - int(self.spec.addition), int(self.spec.ratio))
            raw = None if remainder else steps
        else:
            raw = self._decimal_to_raw(value)
        if raw is None:
            raise self._error(
                value, f"is not a multiple of the step {self.spec.ratio} from {self._fmt(self.spec.addition)}"
            )
        if not self.spec.min <= raw <= self.spec.max:
            raise self._error(value, f"is out of range {self._fmt(self.app_min)}..{self._fmt(self.app_max)}")
        return raw

    def _decimal_to_raw(self, value: int | float | Decimal) -> int | None:
        assert self.spec is not None
        try:
            exact = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
            if not exact.is_finite():
                return None
            steps = (exact - self.spec.addition) / self.spec.ratio
            nearest = steps.to_integral_value()
        except InvalidOperation:
            return None
        if abs(steps - nearest) > _GRID_TOLERANCE:
            return None
        return int(nearest)

    @staticmethod
    def _fmt(value: int | float | Decimal) -> str:
        return format(value, "f") if isinstance(value, Decimal) else repr(value)

    def _error(self, value: object, reason: str) -> PayloadError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return PayloadError(f"{shown} {reason}", path=self.path)
