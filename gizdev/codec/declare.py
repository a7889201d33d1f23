"""Declared payloads: one frozen dataclass per payload, each field's wire type in its metadata.

From that one declaration this module derives, once per class, everything the codec needs: the construct layout
(parse and build), the fixed size, the checks a value must pass before it is built, and the JSON form::

    @declared("network_time")
    class NetworkTime(Declared):
        year: int = wire(U16)
        ntp: int = wire(U32)

``@declared`` makes the class a frozen slotted dataclass (fields in wire order; ``kw_only=True`` lets a field
keep its wire place while it stays last in the constructor). Its options:

* a ``TYPE`` class attribute (``ClassVar[int]``) is a leading type byte: a constant on the wire, ``"type"`` first
  in the JSON, and what :func:`decode_any` picks a class by;
* ``tail="field"``: the fields from ``field`` on are present or absent together (absent: every one of them at
  its default); the shorter form is what older firmware sends, told apart on decoding by its size;
* ``word=N``: the fields are bit fields (:class:`Bit`, :class:`Bits`, :class:`Reserved`) of one N-byte
  big-endian word;
* ``rest=True``: bytes after the last field are ignored (by default they are refused).

Values cross as dataclasses; construct Containers stay in here. Every failure is a :class:`PayloadError` whose
path is ``<name>/<field>``; the bytes at fault travel in its ``data`` (printed as hex).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import IntEnum
from typing import Any, TypeVar, dataclass_transform

from construct import (
    Adapter,
    Bytes,
    BytesInteger,
    Const,
    Construct,
    ConstructError,
    Default,
    FixedSized,
    Flag,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    NullStripped,
    Prefixed,
    SizeofError,
    Struct,
    Terminated,
    ValidationError,
)
from construct.core import stream_read_entire, stream_seek, stream_tell, stream_write

from gizdev.errors import PayloadError

__all__ = [
    "FLAG",
    "U8",
    "U16",
    "U32",
    "Bit",
    "Bits",
    "Blob",
    "Declared",
    "EnumU8",
    "Reserved",
    "TailText",
    "Text",
    "UInt",
    "Wire",
    "declared",
    "decode",
    "decode_any",
    "encode",
    "fixed_size",
    "wire",
]

_D = TypeVar("_D", bound="Declared")
_C = TypeVar("_C", bound=type)


# -- wire types ----------------------------------------------------------------------------------------------


class Wire:
    """How one field sits on the wire: a construct that parses to the field's value, its check and JSON form."""

    __slots__ = ("subcon",)

    def __init__(self, subcon: Any) -> None:
        self.subcon = subcon

    def check(self, value: object) -> str | None:
        """Why `value` cannot be built, or None when it can."""
        return None

    def to_json(self, value: Any) -> Any:
        """`value` as JSON (the value itself unless the type says otherwise)."""
        return value


