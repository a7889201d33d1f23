"""``gizdev schema check FILE``: validate a product schema and show where every datapoint lives."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from gizdev.codec.p0 import Product, load_product
from gizdev.schema.model import Datapoint

CHECK_HELP = """\
Validate a product datapoint schema (the Gizwits JSON export) and print its layout: where each datapoint
sits in the device status (byte offsets; bit ranges inside bit regions), its raw and app ranges and scaling,
and the sizes of the P0 bodies. An invalid schema prints the JSON pointer of the offending field and exits 1.
"""


def register(commands: Any) -> None:
    schema = commands.add_parser("schema", help="product schema tools", description="Product schema tools.")
    actions = schema.add_subparsers(dest="schema_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a schema and print its layout",
        description=CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="product schema JSON")
    check.set_defaults(run=run_check)


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _where(product: Product, dp: Datapoint) -> str:
    pos = dp.position
    if product.is_varlen:
        return "bits (packed)" if dp.is_bits else f"{pos.len} byte(s)"
    if dp.is_bits:
        region = next(r for r in product.fixed.layout.regions if dp in r.members)  # type: ignore[union-attr]
        last = pos.bit_offset + pos.len - 1
        bits = f"bit {pos.bit_offset}" if last == pos.bit_offset else f"bits {pos.bit_offset}-{last}"
        return f"{bits} of bytes {region.start}-{region.start + region.size - 1}"
    end = pos.byte_offset + pos.len - 1
    return f"byte {pos.byte_offset}" if end == pos.byte_offset else f"bytes {pos.byte_offset}-{end}"


def _range(product: Product, dp: Datapoint) -> str:
    codec = product.codecs[dp.name]
    if dp.enum:
        return " | ".join(f"{index}={label}" for index, label in enumerate(dp.enum))
    if dp.uint_spec is not None:
        spec = dp.uint_spec
        scaling = ""
        if spec.ratio != 1 or spec.addition != 0:
            scaling = f"  (raw {spec.min}..{spec.max}, y = x*{_number(spec.ratio)} + {_number(spec.addition)})"
        return f"{codec.app_min}..{codec.app_max}{scaling}"
    if dp.data_type.value == "binary":
        return f"{dp.byte_len} bytes"
    return "true/false"


def layout_table(product: Product) -> list[str]:
    """The schema as aligned text lines (also used by other commands that show a product)."""
    rows = [("id", "name", "type", "data type", "where", "values")]
    for dp in product.schema.datapoints:
        rows.append((str(dp.id), dp.name, dp.type.value, dp.data_type.value, _where(product, dp), _range(product, dp)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] for row in rows
    ]
    schema = product.schema
    summary = [
        f"product  {schema.name}  key {schema.product_key or '(none)'}  {len(schema.datapoints)} datapoints, "
        f"{len(schema.writable)} writable",
    ]
    if product.is_varlen:
        assert product.varlen is not None
        summary.append(
            f"format   variable length (var_len): flags {product.varlen.flags_len} byte(s), "
            "bodies carry only the flagged datapoints"
        )
    else:
        assert product.fixed is not None
        layout = product.fixed.layout
        summary.append(
            f"format   fixed length (standard): dev_status {layout.status_len} bytes, "
            f"attr_flags {product.fixed.flags_len} byte(s), attr_vals {layout.writable_len} bytes"
        )
    return [*summary, "", *lines]


def run_check(args: argparse.Namespace) -> int:
    product = load_product(args.file)
    print("\n".join(layout_table(product)))
    print(f"\nOK: {args.file} is a valid schema")
    return 0
