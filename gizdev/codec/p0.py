"""The P0 datapoint codec of one product: every action of both P0 formats (serial protocol §4).

```
fixed length ("standard")                    variable length ("var_len")
01 | attr_flags | attr_vals   write          11 | flags | bits | values    write (flagged writable points)
02                            read           12 | flags                    read (flagged points wanted)
03 | dev_status               read reply     13 | flags | bits | values    read reply (+ stale bytes, ignored)
04 | dev_status               report         14 | flags | bits | values    report (changed points)
05 | data                     pass-through to the MCU (both formats)
06 | data                     pass-through from the MCU (both formats)
```

A :class:`Product` is compiled once from its schema: construct layouts (:mod:`gizdev.codec.layouts`) plus a
generated fast path for the full status (:mod:`gizdev.codec.fastpath`). Decoding is forgiving where the vendor SDK
is sloppy (unknown flag bits, enum indexes without a member, raw numbers outside the declared range): such values
are decoded and listed in :attr:`P0Message.anomalies`, or raised with ``strict=True``. Encoding is strict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

import construct as cs

from gizdev.codec.fastpath import StatusCodec
from gizdev.codec.layouts import FixedLayouts, RawValues, VarlenLayouts
from gizdev.codec.values import Anomaly, PointCodec, Value
from gizdev.errors import PayloadError
from gizdev.schema.layout import compute_layout
from gizdev.schema.loader import load_schema
from gizdev.schema.model import DataType, ProductSchema

__all__ = ["Action", "P0Message", "Product", "load_product"]


class Action(IntEnum):
    """The P0 action byte (serial protocol §4.1)."""

    WRITE = 0x01
    READ = 0x02
    READ_REPLY = 0x03
    REPORT = 0x04
    TRANSPARENT_DOWN = 0x05
    TRANSPARENT_UP = 0x06
    VAR_WRITE = 0x11
    VAR_READ = 0x12
    VAR_READ_REPLY = 0x13
    VAR_REPORT = 0x14


_FIXED_ACTIONS = frozenset({Action.WRITE, Action.READ, Action.READ_REPLY, Action.REPORT})
_VARLEN_ACTIONS = frozenset({Action.VAR_WRITE, Action.VAR_READ, Action.VAR_READ_REPLY, Action.VAR_REPORT})
_TRANSPARENT = frozenset({Action.TRANSPARENT_DOWN, Action.TRANSPARENT_UP})
#: Format-neutral names accepted by :meth:`Product.resolve_action`, mapped per product format.
_LOGICAL = {
    "write": (Action.WRITE, Action.VAR_WRITE),
    "read": (Action.READ, Action.VAR_READ),
    "read_reply": (Action.READ_REPLY, Action.VAR_READ_REPLY),
    "report": (Action.REPORT, Action.VAR_REPORT),
    "transparent_down": (Action.TRANSPARENT_DOWN, Action.TRANSPARENT_DOWN),
    "transparent_up": (Action.TRANSPARENT_UP, Action.TRANSPARENT_UP),
}


class P0Message(NamedTuple):
    """A decoded P0 body. ``attrs`` holds app values by datapoint name (only the flagged ones for writes and
    variable-length bodies); ``flags`` is the flag field as received (attr_flags or the variable-length flags)."""

    action: Action
    attrs: dict[str, Value]
    flags: int | None = None
    requested: tuple[str, ...] = ()  # variable-length read: the points asked for
    data: bytes = b""  # pass-through payload
    anomalies: tuple[Anomaly, ...] = ()


class Product:
    """A product schema compiled into P0 encoders and decoders."""

    def __init__(self, schema: ProductSchema) -> None:
        self.schema = schema
        self.codecs = {dp.name: PointCodec(dp) for dp in schema.datapoints}
        self._by_id = {dp.id: self.codecs[dp.name] for dp in schema.datapoints}
        self._writable = schema.writable
        self._known_flags = sum(1 << dp.id for dp in schema.datapoints)  # variable-length flag bits in use
        if schema.is_varlen:
            self.varlen: VarlenLayouts | None = VarlenLayouts(schema)
            self.fixed: FixedLayouts | None = None
            self.status: StatusCodec | None = None
        else:
            layout = compute_layout(schema.datapoints, lambda dp: f"/attrs/{dp.name}")
            self.varlen = None
            self.fixed = FixedLayouts(schema, layout)
            self.status = StatusCodec(layout, self.codecs, self._status_anomalies, self._bad_names)
        # Hot-path lookups: the action byte (or any spelling of an action) -> Action, for this format only.
        wrong_format = _FIXED_ACTIONS if self.is_varlen else _VARLEN_ACTIONS
        self._action_of_byte = {int(act): act for act in Action if act not in wrong_format}
        self._resolved: dict[object, Action] = {code: act for code, act in self._action_of_byte.items()}
        self._resolved.update({act: act for act in self._action_of_byte.values()})
        self._resolved.update({name: pair[self.is_varlen] for name, pair in _LOGICAL.items()})

    # ---- properties ----------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def product_key(self) -> str | None:
        return self.schema.product_key

    @property
    def is_varlen(self) -> bool:
        return self.schema.is_varlen

    def __repr__(self) -> str:
        return f"Product({self.name!r}, {self.schema.protocol_type.value}, {len(self.codecs)} datapoints)"

    def resolve_action(self, action: Action | int | str) -> Action:
        """An Action from a code, an Action, or a name ('report', 'write', 'VAR_REPORT', ...), for this format."""
        if isinstance(action, str):
            key = action.strip().lower()
            if key in _LOGICAL:
                return _LOGICAL[key][self.is_varlen]
            try:
                resolved = Action[key.upper()]
            except KeyError:
                names = ", ".join(sorted(_LOGICAL))
                raise PayloadError(f"unknown action {action!r} (try {names} or a number)", path="action") from None
        else:
            try:
                resolved = Action(action)
            except ValueError:
                raise PayloadError(f"unknown action {action!r}", path="action") from None
        wrong_format = _VARLEN_ACTIONS if not self.is_varlen else _FIXED_ACTIONS
        if resolved in wrong_format:
            kind = "variable-length" if self.is_varlen else "fixed-length"
            raise PayloadError(
                f"action 0x{resolved:02x} ({resolved.name}) does not belong to {self.name!r}, a {kind} product",
                path="action",
            )
        return resolved

    # ---- encoding ------------------------------------------------------------------------------------------

    def encode(
        self,
        action: Action | int | str,
        attrs: Mapping[str, object] | Iterable[str] | None = None,
        *,
        data: bytes = b"",
        flags: int | None = None,
    ) -> bytes:
        """The P0 bytes (action byte first) of one message.

        ``attrs``: app values by name (reports and read replies of fixed-length products need every datapoint);
        for a variable-length read, the names wanted (all when None). ``data``: pass-through bytes.
        ``flags``: for variable-length bodies, the exact flag field to send (the SDK sets unused bits in its
        periodic report and echoes a read request's flags); its bits for known datapoints must match ``attrs``.
        """
        act = self._resolved.get(action) if isinstance(action, int | str) else None
        if act is None:
            act = self.resolve_action(action)
        if (act is Action.REPORT or act is Action.READ_REPLY) and flags is None and not data:
            assert self.status is not None
            return bytes((act,)) + self.status.encode(self._mapping(attrs))
        if act in _TRANSPARENT:
            if attrs:
                raise PayloadError("pass-through carries data, not attrs", path="attrs")
            return bytes([act]) + bytes(data)
        if data:
            raise PayloadError(f"{act.name} carries no pass-through data", path="data")
        if flags is not None and act not in (Action.VAR_REPORT, Action.VAR_READ_REPLY, Action.VAR_READ):
            raise PayloadError(f"{act.name} takes no explicit flags", path="flags")
        if act in (Action.READ, Action.VAR_READ):
            return self._encode_read(act, attrs, flags)
        values = self._mapping(attrs)
        if act in (Action.REPORT, Action.READ_REPLY):
            assert self.status is not None
            return bytes([act]) + self.status.encode(values)
        if act is Action.WRITE:
            assert self.fixed is not None
            raws = self._write_raws(values)
            attr_flags = sum(1 << index for index, dp in enumerate(self._writable) if dp.id in raws)
            return bytes([act]) + self._build(self.fixed.build_write, attr_flags, raws)
        assert self.varlen is not None
        raws = self._write_raws(values) if act is Action.VAR_WRITE else self._raws(values)
        present = sum(1 << dp_id for dp_id in raws)
        return bytes([act]) + self._build(self.varlen.build_body, self._check_flags(flags, present), raws)

    def _encode_read(self, act: Action, attrs: object, flags: int | None) -> bytes:
        if act is Action.READ:
            if attrs:
                raise PayloadError("a fixed-length read asks for the whole status: give no attrs", path="attrs")
            return bytes([act])
        assert self.varlen is not None
        names = list(self.codecs) if attrs is None else list(attrs)  # type: ignore[call-overload]
        wanted = 0
        for name in names:
            codec = self._codec(name)
            wanted |= 1 << codec.datapoint.id
        wanted = self._check_flags(flags, wanted)
        return bytes([act]) + wanted.to_bytes(self.varlen.flags_len, "big")

    def _check_flags(self, flags: int | None, present: int) -> int:
        assert self.varlen is not None
        if flags is None:
            return present
        if not 0 <= flags < 1 << (8 * self.varlen.flags_len):
            raise PayloadError(f"flags 0x{flags:x} do not fit {self.varlen.flags_len} bytes", path="flags")
        if flags & self._known_flags != present:
            raise PayloadError(f"flags 0x{flags:x} disagree with the datapoints given (0x{present:x})", path="flags")
        return flags

    @staticmethod
    def _mapping(attrs: object) -> Mapping[str, object]:
        if attrs is None:
            return {}
        if not isinstance(attrs, Mapping):
            raise PayloadError("expects an object of datapoint values", path="attrs")
        return attrs

    def _codec(self, name: object) -> PointCodec:
        codec = self.codecs.get(name) if isinstance(name, str) else None
        if codec is None:
            raise PayloadError(f"unknown datapoint (product {self.name!r})", path=f"attrs/{name}")
        return codec

    def _raws(self, values: Mapping[str, object]) -> RawValues:
        raws: RawValues = {}
        for name, value in values.items():
            codec = self._codec(name)
            raws[codec.datapoint.id] = codec.to_raw(value)
        return raws

    def _write_raws(self, values: Mapping[str, object]) -> RawValues:
        if not values:
            raise PayloadError("a write needs at least one datapoint", path="attrs")
        for name in values:
            if not self._codec(name).datapoint.writable:
                raise PayloadError("is read-only and cannot be written", path=f"attrs/{name}")
        return self._raws(values)

    @staticmethod
    def _build(builder: Any, flags: int, raws: RawValues) -> bytes:
        try:
            return bytes(builder(flags, raws))
        except cs.ConstructError as exc:  # only reachable through a bug: values were validated
            raise PayloadError(f"cannot build: {exc}") from exc

    def _bad_names(self, attrs: Mapping[str, object]) -> PayloadError:
        if not isinstance(attrs, Mapping):
            return PayloadError("expects an object of datapoint values", path="attrs")
        unknown = [name for name in attrs if name not in self.codecs]
        if unknown:
            return PayloadError(f"unknown datapoint (product {self.name!r})", path=f"attrs/{unknown[0]}")
        missing = [name for name in self.codecs if name not in attrs]
        return PayloadError(f"a full status needs every datapoint; missing {', '.join(missing)}", path="attrs")

    # ---- decoding ------------------------------------------------------------------------------------------

    def decode(self, p0: bytes, *, strict: bool = False) -> P0Message:
        """A decoded P0 body; raises PayloadError when it is malformed (and, with ``strict``, on anomalies)."""
        act = self._action_of_byte.get(p0[0]) if p0 else None
        if act is None:
            if not p0:
                raise PayloadError("empty P0 (no action byte)", path="action")
            try:
                self.resolve_action(p0[0])
            except PayloadError as exc:
                raise PayloadError(exc.reason, data=p0, path="action") from None
            raise AssertionError("unreachable: every valid action byte is in the lookup")
        if act is Action.REPORT or act is Action.READ_REPLY:
            assert self.status is not None
            if len(p0) != self.status.size + 1:
                self._expect_len(p0, 1 + self.status.size, "device status")
            attrs, anomalies = self.status.decode(p0, 1)
            if anomalies and strict:
                self._raise_anomalies(p0, anomalies)
            return P0Message(act, attrs, None, (), b"", anomalies)
        body = p0[1:]
        if act in _TRANSPARENT:
            return P0Message(act, {}, data=bytes(body))
        if act is Action.READ:
            self._expect_len(p0, 1, "read request")
            message = P0Message(act, {})
        elif act is Action.WRITE:
            message = self._decode_write(p0)
        elif act is Action.VAR_READ:
            assert self.varlen is not None
            self._expect_len(p0, 1 + self.varlen.flags_len, "read request flags")
            wanted = int.from_bytes(body, "big")
            requested = tuple(dp.name for dp in self.schema.datapoints if wanted >> dp.id & 1)
            message = P0Message(act, {}, flags=wanted, requested=requested)
        else:
            message = self._decode_varlen(act, p0)
        if strict and message.anomalies:
            self._raise_anomalies(p0, message.anomalies)
        return message

    @staticmethod
    def _raise_anomalies(p0: bytes, anomalies: tuple[Anomaly, ...]) -> None:
        details = "; ".join(f"{a.name}: {a.reason}" for a in anomalies)
        raise PayloadError(f"values the schema does not allow: {details}", data=p0)

    def _decode_write(self, p0: bytes) -> P0Message:
        assert self.fixed is not None
        if not self._writable:
            raise PayloadError(f"a write to {self.name!r}, which has no writable datapoints", data=p0)
        self._expect_len(p0, 1 + self.fixed.flags_len + self.fixed.layout.writable_len, "write")
        attr_flags, raws = self.fixed.parse_write(p0[1:])
        anomalies: list[Anomaly] = []
        attrs: dict[str, Value] = {}
        for index, dp in enumerate(self._writable):
            if attr_flags >> index & 1:
                attrs[dp.name] = self._decoded(dp.id, raws[dp.id], anomalies)
        unused = attr_flags >> len(self._writable)
        if unused:
            # The SDK ignores them (vector write-0408); so do we, but say so.
            anomalies.append(Anomaly("attr_flags", f"bits above {len(self._writable) - 1} set (ignored)"))
        return P0Message(Action.WRITE, attrs, flags=attr_flags, anomalies=tuple(anomalies))

    def _decode_varlen(self, act: Action, p0: bytes) -> P0Message:
        assert self.varlen is not None
        try:
            flags, raws, consumed = self.varlen.parse_body(p0[1:])
        except cs.ConstructError as exc:
            raise PayloadError(f"truncated {act.name} body: the flags promise more data", data=p0) from exc
        extra = len(p0) - 1 - consumed
        # The SDK pads read replies to its full status size with stale bytes (vectors' stale_tail_len).
        if extra and act is not Action.VAR_READ_REPLY:
            raise PayloadError(f"{extra} unexpected byte(s) after the flagged values", data=p0)
        anomalies: list[Anomaly] = []
        attrs: dict[str, Value] = {}
        for dp_id, raw in sorted(raws.items()):
            codec = self._by_id.get(dp_id)
            if codec is None:
                continue
            value = self._decoded(dp_id, raw, anomalies)
            if act is Action.VAR_WRITE and not codec.datapoint.writable:
                anomalies.append(Anomaly(codec.name, "read-only datapoint flagged in a write (not applied)"))
                continue
            attrs[codec.name] = value
        return P0Message(act, attrs, flags=flags, anomalies=tuple(anomalies))

    def _decoded(self, dp_id: int, raw: int | bytes, anomalies: list[Anomaly]) -> Value:
        codec = self._by_id[dp_id]
        anomaly = codec.check_raw(raw)
        if anomaly is not None:
            anomalies.append(anomaly)
        return codec.from_raw(raw)

    def _status_anomalies(self, status: bytes) -> tuple[Anomaly, ...]:
        assert self.fixed is not None
        raws = self.fixed.parse_status(status)
        found = (self._by_id[dp_id].check_raw(raw) for dp_id, raw in sorted(raws.items()))
        return tuple(anomaly for anomaly in found if anomaly is not None)

    @staticmethod
    def _expect_len(p0: bytes, expected: int, what: str) -> None:
        if len(p0) != expected:
            problem = "truncated" if len(p0) < expected else f"{len(p0) - expected} byte(s) too long"
            raise PayloadError(f"{what} {problem}: P0 of {len(p0)} bytes, expected {expected}", data=p0)

    # ---- JSON ------------------------------------------------------------------------------------------------

    def attrs_from_json(self, attrs: object) -> dict[str, object]:
        """App values from JSON: binary datapoints arrive as hex strings; other values pass unchanged."""
        if not isinstance(attrs, Mapping):
            raise PayloadError("expects an object of datapoint values", path="attrs")
        converted: dict[str, object] = {}
        for name, value in attrs.items():
            codec = self._codec(name)
            converted[name] = value
            if codec.datapoint.data_type is DataType.BINARY and isinstance(value, str):
                try:
                    converted[name] = bytes.fromhex(value)
                except ValueError:
                    raise PayloadError("expects a hex string", path=codec.path) from None
        return converted

    @staticmethod
    def attrs_to_json(attrs: Mapping[str, Value]) -> dict[str, Any]:
        """JSON-ready values: binary as lowercase hex, everything else unchanged."""
        return {name: value.hex() if isinstance(value, bytes) else value for name, value in attrs.items()}


def load_product(path: str | Path) -> Product:
    """Load a product schema file and compile its codec."""
    return Product(load_schema(path))
