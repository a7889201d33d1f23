"""The sim's command interpreter in process: line splitting, the text form, fault plans, the controller, and the
stdin front end on a real pipe."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from gizdev.codec.p0 import load_product
from gizdev.errors import ConfigError
from gizdev.sim.control import (
    LineSplitter,
    SimController,
    StdinCommands,
    fault_plan,
    parse_text_command,
)
from gizdev.sim.mcu import FaultPlan, VirtualMcu
from tests.conftest import product_path
from tests.link.helpers import run

GOKIT = str(product_path("gokit"))


def test_line_splitter_caps_lines_and_skips_the_rest() -> None:
    lines = LineSplitter(limit=8)
    assert lines.feed(b"get\nst") == [b"get"]
    assert lines.feed(b"ats\r\n") == [b"stats"]
    assert lines.feed(b"x" * 9) == [None]  # reported as soon as it is too long...
    assert lines.feed(b"yyyy") == []  # ...and the rest of it is skipped
    assert lines.feed(b"zz\nhelp\n") == [b"help"]
    assert lines.feed(b"x" * 20 + b"\nquit") == [None]
    assert lines.flush() == [b"quit"]


def test_text_form_parses_into_requests() -> None:
    product = load_product(GOKIT)
    assert parse_text_command("set LED_Color Pink", product) == {"cmd": "set", "attrs": {"LED_Color": "Pink"}}
    assert parse_text_command('set LED_Color "Pink"', product) == {"cmd": "set", "attrs": {"LED_Color": "Pink"}}
    assert parse_text_command("set Temperature 25", product)["attrs"] == {"Temperature": 25}
    assert parse_text_command("fault silent true", product) == {"cmd": "fault", "plan": {"silent": True}}
    assert parse_text_command("fault seed null", product) == {"cmd": "fault", "plan": {"seed": None}}
    assert parse_text_command("fault clear", product) == {"cmd": "fault", "clear": True}
    assert parse_text_command("  STATS ", product) == {"cmd": "stats"}
    for bad in ("set", "set LED_R", "fault silent", "get now", "dance", '{"cmd": '):
        with pytest.raises(ConfigError):
            parse_text_command(bad, product)


def test_fault_plan_validates_every_key() -> None:
    plan = fault_plan({"drop_acks": 0.5, "delay_s": 1, "silent": True, "seed": 9})
    assert plan == FaultPlan(drop_acks=0.5, delay_s=1.0, silent=True, seed=9)
    assert fault_plan({"garbage": 0.1}, plan) == FaultPlan(drop_acks=0.5, delay_s=1.0, silent=True, seed=9, garbage=0.1)
    for bad in (
        {"drop_acks": 1.5},
        {"corrupt_bytes": -0.1},
        {"garbage": True},
        {"delay_s": -1},
        {"delay_s": float("nan")},
        {"silent": 1},
        {"seed": 1.5},
        {"loud": True},
    ):
        with pytest.raises(ConfigError):
            fault_plan(bad)


def test_controller_without_a_module() -> None:
    async def scenario() -> None:
        mcu = VirtualMcu(load_product(GOKIT))
        quits: list[bool] = []
        controller = SimController(mcu, on_quit=lambda: quits.append(True))
        assert controller.handle({"cmd": "set", "attrs": {"LED_R": 5}})["attrs"] == {"LED_R": 5}
        assert mcu.state["LED_R"] == 5
        assert controller.handle({"cmd": "set", "attrs": {}})["ok"] is False
        assert controller.handle({"cmd": "set", "attrs": [1]})["ok"] is False
        assert controller.handle(["get"]) == {"ok": False, "error": "a request is a JSON object"}
        reset = controller.handle({"cmd": "reset"})
        assert reset["ok"] is False and "no module" in reset["error"]
        stats = controller.handle({"cmd": "stats"})
        assert stats["connected"] is False and stats["link"] is None and stats["reports_sent"] == 0
        assert controller.handle({"cmd": "fault", "plan": {"silent": True}, "clear": True})["ok"] is False
        assert controller.handle({"cmd": "fault", "plan": {"silent": True}})["ok"]
        assert mcu.faults.silent is True
        assert controller.handle_json(b"\xff\xfe{")["ok"] is False
        assert controller.handle_json(b"[" * 100_000)["ok"] is False  # deeper than the JSON parser goes
        assert controller.handle_text(b"set LED_R 6")["attrs"] == {"LED_R": 6}
        assert controller.handle({"cmd": "quit", "id": "q"}) == {"ok": True, "quit": True, "id": "q"}
        assert quits == [True]
        await mcu.close()

    run(scenario())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"no_stuffing": True, "wrong_ack_sn": True}, {"no_stuffing": True, "wrong_ack_sn": True}),
        ({"ack_delay_s": 0.5, "bad_checksum_every": 3}, {"ack_delay_s": 0.5, "bad_checksum_every": 3}),
        ({"product_key": "f" * 32, "no_resend": True}, {"product_key": "f" * 32, "no_resend": True}),
        (
            {"ignore_illegal": True, "no_report_after_write": True},
            {"ignore_illegal": True, "no_report_after_write": True},
        ),
    ],
)
def test_protocol_fault_knobs_through_the_control_protocol(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    plan = fault_plan(changes)
    assert {key: getattr(plan, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"no_stuffing": 1}, "expects true or false"),
        ({"ack_delay_s": -1}, "outside"),
        ({"bad_checksum_every": -2}, "whole number"),
        ({"bad_checksum_every": 1.5}, "whole number"),
        ({"product_key": "short"}, "32 characters"),
    ],
)
def test_protocol_fault_knobs_refuse_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fault_plan(changes)


def test_stdin_commands_answer_each_line_of_a_pipe_and_its_unterminated_last() -> None:
    async def scenario() -> list[dict[str, Any]]:
        mcu = VirtualMcu(load_product(GOKIT))
        answers: list[dict[str, Any]] = []
        got = asyncio.Event()
        read_fd, write_fd = os.pipe()

        def answer(item: dict[str, Any]) -> None:
            answers.append(item)
            if len(answers) == 4:
                got.set()

        commands = StdinCommands(SimController(mcu), answer, fd=read_fd)
        try:
            commands.start()
            os.write(write_fd, b"set LED_R 5\n\r\n  \ndance\nget\nsta")  # blank lines get no answer
            await asyncio.sleep(0.05)
            assert len(answers) == 3  # "sta" waits for the rest of its line...
            os.write(write_fd, b"ts")
            os.close(write_fd)  # ...and is answered when the pipe ends without a newline
            async with asyncio.timeout(5):
                await got.wait()
        finally:
            commands.close()
            os.close(read_fd)
            await mcu.close()
        return answers

    answers = run(scenario())
    assert answers[0] == {"ok": True, "attrs": {"LED_R": 5}}
    assert answers[1]["ok"] is False and "unknown command 'dance'" in answers[1]["error"]
    assert answers[2]["ok"] is True and answers[2]["attrs"]["LED_R"] == 5
    assert answers[3]["ok"] is True and answers[3]["reports_sent"] == 0
