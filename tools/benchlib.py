"""Shared by the tools/bench_* scripts: a description of the machine the figures were taken on, a free port."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path


def machine() -> str:
    """CPU model and count, Python version and implementation, OS."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model} ({os.cpu_count()} CPUs); Python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.system()} {platform.release()} {platform.machine()}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