def _not_int(value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return f"expected an integer, got {type(value).__name__}"


class UInt(Wire):
    """An unsigned big-endian integer."""

    __slots__ = ("high",)

    def __init__(self, subcon: Any) -> None:
        super().__init__(subcon)
        self.high = (1 << 8 * subcon.sizeof()) - 1

    def check(self, value: object) -> str | None:
        """An int (not a bool) in range."""
        wrong = _not_int(value)
        if wrong is None and not 0 <= value <= self.high:  # type: ignore[operator]
            return f"{value} out of range 0..{self.high}"
        return wrong


U8 = UInt(Int8ub)
U16 = UInt(Int16ub)
U32 = UInt(Int32ub)


class _Known(Adapter):  # type: ignore[misc]  # construct is untyped
    """int <-> a member of an IntEnum when it is one, else the plain int (unknown codes stay visible)."""

    def __init__(self, subcon: Any, enum: type[IntEnum]) -> None:
        super().__init__(subcon)
        self.enum = enum

    def _decode(self, obj: int, context: Any, path: str) -> int:
        try:
            return self.enum(obj)
        except ValueError:
            return obj

    def _encode(self, obj: int, context: Any, path: str) -> int:
        return obj


class EnumU8(UInt):
    """One byte holding a code of `enum`; unknown codes decode to the plain int."""

    __slots__ = ("enum",)

    def __init__(self, enum: type[IntEnum]) -> None:
        super().__init__(Int8ub)
        self.subcon = _Known(Int8ub, enum)
        self.enum = enum

    def to_json(self, value: int) -> dict[str, Any]:
        """The number and its name (None when the enum does not know it)."""
        try:
            name: str | None = self.enum(value).name
        except ValueError:
            name = None
        return {"value": int(value), "name": name}


class _Bool(Wire):
    __slots__ = ()

    def check(self, value: object) -> str | None:
        """A bool, not any truthy value."""
        return None if isinstance(value, bool) else f"expected a bool, got {type(value).__name__}"


FLAG = _Bool(Flag)  # one byte: 0 is False, anything else True


class Blob(Wire):
    """Raw bytes: `size` of them; `prefixed`: after a u16 length (`size`, if given, is then checked on build)."""

    __slots__ = ("size",)

    def __init__(self, size: int | None = None, *, prefixed: bool = False) -> None:
        fixed = GreedyBytes if size is None else Bytes(size)
        super().__init__(Prefixed(Int16ub, GreedyBytes) if prefixed else fixed)
        self.size = size

    def check(self, value: object) -> str | None:
        """Bytes, of the declared size."""
        if not isinstance(value, bytes | bytearray):
            return f"expected bytes, got {type(value).__name__}"
        if self.size is not None and len(value) != self.size:
            return f"expected {self.size} bytes, got {len(value)}"
        return None

    def to_json(self, value: bytes) -> str:
        """Hex."""
        return value.hex()


class _Ascii(Adapter):  # type: ignore[misc]  # construct is untyped
    """bytes <-> str, ASCII only; errors carry construct's field path (built values are checked beforehand)."""

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        # Trailing NUL padding is already stripped; a NUL inside would not survive encoding, so reject it here.
        if b"\x00" in obj:
            raise ValidationError(f"NUL inside text: {obj.hex()}", path=path)
        try:
            return obj.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"not ASCII: {obj.hex()}", path=path) from exc

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        return obj.encode("ascii")


class _Text(Wire):
    __slots__ = ("limit",)

    def __init__(self, subcon: Any, limit: int) -> None:
        super().__init__(_Ascii(subcon))
        self.limit = limit

    def check(self, value: object) -> str | None:
        """NUL-free ASCII that fits."""
        if not isinstance(value, str):
            return f"expected a string, got {type(value).__name__}"
        if not value.isascii() or "\x00" in value:
            return f"not NUL-free ASCII: {value!r}"
        if len(value) > self.limit:
            return f"{len(value)} characters, at most {self.limit} fit"
        return None


class Text(_Text):
    """ASCII text: NUL-padded to `size` bytes (trailing NULs stripped on parse), or after a u16 length."""

    __slots__ = ()

    def __init__(self, size: int | None = None) -> None:
        if size is None:
            super().__init__(Prefixed(Int16ub, GreedyBytes), 0xFFFF)
        else:
            super().__init__(FixedSized(size, NullStripped(GreedyBytes)), size)


class _UpToNul(Construct):  # type: ignore[misc]  # construct is untyped
    """The bytes before the next NUL (which is consumed), or none when no NUL follows; builds bytes + NUL."""

    def _parse(self, stream: Any, context: Any, path: str) -> bytes:
        start = stream_tell(stream, path)
        rest: bytes = stream_read_entire(stream, path)
        end = rest.find(b"\x00")
        stream_seek(stream, start + (0 if end < 0 else end + 1), 0, path)
        return b"" if end < 0 else rest[:end]

    def _build(self, obj: bytes, stream: Any, context: Any, path: str) -> bytes:
        stream_write(stream, obj + b"\x00", len(obj) + 1, path)
        return obj


class TailText(_Text):
    """NUL-terminated ASCII in an optional tail: a string cut off before its NUL reads as ''."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_UpToNul(), 0xFFFF)


class _BitField(Wire):
    __slots__ = ("mask", "shift")

    def __init__(self, mask: int, shift: int) -> None:
        super().__init__(None)  # lives in the word of its class
        self.mask = mask
        self.shift = shift

    def take(self, word: int) -> Any:
        """This field's value in `word`."""
        return (word & self.mask) >> self.shift

    def check(self, value: object) -> str | None:
        """An int that fits the field's bits."""
        high = self.mask >> self.shift
        wrong = _not_int(value)
        if wrong is None and not 0 <= value <= high:  # type: ignore[operator]
            return f"{value} out of range 0..{high}"
        return wrong


