"""``gizdev decode``, ``gizdev encode`` and ``gizdev schema check`` against the vendor SDK vectors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gizdev.cli.main import main
from tests.conftest import VECTOR_SETS, load_vectors, product_path, vector_meta

GOKIT = str(product_path("gokit"))
EXAMPLE_1 = "ffff00100512000004050a141e0701263c0202da"  # serial protocol §7, Ex 1


def run(argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None) -> tuple[int, list[str], str]:
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        status = main(argv)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def labels(name: str, values: dict[str, Any]) -> dict[str, Any]:
    schema = json.loads(product_path(name).read_text())
    enums = {a["name"]: a.get("enum") for a in schema["entities"][0]["attrs"]}
    return {k: enums[k][v] if enums[k] and v < len(enums[k]) else v for k, v in values.items()}


def test_decode_example_argument(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines, _ = run(["decode", "--product", GOKIT, EXAMPLE_1], capsys)
    assert status == 0
    (obj,) = (json.loads(line) for line in lines)
    assert obj["cmd"] == 5 and obj["sn"] == 0x12 and obj["flags"] == 0
    assert obj["action"] == 4
    assert obj["attrs"]["LED_Color"] == "Purple"
    assert obj["attrs"]["Motor_Speed"] == 2 and obj["attrs"]["Temperature"] == 25


@pytest.mark.parametrize("name", list(VECTOR_SETS))
def test_decode_every_report_and_write_vector_from_stdin(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Reports and writes through stdin, one frame per line: every line gives the vector's values."""
    vectors = [v for v in load_vectors(name) if v["kind"] in ("status_report", "read_reply", "write")]
    stdin = "\n".join(v["frame_hex"] for v in vectors) + "\n"
    status, lines, _ = run(["decode", "--product", str(product_path(name))], capsys, stdin)
    assert len(lines) == len(vectors)
    failures = 0
    for vector, line in zip(vectors, lines, strict=True):
        obj = json.loads(line)
        if "error" in obj:  # only the malformed variable-length write (flags 0xff, body too short) may fail
            assert vector["flags"] == 0xFF and "truncated" in obj["error"]
            failures += 1
            continue
        assert obj["sn"] == vector["sn"]
        assert obj["cmd"] == vector["cmd"]
        expected = labels(name, vector["values"])
        if vector["kind"] != "write":
            assert set(obj["attrs"]) == set(expected)
            if not vector["out_of_range"]:
                assert obj["attrs"] == expected
    assert status == (1 if failures else 0)


def test_decode_other_commands(capsys: pytest.CaptureFixture[str]) -> None:
    vectors = {v["kind"]: v for v in load_vectors("gokit")}
    frames = [
        vectors["device_info_reply"]["frame_hex"],
        vectors["heartbeat_reply"]["frame_hex"],
        vectors["error_reply"]["frame_hex"],
        "ff ff 00 07 0d 03 00 00 05 32 4e",  # spec Ex 6: station + router + cloud, rssi 5
    ]
    status, lines, _ = run(["decode", *frames], capsys)
    assert status == 0
    info, heartbeat, error, wifi = (json.loads(line) for line in lines)
    assert info["cmd_name"] == "device_info_reply"
    assert vector_meta("gokit")["product_key"] in json.dumps(info)
    assert heartbeat["cmd"] == 8 and heartbeat["cmd_name"] == "heartbeat_ack"
    assert error["cmd"] == 0x12 and "1" in json.dumps(error)
    assert wifi["cmd_name"] == "wifi_status" and wifi["rssi"] == 5


def test_decode_bad_lines_are_reported_and_the_run_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    stdin = "\n".join(
        [
            EXAMPLE_1,
            "ffff00100512000004050a141e0701263c0202db",  # checksum off by one
            "not hex",
            "ffff0010",  # truncated
            "ffff000c0388000001300319c6ff550ab3",  # a good stuffed write
        ]
    )
    status, lines, _ = run(["decode", "--product", GOKIT], capsys, stdin)
    assert status == 1
    objs = [json.loads(line) for line in lines]
    assert [("error" in obj) for obj in objs] == [False, True, True, True, False]
    assert objs[1]["line"] == 2 and "checksum" in objs[1]["error"]
    assert objs[4]["action"] == 1


