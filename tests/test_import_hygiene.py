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
