"""Shared fixtures: the vendor SDK vectors (our copy in tests/data), product schema paths, and the guards every test
runs under (log calls that format, no file descriptor left open: tests/guards.py)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.guards import fd_leak_guard, pytest_fixture_setup  # noqa: F401 - a hook: pytest finds it by name here

pytest_plugins = ["pytester"]  # tests/test_guards.py runs guarded tests in a child pytest

# CI runs derandomized so that a submission is judged on the same examples every time.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DATA_DIR = Path(__file__).parent / "data"
VECTOR_DIR = DATA_DIR / "vectors"
REPO_ROOT = Path(__file__).parent.parent
# Third-party product schemas (their licences keep them out of this repository). A plain clone has no ../shared:
# the tests on them (marked shared_examples) skip there, all with the one reason below, and fail in CI, which has
# them and must run them.
SHARED_EXAMPLES = REPO_ROOT.parent / "shared" / "protocols" / "examples"
SHARED_EXAMPLES_MISSING = "third-party example schemas not here: ../shared/protocols/examples (CI has them)"

VECTOR_SETS = {
    "gokit": ("gokit-reference-vectors.json", REPO_ROOT / "protocols" / "gokit.json"),
    "light": ("light-sdk-fixed-reference-vectors.json", VECTOR_DIR / "light-sdk-fixed.product.json"),
    "fan": ("fan-sdk-varlen-reference-vectors.json", VECTOR_DIR / "fan-sdk-varlen.product.json"),
}


def load_vectors(name: str) -> list[dict[str, Any]]:
    """All vectors of one product set, in file order."""
    file_name, _ = VECTOR_SETS[name]
    return list(json.loads((VECTOR_DIR / file_name).read_text())["vectors"])


def vector_meta(name: str) -> dict[str, Any]:
    file_name, _ = VECTOR_SETS[name]
    return dict(json.loads((VECTOR_DIR / file_name).read_text())["meta"])


def product_path(name: str) -> Path:
    return VECTOR_SETS[name][1]


def vectors_of_kind(*kinds: str) -> list[Any]:
    """pytest params (set name, vector) of the given kinds across every vector set, ids = set/vector id."""
    return [
        pytest.param(name, vector, id=f"{name}/{vector['id']}")
        for name in VECTOR_SETS
        for vector in load_vectors(name)
        if vector["kind"] in kinds
    ]


def require_shared_examples() -> None:
    """Skip the calling test unless the third-party examples are there; fail instead when ``CI`` is set.

    Skipping from here, one place, gives the skips one location, hence one line in pytest's summary.
    """
    if SHARED_EXAMPLES.is_dir():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the tests on the {SHARED_EXAMPLES_MISSING.partition(' (')[0]}")
    pytest.skip(SHARED_EXAMPLES_MISSING)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_examples: needs the third-party schemas in ../shared/protocols/examples")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("shared_examples") is not None:
        require_shared_examples()


class _FormatCheck(logging.Handler):
    """Formats every record, so that a log call whose arguments do not fit its format string fails the test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failures: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.getMessage()
        except Exception as exc:  # any formatting failure is the finding
            self.failures.append(f"{record.pathname}:{record.lineno}: {record.msg!r} % {record.args!r}: {exc}")


@pytest.fixture(autouse=True)
def _log_calls_must_format() -> Iterator[None]:
    handler = _FormatCheck()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert not handler.failures, "bad log formatting:\n" + "\n".join(handler.failures)


# Every test leaves no file descriptor behind; fixtures broader than a test may keep theirs (see tests/guards.py).
no_fd_leak = fd_leak_guard()
