"""``gizdev sniff`` as users run it: live between two ptys (a subprocess, stopped with Ctrl-C), and --replay."""

from __future__ import annotations

import asyncio
import io
import json
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gizdev.board.sniff.capture import MAX_LINE_CHARS
from gizdev.cli.main import main
from gizdev.codec.describe import describe_frame
from gizdev.codec.frame import parse_frame
from gizdev.codec.p0 import load_product
from gizdev.link import ModuleSession
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_pty_pair
from tests.board.sniff.helpers import until
from tests.board.sniff.scenario import Junk, attach, talk
from tests.conftest import REPO_ROOT, load_vectors, product_path
from tests.link.helpers import run

GOKIT = str(product_path("gokit"))
GIZDEV = [sys.executable, "-m", "gizdev.cli.main"]
DIRECTION_OF_VECTOR = {"mcu_to_module": "mcu>mod", "module_to_mcu": "mod>mcu"}


def cli(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None) -> tuple[int, list[str], str]:
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        status = main(argv)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


# ---- live --------------------------------------------------------------------------------------------------------


def _expected_json(items: list[bytes | Junk], direction: str, describe: Callable[[bytes], dict[str, Any]]) -> list[Any]:
    return [
        ("bad", item.data.hex()) if isinstance(item, Junk) else ("frame", {"dir": direction, **describe(item)})
        for item in items
    ]


def _observed_json(lines: list[dict[str, Any]], direction: str) -> list[Any]:
    out: list[Any] = []
    for obj in lines:
        if obj["dir"] != direction:
            continue
        if "error" in obj:
            out.append(("bad", obj["data"]))
        else:
            out.append(("frame", {k: v for k, v in obj.items() if k != "time"}))
    return out


