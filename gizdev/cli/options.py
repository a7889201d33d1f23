"""The options the subcommands share, defined once: ``--port``, ``--product``, ``--baud``, and argparse types
with clear messages for bad numbers.

Each ``add_*_option`` keeps the option's name and the form of its value the same everywhere; the caller says in
its ``help`` what the option means for that command. A bad ``--baud`` is refused with the same message by every
command (under the spelling the user typed, for a command that also knows it by another name).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PRODUCT_HELP",
    "add_baud_option",
    "add_port_option",
    "add_product_option",
    "baud_rate",
    "number",
    "positive_int",
    "positive_seconds",
    "probability",
    "seconds",
]

PRODUCT_HELP = "product schema (the Gizwits JSON export)"


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def probability(text: str) -> float:
    value = number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a probability is within 0..1, not {text}")
    return value


def seconds(text: str) -> float:
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a duration cannot be negative: {text}")
    return value


def positive_seconds(text: str) -> float:
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expects a duration above 0: {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expects a number above 0: {text}")
    return value


def baud_rate(text: str) -> int:
    """A line speed: a whole number of baud above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a baud rate is a whole number above 0, not {text!r}")
    return value


class _Converted(argparse.Action):
    """Stores ``convert(value)``; a bad value is reported under the option string the user typed.

    (With ``type=`` argparse names every alias of the option in its message, so one option known by two names
    would word its error differently from the same option elsewhere.)
    """

    def __init__(self, option_strings: Sequence[str], dest: str, *, convert: Callable[[str], Any], **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.convert = convert

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, str)
        try:
            value = self.convert(values)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument {option_string}: {exc}")
        setattr(namespace, self.dest, value)


def add_port_option(parser: argparse.ArgumentParser, *, help: str, required: bool = True) -> None:
    """``--port PORT``: a serial device, a pty path or ``socket://HOST:PORT``; ``help`` says whose port it is."""
    parser.add_argument("--port", required=required, help=help)


def add_product_option(
    parser: argparse.ArgumentParser,
    *,
    help: str = PRODUCT_HELP,
    required: bool = False,
    as_path: bool = False,
) -> None:
    """``--product FILE``: the product's datapoint schema (a str, or a Path with ``as_path``)."""
    parser.add_argument("--product", metavar="FILE", type=Path if as_path else str, required=required, help=help)


def add_baud_option(
    parser: argparse.ArgumentParser,
    *,
    help: str,
    default: int | None = 9600,
    aliases: Sequence[str] = (),
    dest: str = "baud",
    metavar: str | None = None,
) -> None:
    """``--baud N``: a line speed above 0, refused with one message in every command; ``help`` gives the default."""
    parser.add_argument(
        *aliases,
        "--baud",
        action=_Converted,
        convert=baud_rate,
        default=default,
        dest=dest,
        metavar=metavar,
        help=help,
    )