class Bits(_BitField):
    """`width` bits of the word from bit `low` up, as an int."""

    __slots__ = ()

    def __init__(self, low: int, width: int) -> None:
        super().__init__((1 << width) - 1 << low, low)


class Reserved(_BitField):
    """The bits of `mask` kept in place (not shifted), so that reserved bits survive a round trip."""

    __slots__ = ()

    def __init__(self, mask: int) -> None:
        super().__init__(mask, 0)

    def check(self, value: object) -> str | None:
        """An int with no bit outside the mask."""
        wrong = super().check(value)
        if wrong is None and value & ~self.mask:  # type: ignore[operator]
            return f"reserved bits 0x{value:04x} outside mask 0x{self.mask:04x}"
        return wrong


class Bit(_BitField):
    """Bit `n` of the word, as a bool."""

    __slots__ = ()

    def __init__(self, n: int) -> None:
        super().__init__(1 << n, n)

    def take(self, word: int) -> bool:
        """Whether the bit is set."""
        return bool(word & self.mask)

    def check(self, value: object) -> str | None:
        """A bool."""
        return FLAG.check(value)


class _Word(Adapter):  # type: ignore[misc]  # construct is untyped
    """A big-endian word <-> the dict of its bit fields."""

    def __init__(self, size: int, members: Sequence[tuple[str, _BitField]]) -> None:
        super().__init__(BytesInteger(size))
        self.members = members

    def _decode(self, obj: int, context: Any, path: str) -> dict[str, Any]:
        return {name: kind.take(obj) for name, kind in self.members}

    def _encode(self, obj: dict[str, Any], context: Any, path: str) -> int:
        word = 0
        for name, kind in self.members:
            word |= int(obj[name]) << kind.shift
        return word


# -- the declaration -----------------------------------------------------------------------------------------


def wire(kind: Wire, *, default: Any = MISSING, kw_only: bool = False) -> Any:
    """A dataclass field laid out on the wire as `kind`."""
    return field(default=default, kw_only=kw_only, metadata={"wire": kind})


