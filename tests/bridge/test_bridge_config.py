"""The bridge's settings: TOML parsing, overrides, clear ConfigErrors; and the CLI's --help and error exits."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gizdev.bridge.config import BridgeConfig, LanConfig, MqttConfig, load_config
from gizdev.cli.main import main
from gizdev.errors import ConfigError
from tests.conftest import product_path

GOKIT = product_path("gokit")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_a_full_file_is_read_with_the_right_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        port = "/dev/serial0"
        baudrate = 115200
        product = "/etc/gizdev/product.json"
        cloud = "http://192.168.1.10:8080"
        state_dir = "/var/lib/gizdev-test"
        mac = "02aabbccddee"
        encrypted = true
        product_secret = "00112233445566778899aabbccddeeff"
        heartbeat_s = 30

        [lan]
        hosts = ["0.0.0.0", "::"]
        udp_port = 22414
        tcp_port = 22416
        broadcast_address = "192.168.1.255"
        broadcast_port = 2416
        broadcast_rounds = 3
        binding_window_s = 60
        enabled = true
        """,
    )
    config = load_config(path, {})
    assert config == BridgeConfig(
        port="/dev/serial0",
        product=Path("/etc/gizdev/product.json"),
        cloud="http://192.168.1.10:8080",
        baudrate=115200,
        state_dir=Path("/var/lib/gizdev-test"),
        mac="02aabbccddee",
        encrypted=True,
        product_secret="00112233445566778899aabbccddeeff",
        heartbeat_s=30.0,
        lan=LanConfig(
            hosts=("0.0.0.0", "::"),
            udp_port=22414,
            tcp_port=22416,
            broadcast_address="192.168.1.255",
            broadcast_port=2416,
            broadcast_rounds=3,
            binding_window_s=60.0,
            enabled=True,
        ),
    )
    assert isinstance(config.heartbeat_s, float) and isinstance(config.lan.binding_window_s, float)


def test_defaults_keep_the_lan_on_loopback_and_the_spec_ports(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'port = "/dev/ttyUSB0"\nproduct = "p.json"\n'), {})
    assert config.baudrate == 9600  # serial protocol: 9600 8N1
    assert config.heartbeat_s == 55.0  # serial protocol §2.2: the module pings after 55 s
    assert config.lan.hosts == ("127.0.0.1",)
    # cloud-protocol §2: UDP 12414 discovery, TCP 12416 control, broadcasts to port 2415, 30 rounds.
    assert (config.lan.udp_port, config.lan.tcp_port, config.lan.broadcast_port) == (12414, 12416, 2415)
    assert config.lan.broadcast_rounds == 30
    assert config.cloud == ""  # LAN only


def test_overrides_win_over_the_file_and_none_means_not_given(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = "/dev/a"\nproduct = "a.json"\ncloud = "http://a:1"\nbaudrate = 19200\n[lan]\nudp_port = 1\n',
    )
    config = load_config(
        path,
        {
            "port": "/dev/b",
            "product": Path("b.json"),
            "cloud": None,  # an option not given on the command line: the file's value stays
            "baudrate": None,
            "lan_hosts": ("10.0.0.1",),
            "lan_udp_port": 2,
            "lan_enabled": None,
        },
    )
    assert (config.port, config.product, config.cloud, config.baudrate) == (
        "/dev/b",
        Path("b.json"),
        "http://a:1",
        19200,
    )
    assert (config.lan.hosts, config.lan.udp_port, config.lan.enabled) == (("10.0.0.1",), 2, True)


