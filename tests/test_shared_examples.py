"""In a plain clone (no ../shared beside it) the tests on third-party schemas skip with one line; in CI they fail.

Run on a copy of the repository's tests and schemas in a temporary directory, which has no ``shared`` beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, SHARED_EXAMPLES_MISSING

# Every test that reads ../shared/protocols/examples (tests/schema and the P0 codec's ph803w tests).
SHARED_TESTS = 21
TARGETS = ["tests/schema", "tests/codec/test_p0.py"]


def plain_clone(root: Path) -> Path:
    clone = root / "clone"
    shutil.copytree(REPO_ROOT / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "protocols", clone / "protocols")  # the GoKit symlink copied as a file
    shutil.copy(REPO_ROOT / "pyproject.toml", clone)
    return clone


def test_a_plain_clone_skips_them_with_one_line_and_ci_fails_them(tmp_path: Path) -> None:
    clone = plain_clone(tmp_path)
    assert not (clone.parent / "shared").exists()
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *TARGETS]
    # Each run gets a temporary directory of its own: with the default one, the two runs and the outer session each
    # prune /tmp/pytest-of-USER at the same time, and a directory removed under another's scandir made pytest itself
    # fail at exit on an unclosed iterator (CI, once).
    plain, ci = (
        subprocess.Popen(
            [*command, f"--basetemp={tmp_path / name}"],
            cwd=clone,
            env=extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, extra in (("plain", env), ("ci", {**env, "CI": "1"}))
    )
    plain_out, ci_out = plain.communicate(timeout=110)[0], ci.communicate(timeout=110)[0]

    assert plain.returncode == 0, plain_out
    skipped = [line for line in plain_out.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, plain_out
    assert skipped[0].startswith(f"SKIPPED [{SHARED_TESTS}] ") and skipped[0].endswith(SHARED_EXAMPLES_MISSING)

    # In CI each of them fails: in its setup (the marked ones: an error) or in its body (the P0 ones: a failure).
    assert ci.returncode == 1, ci_out
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", ci_out.splitlines()[-1])}
    assert counts.get("failed", 0) + counts.get("errors", counts.get("error", 0)) == SHARED_TESTS, ci_out
    assert "skipped" not in counts and "CI must run the tests on the third-party example schemas" in ci_out


def test_the_readme_stands_on_the_repository_alone() -> None:
    """Every path the README names is in the repository; outside it only the optional test data is mentioned."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    outside = set(re.findall(r"`(\.\./[^`]*)`", readme))
    assert outside == {"../shared/protocols/examples"}  # named as what a clone does not have, not as a reference
    inside = set(re.findall(r"`((?:gizdev|tests|tools|hw|protocols)/[^` ]*)`", readme))
    assert len(inside) > 10
    assert [path for path in sorted(inside) if not (REPO_ROOT / path).exists()] == []
