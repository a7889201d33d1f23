"""The codec is pure: importing gizdev and using the codec must not pull in I/O or asyncio machinery."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import product_path

FORBIDDEN = ("asyncio", "serial", "aiomqtt", "paho", "aiohttp", "sqlalchemy", "http.client", "socket", "selectors")

SCRIPT = """
import json, sys
import gizdev
product = gizdev.load_product(sys.argv[1])
values = product.decode(bytes.fromhex("04050a141e0701263c0202")).attrs
wire = gizdev.encode_frame(5, 1, product.encode("report", values))
frames = gizdev.Deframer().feed(wire)
assert frames[0].payload[0] == 4
print(json.dumps(sorted(sys.modules)))
"""


def test_codec_imports_no_io_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(product_path("gokit"))], capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert "gizdev.codec.p0" in loaded  # the script really used the codec
    leaked = sorted(name for name in loaded if name.split(".")[0] in FORBIDDEN or name in FORBIDDEN)
    assert leaked == []


# What a gateway (a Raspberry Pi next to the MCU) installs with the ``bridge`` extra: no database, no password KDF,
# no HTTP server, nothing of the local cloud.
BRIDGE_FORBIDDEN = ("sqlalchemy", "argon2", "asyncpg", "aiosqlite", "aiohttp.web", "gizdev.cloud")
BRIDGE_MODULES = ("gizdev.bridge.gateway", "gizdev.bridge.factory")

BRIDGE_SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_bridge_imports_nothing_of_the_cloud() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BRIDGE_SCRIPT, *BRIDGE_MODULES], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert set(BRIDGE_MODULES) <= loaded
    assert "gizdev.bridge.uplink" in loaded  # the cloud uplink itself is part of what was imported
    leaked = sorted(name for name in loaded if any(name == f or name.startswith(f + ".") for f in BRIDGE_FORBIDDEN))
    assert leaked == []
