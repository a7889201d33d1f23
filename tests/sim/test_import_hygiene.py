"""The sim stands below the board tools and the CLI: importing any of its modules loads neither."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import gizdev.sim

SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_sim_imports_neither_board_nor_cli() -> None:
    modules = ["gizdev.sim", *(f"gizdev.sim.{info.name}" for info in pkgutil.iter_modules(gizdev.sim.__path__))]
    assert "gizdev.sim.stm32_bootloader" in modules and "gizdev.sim.serve" in modules
    result = subprocess.run([sys.executable, "-c", SCRIPT, *modules], capture_output=True, text=True, check=True)
    loaded = set(json.loads(result.stdout))
    assert set(modules) <= loaded
    leaked = sorted(name for name in loaded if name.startswith(("gizdev.board", "gizdev.cli")))
    assert leaked == []
