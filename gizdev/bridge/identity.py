"""The bridge's identity on the cloud (DID, passcode, MAC), kept in a state file written atomically.

GAgent keeps the same facts in its config dump (gagent-wire-observations §5): losing them means a new
registration, a new DID and every app binding gone, so the file is replaced atomically (write, fsync, rename) and
never left half-written. A reset requested by the MCU clears the DID and makes a new passcode.

The bridge and its uplinks share one :class:`IdentityStore`: the bridge renews the identity (the MCU's reset,
another product on the UART), the cloud uplink records its registration, the LAN server answers with it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import string
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gizdev.errors import ConfigError
from gizdev.protocol.identifiers import new_passcode

__all__ = ["IDENTITY_FILE", "Identity", "IdentityStore", "load_identity", "new_identity", "save_identity"]

_LOGGER = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"


@dataclass(frozen=True, slots=True)
class Identity:
    mac: str  # 12 upper-case hex digits
    passcode: str
    product_key: str = ""
    did: str = ""  # empty until the cloud assigned one
    cloud: str = ""  # the cloud that assigned the DID
    # A DID given up by a reset, to be disabled on the cloud once the new one exists (GAgent's DELETE /dev/devices).
    old_did: str = ""
    old_passcode: str = ""
    # The MQTT password the cloud gave us at an encrypted registration; "": the passcode is the password (the
    # plain API's rule, which every user bound to the device can read from the cloud).
    mqtt_password: str = ""

    def registered_with(self, cloud: str, product_key: str) -> bool:
        return bool(self.did) and self.cloud == cloud and self.product_key == product_key

    def reset(self) -> Identity:
        """A fresh passcode and no DID (the MCU asked for a module reset): the next start registers anew."""
        if not self.did:
            return replace(self, passcode=new_passcode(), mqtt_password="")
        return replace(
            self,
            passcode=new_passcode(),
            did="",
            cloud="",
            old_did=self.did,
            old_passcode=self.passcode,
            mqtt_password="",
        )

    @property
    def broker_password(self) -> str:
        """What the device logs in to the broker with: its own MQTT password, else the passcode."""
        return self.mqtt_password or self.passcode


def new_mac() -> str:
    """A random, locally administered unicast MAC (bit 1 of the first byte set, bit 0 clear)."""
    first = (secrets.randbits(8) & 0xFC) | 0x02
    return (bytes([first]) + secrets.token_bytes(5)).hex().upper()


def new_identity(mac: str | None = None) -> Identity:
    return Identity(mac=(mac or new_mac()).upper(), passcode=new_passcode())


def load_identity(state_dir: Path) -> Identity | None:
    """The saved identity, None if there is none yet; ConfigError if the file is unreadable or corrupt."""
    path = state_dir / IDENTITY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the bridge identity {path}: {exc}") from exc
    try:
        data = json.loads(raw.decode("utf-8"))
        identity = Identity(
            **{key: str(data[key]) for key in ("mac", "passcode", "product_key", "did", "cloud")},
            **{key: str(data.get(key, "")) for key in ("old_did", "old_passcode", "mqtt_password")},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is corrupt ({exc}); move it away to register as a new device") from exc
    if len(identity.mac) != 12 or not all(c in string.hexdigits for c in identity.mac) or not identity.passcode:
        raise ConfigError(f"{path} is corrupt (bad mac or passcode); move it away to register as a new device")
    return identity


def save_identity(state_dir: Path, identity: Identity) -> None:
    """Replace the state file atomically (a crash leaves the old file or the new one, never a mix)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".identity-", dir=state_dir)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(asdict(identity), handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, state_dir / IDENTITY_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise ConfigError(f"cannot save the bridge identity in {state_dir}: {exc}") from exc
    _LOGGER.debug("identity saved: did %s, mac %s", identity.did or "(none)", identity.mac)


class IdentityStore:
    """The bridge's current identity, saved in ``state_dir`` atomically whenever it changes."""

    def __init__(self, state_dir: Path, identity: Identity) -> None:
        self.state_dir = state_dir
        self._identity = identity

    @classmethod
    def open(cls, state_dir: Path, *, mac: str = "") -> IdentityStore:
        """The saved identity, else a new one with ``mac`` (default: random); ConfigError if the file is corrupt.

        Nothing is written until :meth:`save` or :meth:`update`: a bridge that fails to start leaves no file.
        """
        identity = load_identity(state_dir) or new_identity(mac or None)
        if mac and identity.mac != mac.upper():
            _LOGGER.warning(
                "configured mac %s differs from the saved identity's %s; keeping the saved one",
                mac.upper(),
                identity.mac,
            )
        return cls(state_dir, identity)

    @property
    def identity(self) -> Identity:
        return self._identity

    def update(self, identity: Identity) -> None:
        """Make ``identity`` the current one and save it."""
        self._identity = identity
        self.save()

    def save(self) -> None:
        """Write the current identity (ConfigError if the state dir cannot take it)."""
        save_identity(self.state_dir, self._identity)

    def reset(self) -> Identity:
        """A new passcode and no DID (the old one kept to be disabled on the cloud): :meth:`Identity.reset`."""
        self.update(self._identity.reset())
        return self._identity