def test_overrides_alone_are_enough() -> None:
    config = load_config(None, {"port": "socket://127.0.0.1:5000", "product": GOKIT, "lan_enabled": False})
    assert config.port == "socket://127.0.0.1:5000" and config.product == GOKIT and not config.lan.enabled


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('port = "x"\nproduct = "p"\nspeed = 9600\n', ["unknown", "speed"]),
        ('port = "x"\nproduct = "p"\n[lan]\nhost = ["0.0.0.0"]\n', ["unknown", "lan.host"]),
        ('port = "x"\nproduct = "p"\nbaudrate = "9600"\n', ["baudrate", "int", "str"]),
        ('port = "x"\nproduct = "p"\nbaudrate = 9600.0\n', ["baudrate", "int", "float"]),
        ('port = "x"\nproduct = "p"\nencrypted = 1\n', ["encrypted", "bool", "int"]),
        ('port = "x"\nproduct = "p"\nheartbeat_s = true\n', ["heartbeat_s", "float", "bool"]),
        ('port = "x"\nproduct = 5\n', ["product", "path"]),
        ('port = 3\nproduct = "p"\n', ["port", "str", "int"]),
        ('port = "x"\nproduct = "p"\n[lan]\nhosts = "0.0.0.0"\n', ["lan.hosts", "list"]),
        ('port = "x"\nproduct = "p"\n[lan]\nhosts = [1, 2]\n', ["lan.hosts", "list"]),
        ('port = "x"\nproduct = "p"\nlan = 5\n', ["[lan]", "table"]),
        ('port = "x"\nproduct = "p"\n[lan]\nudp_port = 70000\n', ["lan.udp_port", "65535"]),
        ('port = "x"\nproduct = "p"\n[lan]\ntcp_port = -1\n', ["lan.tcp_port"]),
        ('port = "x"\nproduct = "p"\n[lan]\nbroadcast_rounds = -1\n', ["broadcast_rounds"]),
        ('port = "x"\nproduct = "p"\n[lan]\nhosts = []\n', ["lan.hosts", "empty"]),
        ('product = "p"\n', ["port", "required"]),
        ('port = "x"\n', ["product", "required"]),
        ('port = ""\nproduct = "p"\n', ["port", "required"]),
        ('port = "x"\nproduct = "p"\ncloud = "192.168.1.10:8080"\n', ["cloud", "http://"]),
        ('port = "x"\nproduct = "p"\ncloud = "ftp://host"\n', ["cloud", "http://"]),
        ('port = "x"\nproduct = "p"\nmac = "aa:bb:cc:dd:ee:ff"\n', ["mac", "12 hex digits"]),
        ('port = "x"\nproduct = "p"\nmac = "GGBBCCDDEEFF"\n', ["mac", "12 hex digits"]),
        ('port = "x"\nproduct = "p"\nbaudrate = 0\n', ["baudrate", "positive"]),
        ('port = "x"\nproduct = "p"\nheartbeat_s = -5\n', ["heartbeat_s", "positive"]),
        ('port = "x\nproduct = "p"\n', ["bridge.toml"]),  # TOML syntax error: the file is named
        ("port = [\n", ["bridge.toml"]),
    ],
)
def test_bad_settings_are_clear_config_errors(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {})
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nowhere.toml", {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path, {})  # a directory
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe port = 1")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "binary.toml", {})


def test_a_missing_required_setting_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--port"):
        load_config(None, {"product": GOKIT})
    with pytest.raises(ConfigError, match="--product"):
        load_config(None, {"port": "/dev/x"})


# -- the CLI ------------------------------------------------------------------------------------------------


def help_text(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(["bridge", "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_help_mentions_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys)
    for f in dataclasses.fields(BridgeConfig):
        if f.name not in ("lan", "mqtt"):
            assert f.name in text, f.name
    for f in dataclasses.fields(LanConfig):
        assert f.name in text, f"lan {f.name}"
    for f in dataclasses.fields(MqttConfig):
        assert f.name in text, f"mqtt {f.name}"
    for option in ("--config", "--port", "--product", "--cloud", "--state-dir", "--mac", "--baudrate", "--mqtt"):
        assert option in text, option


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["bridge", *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('port = "/dev/x"\nproduct = "p"\ncolour = "red"\n', ["unknown setting", "colour"]),
        ('port = "/dev/x"\n', ["product is required"]),
        ('port = "/dev/x"\nproduct = "p"\nbaudrate = "fast"\n', ["baudrate"]),
    ],
)
def test_cli_with_a_bad_config_exits_1_with_a_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, toml: str, words: list[str]
) -> None:
    status, err = run_cli(capsys, "--config", str(write(tmp_path, toml)))
    assert status == 1
    assert err.startswith("gizdev bridge: ")
    for word in words:
        assert word in err
    assert "Traceback" not in err


def test_cli_with_a_missing_product_file_or_corrupt_identity_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    args: list[Any] = ["--port", "/dev/null", "--state-dir", str(state), "--no-lan"]
    status, err = run_cli(capsys, *args, "--product", str(tmp_path / "missing.json"))
    assert status == 1 and "missing.json" in err
    state.mkdir()
    (state / "identity.json").write_text("{not json")
    status, err = run_cli(capsys, *args, "--product", str(GOKIT))
    assert status == 1 and "identity.json" in err and "corrupt" in err
    assert (state / "identity.json").read_text() == "{not json"  # left for the user to look at
