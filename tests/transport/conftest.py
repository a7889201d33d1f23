"""Every transport test must leave no file descriptor behind (ptys, serial ports, sockets, event loops)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def open_fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"), key=int)


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = open_fds()
    yield
    after = open_fds()
    assert len(after) == len(before), f"file descriptors leaked: before {before}, after {after}"
