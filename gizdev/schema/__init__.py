"""Product datapoint schemas: the typed model, its loader/validator and the fixed-length layout."""

from gizdev.schema.layout import BitRegion, ByteField, FixedLayout, compute_layout
from gizdev.schema.loader import load_schema, parse_schema, schema_to_json
from gizdev.schema.model import AttrType, Datapoint, DataType, Position, ProductSchema, ProtocolType, UintSpec

__all__ = [
    "AttrType",
    "BitRegion",
    "ByteField",
    "DataType",
    "Datapoint",
    "FixedLayout",
    "Position",
    "ProductSchema",
    "ProtocolType",
    "UintSpec",
    "compute_layout",
    "load_schema",
    "parse_schema",
    "schema_to_json",
]
