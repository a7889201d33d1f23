"""What the serial line costs: frame sizes of the answers the board tools wait for, and their time on the wire.

The probe and the conformance checker both wait for answers whose size depends on the product (a read reply
carries every datapoint); at a slow baud rate such an answer takes longer to cross the wire than the protocol's
200 ms ACK time, so their deadlines add the wire time of the frames involved.
"""

from __future__ import annotations

from gizdev.codec.p0 import Product

__all__ = [
    "BITS_PER_BYTE_ON_WIRE",
    "DEVICE_INFO_PAYLOAD_BYTES",
    "FRAME_OVERHEAD_BYTES",
    "status_payload_bytes",
    "wire_s",
]

BITS_PER_BYTE_ON_WIRE = 10  # 8N1: start + 8 data + stop (serial protocol §1.6)
FRAME_OVERHEAD_BYTES = 9  # serial protocol §1.1: FF FF, len (2), cmd, sn, flags (2), checksum
DEVICE_INFO_PAYLOAD_BYTES = 106  # serial protocol §2.1


def wire_s(nbytes: int, baud: int) -> float:
    """Time ``nbytes`` take on an 8N1 line."""
    return nbytes * BITS_PER_BYTE_ON_WIRE / baud


def status_payload_bytes(product: Product) -> int:
    """Size of a read reply carrying every datapoint (action byte included), not counting 0xFF stuffing."""
    if product.fixed is not None:
        return 1 + product.fixed.layout.status_len
    assert product.varlen is not None
    points = [codec.datapoint for codec in product.codecs.values()]
    bits = sum(dp.bit_len for dp in points if dp.is_bits)
    return 1 + product.varlen.flags_len + (bits + 7) // 8 + sum(dp.byte_len for dp in points if not dp.is_bits)