def test_decode_without_product_shows_p0_hex(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines, _ = run(["decode", EXAMPLE_1], capsys)
    assert status == 0
    assert json.loads(lines[0])["p0"] == "04050a141e0701263c0202"


@pytest.mark.parametrize("name", list(VECTOR_SETS))
def test_encode_every_report_vector(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    vectors = [
        v
        for v in load_vectors(name)
        if v["kind"] in ("status_report", "status_report_periodic") and not v["out_of_range"]
    ]
    requests = []
    for v in vectors:
        request = {"cmd": v["cmd"], "sn": v["sn"], "action": v["action"], "attrs": v["values"]}
        if v["kind"] == "status_report_periodic":
            request["p0_flags"] = v["flags"]
        requests.append(json.dumps(request))
    status, lines, _ = run(["encode", "--product", str(product_path(name))], capsys, "\n".join(requests))
    assert status == 0
    assert lines == [v["frame_hex"] for v in vectors]


def test_encode_names_single_frame_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines, _ = run(
        [
            "encode",
            "--product",
            GOKIT,
            "--cmd",
            "p0_down",
            "--sn",
            "7",
            "--action",
            "write",
            "--attrs",
            '{"LED_R": 200, "Motor_Speed": -5}',
        ],
        capsys,
    )
    assert status == 0
    assert lines == ["ffff000c03070000012400c800000003"]  # spec Ex 2

    stdin = "\n".join(
        [
            '{"cmd": "heartbeat", "sn": 16}',  # spec Ex 8
            '{"cmd": 3, "sn": 1, "action": "write", "attrs": {"LED_R": 300}}',
            "{not json",
            '{"cmd": "explode"}',
            '{"cmd": 9, "sn": "0x05", "payload": "02"}',
            '{"cmd": "0x09", "sn": 5, "payload": "02"}',  # spec Ex 8: AirLink
        ]
    )
    status, lines, _ = run(["encode", "--product", GOKIT], capsys, stdin)
    assert status == 1
    assert lines[0] == "ffff0005071000001c"
    errors = [json.loads(line) for line in lines[1:5]]
    assert all("error" in e for e in errors)
    assert "attrs/LED_R" in errors[0]["error"]
    assert errors[0]["line"] == 2 and errors[1]["line"] == 3
    assert "unknown command" in errors[2]["error"]
    assert "sn" in errors[3]["error"]
    assert lines[5] == "ffff00060905000002" + "16"


def test_schema_check(capsys: pytest.CaptureFixture[str]) -> None:
    status, lines, _ = run(["schema", "check", GOKIT], capsys)
    assert status == 0
    text = "\n".join(lines)
    assert "dev_status 10 bytes, attr_flags 1 byte(s), attr_vals 5 bytes" in text
    assert any("Motor_Speed" in line and "-5..5" in line and "byte 4" in line for line in lines)
    assert any("LED_Color" in line and "bits 1-2 of bytes 0-0" in line for line in lines)
    light = str(product_path("light"))
    status, lines, _ = run(["schema", "check", light], capsys)
    assert any("switch1" in line and "bit 8 of bytes 0-1" in line for line in lines)


def test_schema_check_reports_the_pointer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = json.loads(product_path("gokit").read_text())
    document["entities"][0]["attrs"][5]["uint_spec"]["ratio"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    status, _, err = run(["schema", "check", str(bad)], capsys)
    assert status == 1
    assert "bad.json" in err and "/entities/0/attrs/5/uint_spec/ratio" in err


def test_console_script_help_and_exit_codes(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "gizdev.cli.main"]
    help_text = subprocess.run([*command, "decode", "--help"], capture_output=True, text=True, check=True).stdout
    assert "one per line on stdin" in help_text
    result = subprocess.run(
        [*command, "decode", "--product", GOKIT, "ffff"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "error" in json.loads(result.stdout)
    missing = subprocess.run(
        [*command, "schema", "check", str(tmp_path / "nope.json")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "cannot read schema" in missing.stderr