class Declared:
    """Base of the declared payloads: the JSON form of a value.

    A subclass that adds to the JSON calls ``Declared.to_json(self)``: zero-argument ``super()`` fails in a
    slotted dataclass before Python 3.14 (the class it closes over is replaced).
    """

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: a leading type byte as "type", then each field (bytes as hex)."""
        form = _FORMS[type(self)][0]
        out: dict[str, Any] = {} if form.tag is None else {"type": form.tag}
        for name, kind in form.members:
            value = getattr(self, name)
            out[name] = None if value is None else kind.to_json(value)
        return out


@dataclass(frozen=True, slots=True)
class _Form:
    """One way a declared class sits on the wire (the whole class, or the short form without its tail)."""

    cls: type[Declared]
    name: str  # first element of error paths
    tag: int | None
    members: tuple[tuple[str, Wire], ...]
    layout: Any
    size: int | None  # fixed size, checked before parsing for a clear message
    absent: tuple[tuple[str, Any], ...] = ()  # (field, default) of a tail this form leaves out


_FORMS: dict[type, tuple[_Form, ...]] = {}


def _sizeof(layout: Any) -> int | None:
    try:
        size: int = layout.sizeof()
    except SizeofError:
        return None
    return size


def _layout(
    members: Sequence[tuple[str, Wire]], tag: int | None, word: int | None, rest: bool
) -> tuple[Any, int | None]:
    """The construct of one form and its fixed size (None: variable)."""
    if word is not None:
        bit_fields = [(name, kind) for name, kind in members if isinstance(kind, _BitField)]
        if len(bit_fields) != len(members) or tag is not None:
            raise TypeError("a word holds bit fields only")
        return _Word(word, bit_fields), word
    head = [] if tag is None else [Const(bytes((tag,)))]
    body = [name / kind.subcon for name, kind in members]
    size = None if rest else _sizeof(Struct(*head, *body))
    if size is not None:  # the size is checked before parsing: nothing can follow
        return Struct(*head, *body), size
    return Struct(*head, *body, Default(GreedyBytes, b"") if rest else Terminated), None


def _forms(cls: type[Declared], name: str, tail: str | None, word: int | None, rest: bool) -> tuple[_Form, ...]:
    declared_fields = fields(cls)  # type: ignore[arg-type]
    members = tuple((f.name, f.metadata["wire"]) for f in declared_fields)
    tag = getattr(cls, "TYPE", None)
    cut = len(members) if tail is None else [f.name for f in declared_fields].index(tail)
    out = []
    for end in dict.fromkeys((len(members), cut)):  # the whole class first
        layout, size = _layout(members[:end], tag, word, rest)
        absent = tuple((f.name, f.default) for f in declared_fields[end:])
        out.append(_Form(cls, name, tag, members[:end], layout, size, absent))
    return tuple(out)


@dataclass_transform(frozen_default=True, field_specifiers=(wire,))
def declared(name: str, *, tail: str | None = None, word: int | None = None, rest: bool = False) -> Callable[[_C], _C]:
    """Make the class a frozen slotted dataclass and derive its wire forms (see the module docstring)."""

    def apply(cls: _C) -> _C:
        made: _C = dataclass(frozen=True, slots=True)(cls)  # type: ignore[assignment]  # slots makes a new class
        _FORMS[made] = _forms(made, name, tail, word, rest)
        return made

    return apply


# -- encoding and decoding -----------------------------------------------------------------------------------


def _construct_path(name: str, exc: ConstructError) -> str:
    # construct reports e.g. "(parsing) -> product_key"; we report "device_info/product_key".
    parts = [part.strip() for part in str(exc.path or "").split("->")[1:]]
    return "/".join([name, *parts])


def _construct_reason(exc: ConstructError) -> str:
    text = str(exc)
    return text.split("\n", 1)[1] if text.startswith("Error in path") and "\n" in text else text


def _form_of(value: Declared) -> _Form:
    forms = _FORMS[type(value)]
    if len(forms) == 1:
        return forms[0]
    full, short = forms
    if all(getattr(value, name) == default for name, default in short.absent):
        return short
    if any(getattr(value, name) is None for name, _ in short.absent):  # None means absent: all or none
        names = " and ".join(name for name, _ in short.absent)
        every = "both" if len(short.absent) == 2 else "all"
        raise PayloadError(
            f"{names} are {every} set ({full.size}-byte form) or {every} None ({short.size}-byte form)", path=full.name
        )
    return full


def fixed_size(value: Declared) -> int | None:
    """The size of `value` on the wire when its form has a fixed size, else None."""
    return _form_of(value).size


def encode(value: Declared) -> bytes:
    """The wire bytes of a declared value; raises PayloadError naming the field that does not fit."""
    form = _form_of(value)
    build = {}
    for name, kind in form.members:
        item = getattr(value, name)
        reason = kind.check(item)
        if reason is not None:
            data = bytes(item) if isinstance(item, bytes | bytearray) else b""
            raise PayloadError(reason, path=f"{form.name}/{name}", data=data)
        build[name] = item
    try:
        return bytes(form.layout.build(build))
    except ConstructError as exc:  # a backstop: the checks should have caught it with a clearer message
        raise PayloadError(_construct_reason(exc), path=_construct_path(form.name, exc)) from exc


def _decode_form(form: _Form, data: bytes) -> Declared:
    if form.size is not None and len(data) != form.size:
        raise PayloadError(f"expected {form.size} bytes, got {len(data)}", path=form.name, data=data)
    try:
        parsed = form.layout.parse(data)
    except ConstructError as exc:
        raise PayloadError(_construct_reason(exc), path=_construct_path(form.name, exc), data=data) from exc
    return form.cls(**{name: parsed[name] for name, _ in form.members})


def decode_any(classes: Sequence[type[Declared]], data: bytes, path: str) -> Declared:
    """Decode `data` as whichever of `classes` it is: by its type byte, then by its size (`path` names the whole)."""
    forms = [form for cls in classes for form in _FORMS[cls]]
    tagged = [form for form in forms if form.tag is None or data[:1] == bytes((form.tag,))]
    if not tagged:
        wanted = " or ".join(sorted({f"{form.tag:02x}" for form in forms}))
        raise PayloadError(f"unknown {path.replace('_', ' ')} type (want {wanted})", path=path, data=data)
    exact = [form for form in tagged if form.size == len(data)]
    variable = [form for form in tagged if form.size is None]
    # No form of that size: report against the first (the whole class), whose size message is the clearest.
    return _decode_form((exact or variable or tagged)[0], data)


def decode(cls: type[_D], data: bytes) -> _D:
    """Decode `data` as a `cls`; raises PayloadError with the field path and the bytes."""
    forms = _FORMS[cls]
    value = decode_any((cls,), data, forms[0].name)
    assert isinstance(value, cls)
    return value
