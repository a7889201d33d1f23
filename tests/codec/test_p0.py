"""P0 codec behaviour: the spec's worked examples, value conversion, and every refusal."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest

from gizdev.codec.p0 import Action, Product, load_product
from gizdev.errors import PayloadError
from gizdev.schema import parse_schema
from tests.conftest import SHARED_EXAMPLES, product_path, require_shared_examples

GOKIT_VALUES: dict[str, Any] = {
    "LED_OnOff": True,
    "LED_Color": "Purple",
    "LED_R": 10,
    "LED_G": 20,
    "LED_B": 30,
    "Motor_Speed": 2,
    "Infrared": True,
    "Temperature": 25,
    "Humidity": 60,
    "Alert_1": False,
    "Alert_2": True,
    "Fault_LED": False,
    "Fault_Motor": True,
    "Fault_TemHum": False,
    "Fault_IR": False,
}


@pytest.fixture(scope="module")
def gokit() -> Product:
    return load_product(product_path("gokit"))


@pytest.fixture(scope="module")
def light() -> Product:
    return load_product(product_path("light"))


@pytest.fixture(scope="module")
def fan() -> Product:
    return load_product(product_path("fan"))


def shared_example(name: str) -> Product:
    require_shared_examples()
    return load_product(SHARED_EXAMPLES / name)


# ---- the spec's worked examples (serial-protocol.md §7) -----------------------------------------------------


def test_gokit_report_example_1(gokit: Product) -> None:
    assert gokit.encode("report", GOKIT_VALUES).hex() == "04050a141e0701263c0202"
    assert gokit.decode(bytes.fromhex("04050a141e0701263c0202")).attrs == GOKIT_VALUES


def test_gokit_write_example_2(gokit: Product) -> None:
    p0 = gokit.encode("write", {"LED_R": 200, "Motor_Speed": -5})
    assert p0.hex() == "012400c8000000"
    message = gokit.decode(p0)
    assert message == (Action.WRITE, {"LED_R": 200, "Motor_Speed": -5}, 0x24, (), b"", ())


def test_two_byte_bit_region_and_four_byte_flags_example_3(light: Product) -> None:
    p0 = light.encode("write", {"switch1": True, "enum": "enum2", "data1": 1000})
    expected = "01" + "04002100" + "4100" + "00" * 12 + "03e8" + "00" * 8
    assert p0.hex() == expected
    assert light.decode(p0).attrs == {"switch1": True, "enum": "enum2", "data1": 1000}


def test_varlen_examples_4(fan: Product) -> None:
    full = {"windspeed": "high", "work_mod": "harm", "wendu": 25, "wemdu_kongzhi": 26, "shidu": 55}
    assert fan.encode("report", full).hex() == "141f062d0a37"
    assert fan.encode("report", {"shidu": 55}).hex() == "141037"
    assert fan.encode("write", {"work_mod": "could", "wemdu_kongzhi": 20}).hex() == "110a0004"
    assert fan.encode("read").hex() == "121f"
    assert fan.decode(bytes.fromhex("141f062d0a37")).attrs == full


def test_fractional_ratio_example_5() -> None:
    ph = shared_example("ph803w.json")
    values = {
        "pH_OUT": True,
        "mV_OUT": False,
        "EC_OUT": True,
        "TEMP_OUT": False,
        "pH": 7.0,
        "mV": -150,
        "EC": 12.34,
        "TEMP": 25.5,
    }
    p0 = ph.encode("report", values)
    assert p0.hex() == "040502bc073a04d200ff"
    decoded = ph.decode(p0).attrs
    assert decoded == values
    assert repr(decoded["EC"]) == "12.34"


# ---- value conversion -----------------------------------------------------------------------------------


def test_decimal_results_are_exact() -> None:
    ph = shared_example("ph803w.json")
    status = bytearray(bytes.fromhex("040000000000000000ea"))  # TEMP raw 234
    assert ph.decode(bytes(status)).attrs["TEMP"] == 23.4
    assert repr(ph.decode(bytes(status)).attrs["TEMP"]) == "23.4"
    # 0.1 + 0.2 is float noise around a step: accepted; 23.45 really sits between two steps: refused.
    assert ph.codecs["TEMP"].to_raw(0.1 + 0.2) == 3
    assert ph.codecs["TEMP"].to_raw(Decimal("23.4")) == 234
    with pytest.raises(PayloadError, match=r"multiple of the step 0\.1"):
        ph.codecs["TEMP"].to_raw(23.45)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("LED_OnOff", 2, "true or false"),
        ("LED_OnOff", "yes", "true or false"),
        ("LED_Color", "Green", "not one of Customize, Yellow, Purple, Pink"),
        ("LED_Color", 4, "index 0..3"),
        ("LED_Color", True, "index 0..3"),
        ("LED_R", 255, "out of range 0..254"),
        ("LED_R", -1, "out of range 0..254"),
        ("LED_R", 1.5, "multiple of the step"),
        ("LED_R", "10", "expects a number"),
        ("LED_R", True, "expects a number"),
        ("LED_R", None, "expects a number"),
        ("Motor_Speed", 6, "out of range -5..5"),
        ("Motor_Speed", -6, "out of range -5..5"),
        ("Temperature", float("nan"), "multiple of the step"),
        ("Temperature", float("inf"), "multiple of the step"),
        ("Temperature", 10**30, "out of range -13..187"),
    ],
)
def test_bad_values_are_refused_with_their_path(gokit: Product, name: str, value: Any, fragment: str) -> None:
    values = {**GOKIT_VALUES, name: value}
    with pytest.raises(PayloadError) as caught:
        gokit.encode("report", values)
    assert caught.value.path == f"attrs/{name}"
    assert fragment in str(caught.value)


def test_accepted_spellings(gokit: Product) -> None:
    base = gokit.encode("report", GOKIT_VALUES)
    spelled = {**GOKIT_VALUES, "LED_Color": 2, "LED_OnOff": 1, "LED_R": 10.0, "Motor_Speed": Decimal(2)}
    assert gokit.encode(Action.REPORT, spelled) == base
    assert gokit.encode(4, GOKIT_VALUES) == base
    assert gokit.encode("REPORT", GOKIT_VALUES) == base


def test_full_status_needs_every_datapoint_and_nothing_else(gokit: Product) -> None:
    partial = {k: v for k, v in GOKIT_VALUES.items() if k != "Humidity"}
    with pytest.raises(PayloadError, match="missing Humidity"):
        gokit.encode("report", partial)
    with pytest.raises(PayloadError) as caught:
        gokit.encode("report", {**partial, "Humidty": 3})
    assert caught.value.path == "attrs/Humidty"
    with pytest.raises(PayloadError, match="object of datapoint values"):
        gokit.encode("report", [1, 2, 3])  # type: ignore[list-item]


def test_write_refusals(gokit: Product, fan: Product) -> None:
    with pytest.raises(PayloadError, match="read-only") as caught:
        gokit.encode("write", {"Temperature": 20})
    assert caught.value.path == "attrs/Temperature"
    with pytest.raises(PayloadError, match="read-only"):
        fan.encode("write", {"wendu": 20})
    with pytest.raises(PayloadError, match="at least one"):
        gokit.encode("write", {})
    with pytest.raises(PayloadError, match="unknown datapoint"):
        gokit.encode("write", {"LED_X": 1})


def test_actions_of_the_other_format_are_refused(gokit: Product, fan: Product) -> None:
    with pytest.raises(PayloadError, match="fixed-length product"):
        gokit.encode(Action.VAR_REPORT, {})
    with pytest.raises(PayloadError, match="variable-length product"):
        fan.encode(Action.REPORT, {})
    with pytest.raises(PayloadError, match="unknown action"):
        gokit.encode("explode", {})
    with pytest.raises(PayloadError, match="unknown action"):
        gokit.encode(0x99, {})
    with pytest.raises(PayloadError, match="variable-length product"):
        fan.decode(bytes.fromhex("0400"))


def test_varlen_flags_must_agree_with_the_values(fan: Product) -> None:
    with pytest.raises(PayloadError, match="disagree"):
        fan.encode("report", {"shidu": 1}, flags=0x01)
    with pytest.raises(PayloadError, match="do not fit"):
        fan.encode("report", {"shidu": 1}, flags=0x110)
    assert fan.encode("report", {"shidu": 1}, flags=0xF0).hex() == "14f001"


def test_transparent_and_misplaced_arguments(gokit: Product) -> None:
    assert gokit.encode("transparent_down", data=b"\x01\xff").hex() == "0501ff"
    assert gokit.decode(bytes.fromhex("0601ff")).data == b"\x01\xff"
    with pytest.raises(PayloadError, match="data, not attrs"):
        gokit.encode("transparent_up", {"LED_R": 1})
    with pytest.raises(PayloadError, match="no pass-through data"):
        gokit.encode("report", GOKIT_VALUES, data=b"x")
    with pytest.raises(PayloadError, match="whole status"):
        gokit.encode("read", ["LED_R"])
    with pytest.raises(PayloadError, match="no explicit flags"):
        gokit.encode("write", {"LED_R": 1}, flags=1)


@pytest.mark.parametrize(
    ("hex_p0", "fragment"),
    [
        ("", "empty P0"),
        ("04050a141e0701263c02", "truncated"),
        ("04050a141e0701263c020200", r"1 byte\(s\) too long"),
        ("0124", "truncated"),
        ("0200", "too long"),
        ("07", "unknown action"),
    ],
)
def test_malformed_fixed_p0(gokit: Product, hex_p0: str, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment) as caught:
        gokit.decode(bytes.fromhex(hex_p0))
    assert caught.value.data.hex() == hex_p0


@pytest.mark.parametrize(
    ("hex_p0", "fragment"),
    [
        ("14", "truncated"),
        ("141f06", "truncated"),
        ("1410", "truncated"),
        ("14103700", "unexpected byte"),
        ("12", "truncated"),
        ("121f00", "too long"),
        ("111f06", "truncated"),
    ],
)
def test_malformed_varlen_p0(fan: Product, hex_p0: str, fragment: str) -> None:
    with pytest.raises(PayloadError, match=fragment):
        fan.decode(bytes.fromhex(hex_p0))


def test_read_reply_ignores_stale_bytes(fan: Product) -> None:
    assert fan.decode(bytes.fromhex("13103700000000")).attrs == {"shidu": 55}


def test_anomalies_on_decode(gokit: Product, light: Product) -> None:
    message = gokit.decode(bytes.fromhex("0407ff0a1e0701263c0202"))  # LED_Color index 3 ok, LED_R raw 255
    assert [a.name for a in message.anomalies] == ["LED_R"]
    assert message.attrs["LED_R"] == 255
    varlen = load_product(product_path("fan"))
    message = varlen.decode(bytes.fromhex("140103"))  # windspeed index 3 of 3 members
    assert message.attrs == {"windspeed": 3}
    assert "no member" in message.anomalies[0].reason
    write = light.decode(bytes.fromhex("0180000001") + bytes(24))  # attr_flags bit 31 names no datapoint
    assert write.attrs == {"Led_OnOff_Change": False}
    assert write.anomalies[0].name == "attr_flags"


def test_json_helpers_for_binary_points() -> None:
    document = json.loads(product_path("gokit").read_text())
    attrs = document["entities"][0]["attrs"]
    blob = copy.deepcopy(attrs[8])
    blob.update(id=15, name="Blob", type="status_readonly", data_type="binary", position={**blob["position"], "len": 3})
    blob["position"]["byte_offset"] = 10
    del blob["uint_spec"]
    attrs.append(blob)
    product = Product(parse_schema(document))
    values = product.attrs_from_json({**GOKIT_VALUES, "Blob": "00ff10"})
    assert values["Blob"] == b"\x00\xff\x10"
    p0 = product.encode("report", values)
    assert p0.endswith(b"\x00\xff\x10")
    assert product.attrs_to_json(product.decode(p0).attrs)["Blob"] == "00ff10"
    with pytest.raises(PayloadError, match="exactly 3 bytes, got 2"):
        product.encode("report", {**values, "Blob": b"\x00\x01"})
    with pytest.raises(PayloadError, match="hex string"):
        product.attrs_from_json({"Blob": "xyz"})
