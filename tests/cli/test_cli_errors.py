"""How a command reports a refusal: one line, ``gizdev COMMAND: what is wrong``, the command named once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gizdev.cli.main import main
from tests.conftest import REPO_ROOT

GOKIT = str(REPO_ROOT / "protocols" / "gokit.json")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["bridge", "--product", GOKIT], "gizdev bridge: port is required (--port or in the config file)"),
        (
            ["bridge", "--port", "/dev/null", "--product", GOKIT, "--mac", "nope", "--no-lan"],
            "gizdev bridge: mac must be 12 hex digits without separators, not 'nope'",
        ),
        (
            ["bridge", "--port", "/dev/null", "--product", GOKIT, "--lan-tcp-port", "70000"],
            "gizdev bridge: lan.tcp_port must be 0-65535, not 70000",
        ),
    ],
)
def test_the_command_is_named_once(capsys: pytest.CaptureFixture[str], argv: list[str], line: str) -> None:
    status, err = run(capsys, *argv)
    assert status == 1
    assert err.startswith(line) and err.count("\n") == 1, err
    assert "bridge: bridge:" not in err


def test_a_schema_file_that_cannot_be_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.json"
    status, err = run(capsys, "decode", "--product", str(missing), "00")
    # The file and the system's reason; no JSON pointer ("/") of a document that was never read.
    assert (status, err) == (1, f"gizdev decode: cannot read schema file {missing}: No such file or directory\n")
    status, err = run(capsys, "schema", "check", str(tmp_path))
    assert (status, err) == (1, f"gizdev schema: cannot read schema file {tmp_path}: Is a directory\n")
