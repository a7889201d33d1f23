"""The bridge's identity file: round trip, corrupt files refused without being touched, atomic replacement."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gizdev.bridge.config import BridgeConfig, LanConfig
from gizdev.bridge.factory import build_bridge
from gizdev.bridge.identity import IDENTITY_FILE, Identity, load_identity, new_identity, save_identity
from gizdev.errors import ConfigError
from tests.conftest import product_path

REGISTERED = Identity("02AABBCCDDEE", "HKIPANQEYX", "0123456789abcdef0123456789abcdef", "d" * 22, "http://c:1")


def test_nothing_saved_yet_is_none(tmp_path: Path) -> None:
    assert load_identity(tmp_path / "missing") is None
    assert load_identity(tmp_path) is None


def test_round_trip_private_file_and_no_temp_files(tmp_path: Path) -> None:
    state = tmp_path / "state" / "deeper"
    save_identity(state, REGISTERED)
    assert load_identity(state) == REGISTERED
    assert json.loads((state / IDENTITY_FILE).read_text()) == {
        "mac": "02AABBCCDDEE",
        "passcode": "HKIPANQEYX",
        "product_key": "0123456789abcdef0123456789abcdef",
        "did": "d" * 22,
        "cloud": "http://c:1",
        "old_did": "",
        "old_passcode": "",
        "mqtt_password": "",
    }
    assert stat.S_IMODE(os.stat(state / IDENTITY_FILE).st_mode) == 0o600  # the passcode is a credential
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    # Saved again (replaced): still one file.
    save_identity(state, REGISTERED.reset())
    assert sorted(p.name for p in state.iterdir()) == [IDENTITY_FILE]


def test_a_failed_save_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    save_identity(tmp_path, REGISTERED)
    before = (tmp_path / IDENTITY_FILE).read_bytes()
    broken = Identity(REGISTERED.mac, REGISTERED.passcode, REGISTERED.product_key, REGISTERED.did, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # json cannot write it: fails half way through the temp file
        save_identity(tmp_path, broken)
    assert (tmp_path / IDENTITY_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [IDENTITY_FILE]


def test_an_unwritable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot save the bridge identity"):
        save_identity(blocker / "state", REGISTERED)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\xff\xfe{}",  # not UTF-8 (the disk, not the bridge, wrote this)
        "{not json",
        "[]",
        "null",
        '{"mac": "02AABBCCDDEE"}',  # no passcode
        '{"mac": "02AABBCCDDEE", "passcode": "HKIPANQEYX", "product_key": "", "did": ""}',  # no cloud
        '{"mac": "02AABBCC", "passcode": "HKIPANQEYX", "product_key": "", "did": "", "cloud": ""}',
        '{"mac": "02AABBCCDDZZ", "passcode": "HKIPANQEYX", "product_key": "", "did": "", "cloud": ""}',
        '{"mac": "02AABBCCDDEE", "passcode": "", "product_key": "", "did": "", "cloud": ""}',
        '{"mac": "02AABBCCDDEE", "passcode": "HKIPANQEYX", "product_key": "", "did": "',  # cut short
    ],
)
def test_a_corrupt_file_is_a_clear_error_and_stays_as_it_was(tmp_path: Path, text: str) -> None:
    path = tmp_path / IDENTITY_FILE
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_identity(tmp_path)
    assert str(path) in str(info.value) and "corrupt" in str(info.value)
    # A bridge on this state dir refuses to start rather than register anew over the file.
    config = BridgeConfig(
        port="/dev/null", product=product_path("gokit"), state_dir=tmp_path, lan=LanConfig(enabled=False)
    )
    with pytest.raises(ConfigError, match="corrupt"):
        build_bridge(config)
    assert path.read_bytes() == text.encode("latin-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [IDENTITY_FILE]


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / IDENTITY_FILE).mkdir()  # a directory where the file should be: reading it fails
    with pytest.raises(ConfigError, match="cannot read"):
        load_identity(tmp_path)


def test_new_identities_follow_gagent() -> None:
    seen = set()
    for _ in range(50):
        identity = new_identity()
        first = int(identity.mac[:2], 16)
        assert len(identity.mac) == 12 and identity.mac == identity.mac.upper()
        assert first & 0x02 and not first & 0x01  # locally administered, unicast: never a vendor's address
        # cloud-protocol §1.1: 10 upper-case ASCII letters.
        assert len(identity.passcode) == 10 and identity.passcode.isascii() and identity.passcode.isupper()
        assert identity.passcode.isalpha()
        assert (identity.did, identity.cloud) == ("", "")
        seen.add(identity.passcode)
    assert len(seen) == 50
    assert new_identity("02aabbccddee").mac == "02AABBCCDDEE"


def test_reset_keeps_the_mac_and_forgets_the_registration() -> None:
    reset = REGISTERED.reset()
    assert reset.mac == REGISTERED.mac and reset.product_key == REGISTERED.product_key
    assert (reset.did, reset.cloud) == ("", "")
    assert reset.passcode != REGISTERED.passcode and len(reset.passcode) == 10
    assert REGISTERED.registered_with("http://c:1", REGISTERED.product_key)
    assert not REGISTERED.registered_with("http://other:1", REGISTERED.product_key)
    assert not REGISTERED.registered_with("http://c:1", "f" * 32)
    assert not reset.registered_with("http://c:1", REGISTERED.product_key)
