"""The options several subcommands share (gizdev/cli/options.py): one spelling, one validation, one message."""

from __future__ import annotations

import pytest

from gizdev.cli.main import main
from tests.conftest import product_path

GOKIT = str(product_path("gokit"))

#: Every subcommand with a --baud option, with what else it needs to get as far as reading it.
BAUD_COMMANDS: dict[str, list[str]] = {
    "probe": ["probe", "--port", "/dev/null", "--product", GOKIT],
    "check-board": ["check-board", "--port", "/dev/null", "--product", GOKIT],
    "sim": ["sim", "--product", GOKIT],
    "sniff": ["sniff", "--replay", "-"],
    "flash stm32": ["flash", "stm32", "--port", "/dev/null", "fw.hex"],
    "flash module": ["flash", "module", "--port", "/dev/null", "fw.bin"],
    "flash sim-bootloader": ["flash", "sim-bootloader"],
    "bridge": ["bridge", "--port", "/dev/null", "--product", GOKIT],
}


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The parser's message for ``argv``, without the ``gizdev COMMAND: error:`` prefix that names the command."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    prefix, sep, message = last.partition(": error: ")
    assert sep and prefix.startswith("gizdev "), last
    return message


@pytest.mark.parametrize("bad", ["0", "-9600", "fast", "96OO", "9600.5"])
def test_a_bad_baud_gets_the_same_message_from_every_command(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    messages = {name: _error([*argv, "--baud", bad], capsys) for name, argv in BAUD_COMMANDS.items()}
    expected = f"argument --baud: a baud rate is a whole number above 0, not {bad!r}"
    assert messages == dict.fromkeys(BAUD_COMMANDS, expected)


def test_the_bridge_names_the_spelling_given(capsys: pytest.CaptureFixture[str]) -> None:
    message = _error([*BAUD_COMMANDS["bridge"], "--baudrate", "0"], capsys)
    assert message == "argument --baudrate: a baud rate is a whole number above 0, not '0'"


@pytest.mark.parametrize(
    ("command", "shared"),
    [
        (["probe"], ["--port", "--product", "--baud"]),
        (["check-board"], ["--port", "--product", "--baud"]),
        (["sim"], ["--product", "--baud"]),
        (["sniff"], ["--product", "--baud"]),
        (["flash", "stm32"], ["--port", "--baud"]),
        (["flash", "module"], ["--port", "--baud"]),
        (["flash", "sim-bootloader"], ["--baud"]),
        (["decode"], ["--product"]),
        (["encode"], ["--product"]),
        (["bridge"], ["--port", "--product", "--baud"]),
        (["demo"], ["--product"]),
    ],
)
def test_help_explains_every_shared_option(
    command: list[str], shared: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines where it likes
    text = text[text.index(" options: ") :]  # the listing, not the examples in the description
    for option in shared:
        # The option, its value's name, and a description after it (not a bare listing).
        start = text.index(f" {option} ")
        assert len(text[start:].split(maxsplit=4)) == 5, option
    if "--product" in shared:
        assert "--product FILE" in text
    if "--baud" in shared:
        assert "default" in text[text.index(" --baud ") :][:200]


@pytest.mark.parametrize("option", ["--scheduler-retry-interval", "--scheduler-grace"])
@pytest.mark.parametrize("bad", ["0", "-5", "30s", "1.5"])
def test_the_scheduler_options_take_whole_seconds_above_0(
    option: str, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _error(["cloud", "serve", option, bad], capsys)
    assert message.startswith(f"argument {option}: ") and bad in message