def test_live_sniff_decodes_the_session_and_its_recording_replays_the_same(tmp_path: Path) -> None:
    record = tmp_path / "session.cap"
    err_path = tmp_path / "sniff.err"

    async def main_() -> tuple[str, str, int, Any]:
        product = load_product(GOKIT)
        mcu, module = VirtualMcu(product), ModuleSession(product)
        mcu_pty, module_pty = open_pty_pair(), open_pty_pair()
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                [
                    *GIZDEV,
                    "sniff",
                    "--mcu-side",
                    mcu_pty.slave_path,
                    "--module-side",
                    module_pty.slave_path,
                    "--product",
                    GOKIT,
                    "--json",
                    "--record",
                    str(record),
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=REPO_ROOT,
            )
        try:
            await mcu_pty.connect_master(mcu.protocol_factory)
            await module_pty.connect_master(module.protocol_factory)
            await until(lambda: "relaying" in err_path.read_text() or proc.poll() is not None, 30, "the sniffer")
            assert proc.poll() is None, err_path.read_text()
            mcu.start()
            sent = attach(module, mcu)
            await talk(module, mcu, sent)
            # One more round trip: its answer arriving means everything either side sent before was relayed.
            await module.read()
            proc.send_signal(signal.SIGINT)
            out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            await module.close()
            await mcu.close()
            for link in (module.link, mcu.session.link):
                if link is not None:
                    await link.wait_closed()
            mcu_pty.close()
            module_pty.close()
        return out, err_path.read_text(), proc.returncode, sent

    out, err, status, sent = run(main_(), timeout=90)
    assert status == 0, err
    product = load_product(GOKIT)
    lines = [json.loads(line) for line in out.splitlines()]

    def describe(wire: bytes) -> dict[str, Any]:
        return describe_frame(parse_frame(wire), product)

    for direction, items in (("mcu>mod", sent.mcu), ("mod>mcu", sent.module)):
        expected = _expected_json(items, direction, describe)
        assert _observed_json(lines, direction)[: len(expected)] == expected, direction
    # Statistics on exit: the bytes each side put on the wire, counted independently.
    mcu_bytes = sum(len(item.data if isinstance(item, Junk) else item) for item in sent.mcu)
    module_bytes = sum(len(item.data if isinstance(item, Junk) else item) for item in sent.module)
    assert f"mcu>mod {mcu_bytes} bytes relayed" in err
    assert f"mod>mcu {module_bytes} bytes relayed" in err
    assert f"capture written to {record}" in err
    # The recording replays to exactly the live trace.
    replayed = subprocess.run(
        [*GIZDEV, "sniff", "--replay", str(record), "--product", GOKIT, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == out


def test_live_sniff_with_a_port_that_does_not_exist(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with open_pty_pair() as pair:
        status, _, err = cli(["sniff", "--mcu-side", pair.slave_path, "--module-side", str(tmp_path / "nope")], capsys)
    assert status == 1
    assert f"gizdev sniff: {tmp_path / 'nope'}: cannot open: no such device" in err


# ---- replay ------------------------------------------------------------------------------------------------------


def test_replay_agrees_with_decode_on_every_vector(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Every GoKit SDK vector, each direction's bytes cut at random places: sniff --json prints what decode does."""
    vectors = [v for v in load_vectors("gokit") if v["frame_hex"]]  # a few vectors are about refusing to encode
    rng = random.Random(3)
    lines = ["# the SDK's vectors, cut at random"]
    for number, vector in enumerate(vectors):
        wire = bytes.fromhex(vector["frame_hex"])
        cut = rng.randrange(1, len(wire))
        direction = DIRECTION_OF_VECTOR[vector["direction"]]
        lines += [f"{number}.0 {direction} {wire[:cut].hex()}", f"{number}.5 {direction} {wire[cut:].hex(':')}"]
    capture = tmp_path / "vectors.cap"
    capture.write_text("\n".join(lines) + "\n")
    status, out, _ = cli(["sniff", "--replay", str(capture), "--product", GOKIT, "--json"], capsys)
    assert status == 0
    sniffed = [json.loads(line) for line in out]
    assert len(sniffed) == len(vectors)
    _, decoded, _ = cli(["decode", "--product", GOKIT], capsys, "\n".join(v["frame_hex"] for v in vectors) + "\n")
    failures = 0
    for number, (vector, mine, theirs) in enumerate(zip(vectors, sniffed, map(json.loads, decoded), strict=True)):
        assert (mine.pop("time"), mine.pop("dir")) == (f"{number}.5", DIRECTION_OF_VECTOR[vector["direction"]])
        if "error" in theirs:  # a vector whose payload does not decode: both say so
            failures += 1
            assert "error" in mine and mine["cmd"] == vector["cmd"] and mine["sn"] == vector["sn"]
            continue
        assert mine == theirs
    assert failures <= 1


def test_replay_text_trace(capsys: pytest.CaptureFixture[str]) -> None:
    capture = "0.1 < ffff0005071a000026\n0.2 > ffff0005081a000027\n"
    status, out, err = cli(["sniff", "--replay", "-"], capsys, capture)
    assert status == 0
    assert out == ["0.1 mod>mcu heartbeat(0x07) sn=26", "0.2 mcu>mod heartbeat_ack(0x08) sn=26"]
    assert "mod>mcu 9 bytes read, 1 frame, 0 bad stretches, 0 undecodable payloads" in err


def test_replay_reports_malformed_lines_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    capture = "\n".join(
        [
            "# a frame split over lines, with bad lines around it",
            "1.0 mod>mcu ffff0005",  # line 2
            "1.1 mod>mcu 0710zz",  # line 3: bad, skipped
            "1.2 mod>mcu 071000001c",  # line 4: completes the frame
            "fff",  # line 5: odd digits
            "2026-02-30T00:00:00Z > ff",  # line 6: no such date
            "mcu>mod ffff0005081000001d ffff0005081100001e",  # line 7: two frames
        ]
    )
    status, out, err = cli(["sniff", "--replay", "-", "--json"], capsys, capture)
    assert status == 1
    objs = [json.loads(line) for line in out]
    assert [(o.get("line"), o.get("cmd"), o.get("sn")) for o in objs] == [
        (3, None, None),
        (None, 7, 16),
        (5, None, None),
        (6, None, None),
        (None, 8, 16),
        (None, 8, 17),
    ]
    assert objs[0]["dir"] == "mod>mcu" and "not hex" in objs[0]["error"]
    assert "odd number of hex digits" in objs[2]["error"]
    assert "not a timestamp" in objs[3]["error"]
    assert "3 bad capture lines skipped" in err


def test_replay_survives_a_hostile_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    capture = tmp_path / "hostile.cap"
    with capture.open("wb") as f:
        f.write(b"\xff\xfe\x00binary junk \x80\x81\n")  # line 1: not UTF-8, NUL bytes
        f.write(b"mcu>mod " + b"ab" * MAX_LINE_CHARS + b"\n")  # line 2: far too long
        f.write(b"mcu>mod " + b"00" * 300_000 + b"\n")  # line 3: long but fine: 300 kB of garbage
        f.write(b"> ffff0005081000001d\n")  # line 4: a good frame after it all
        f.write(b"\t\r\n")  # line 5: blank (with a CR)
        f.write(b"> " + b"ff" * 1000)  # line 6: a run of 0xff without a newline at the end
    status, out, err = cli(["sniff", "--replay", str(capture), "--json"], capsys)
    assert status == 1
    objs = [json.loads(line) for line in out]
    assert objs[0]["line"] == 1 and "not hex" in objs[0]["error"]
    assert objs[1]["line"] == 2 and "longer than" in objs[1]["error"]
    assert objs[2]["error"] == "300000 bytes of garbage skipped" and len(objs[2]["data"]) <= 2 * 64
    assert (objs[3]["cmd"], objs[3]["sn"]) == (8, 16)
    assert "truncated" in objs[4]["error"] or "garbage" in objs[4]["error"]  # the trailing 0xff run
    assert len(objs) <= 6
    assert "2 bad capture lines skipped" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to sniff"),
        (["--mcu-side", "/dev/null"], "needs both --mcu-side PORT and --module-side PORT"),
        (["--replay", "x", "--mcu-side", "a", "--module-side", "b"], "not both"),
        (["--replay", "-", "--record", "out.cap"], "--record is for live sniffing"),
        (["--replay", "/nonexistent/capture"], "--replay /nonexistent/capture: cannot open"),
        (["--replay", "/"], "--replay /: cannot"),
    ],
)
def test_option_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = cli(["sniff", *argv], capsys, "")
    assert status == 1
    assert message in err


def test_help_documents_the_capture_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sniff", "--help"])
    text = capsys.readouterr().out
    for needle in ("mcu>mod", "mod>mcu", "idle", "--record", "--replay", "ISO 8601", "decimal point", "#"):
        assert needle in text


def test_every_direction_name_in_the_help_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    capture = "> ffff0005081000001d\n< ffff0005071000001c\nmcu>mod ffff0005081000001d\nmod>mcu ffff0005071000001c\n"
    status, out, _ = cli(["sniff", "--replay", "-", "--json"], capsys, capture)
    assert status == 0
    assert [json.loads(line)["dir"] for line in out] == ["mcu>mod", "mod>mcu", "mcu>mod", "mod>mcu"]


def test_decode_describes_p0_acks_as_sniff_does(capsys: pytest.CaptureFixture[str]) -> None:
    """0x06 and an empty 0x04 have no P0 body (spec §7 Ex 2 ACK); decode used to refuse them."""
    status, out, _ = cli(["decode", "--product", GOKIT, "ffff0005061200001d", "ffff00050407000010"], capsys)
    assert status == 0
    assert [json.loads(line) for line in out] == [
        {"cmd": 6, "cmd_name": "p0_up_ack", "sn": 0x12, "flags": 0},
        {"cmd": 4, "cmd_name": "p0_down_ack", "sn": 7, "flags": 0},
    ]
