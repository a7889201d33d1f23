"""Product schemas that ship with gizdev (``protocols/`` in the repository links here), for the demo and tools."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["GOKIT", "builtin_product_path"]

GOKIT = "gokit"


def builtin_product_path(name: str = GOKIT) -> Path:
    """The path of a shipped schema (``gokit``: the GoKit reference board)."""
    resource = files(__package__).joinpath(f"{name}.json")
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"no built-in product {name!r}")
    return path
