"""gizdev: open tooling for Gizwits-style IoT products.

The top-level package exposes the pure codec (no I/O, no asyncio)::

    product = gizdev.load_product("protocols/gokit.json")
    p0 = product.encode("report", {...})
    wire = gizdev.encode_frame(0x05, sn, p0)
    for item in gizdev.Deframer().feed(wire):
        ...
"""

from gizdev.codec.envelope import Envelope, decode_envelope, encode_envelope
from gizdev.codec.frame import Frame, encode_frame, parse_frame
from gizdev.codec.framer import Deframer
from gizdev.codec.p0 import Action, P0Message, Product, load_product
from gizdev.codec.values import Anomaly
from gizdev.errors import GizdevError
from gizdev.schema import ProductSchema, load_schema

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Anomaly",
    "Deframer",
    "Envelope",
    "Frame",
    "GizdevError",
    "P0Message",
    "Product",
    "ProductSchema",
    "__version__",
    "decode_envelope",
    "encode_envelope",
    "encode_frame",
    "load_product",
    "load_schema",
    "parse_frame",
]
