"""The codec test helper in the spirit of construct's ``common()``: parse equals object, build equals bytes, size
matches. Every declared payload (serial and LAN) and every vendor vector of a non-P0 kind goes through it."""

from __future__ import annotations

from gizdev.codec.commands import decode_payload, encode_payload
from gizdev.codec.declare import Declared, decode, encode, fixed_size


def common(value: Declared | None, data: bytes, size: int | None, *, cmd: int | None = None) -> None:
    """`data` parses to `value` and `value` builds to `data`; `size` is the spec's fixed size (None: variable).

    With `cmd`, the same holds through the command table (:func:`decode_payload` / :func:`encode_payload`);
    `value` None stands for a command's empty payload.
    """
    if cmd is not None:
        assert decode_payload(cmd, data) == value
        assert encode_payload(cmd, value) == data
    if value is None:
        assert cmd is not None
        assert (data, size) == (b"", 0)
        return
    assert decode(type(value), data) == value
    assert encode(value) == data
    assert fixed_size(value) == size
    if size is not None:
        assert len(data) == size
