"""DIDs and passcodes of the device API (cloud protocol §1.1)."""

from __future__ import annotations

import re
import string

from gizdev.protocol.identifiers import DID_LENGTH, PASSCODE_LENGTH, new_did, new_passcode


def test_passcode_format() -> None:
    passcodes = [new_passcode() for _ in range(200)]
    assert all(re.fullmatch(r"[A-Z]{10}", code) for code in passcodes)
    assert len(set(passcodes)) == 200
    assert set("".join(passcodes)) == set(string.ascii_uppercase)  # all 26 letters show up in 2000 draws


def test_did_format() -> None:
    dids = [new_did() for _ in range(200)]
    assert all(re.fullmatch(r"[A-Za-z0-9]{22}", did) for did in dids)
    assert len(set(dids)) == 200


def test_lengths_are_the_protocols() -> None:
    assert (DID_LENGTH, PASSCODE_LENGTH) == (22, 10)
