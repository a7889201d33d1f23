"""The files a managed Mosquitto reads: its config, the password file and the ACL file (pure renderers + writers).

Password file
    One ``username:$7$<iterations>$<salt b64>$<hash b64>`` line per account: PBKDF2-HMAC-SHA512, 12 random salt
    bytes, 64-byte key, 101 iterations — exactly what ``mosquitto_passwd`` 2.x writes (``$7$`` is its PBKDF2 tag,
    101 its default iteration count), so no ``mosquitto_passwd`` process is needed and the whole file can be
    rewritten atomically. Passcodes only ever exist here as hashes.

ACL file
    Device rules are ``pattern`` lines with ``%u`` (username = DID), so they cover every device without a line per
    device: a device may publish only to ``dev2app/<own did>[/…]`` and ``cli2ser_req`` and read only
    ``app2dev/<own did>/#``, ``app2module/<own did>/#`` and ``ser2cli_res/<own did>`` (cloud protocol §1.5).
    ``ser2cli_noti/<product_key>`` cannot be expressed with ``%u``, so each device also gets a ``user`` block
    granting read on its product's topic and write on ``cli2ser_req`` (a shared topic without ``%u`` is not a
    pattern: mosquitto warns about such patterns). The service user (the cloud) gets its own ``user`` block.
    Mosquitto keeps ``user`` blocks in a list, so a reload costs more with more devices: measured with 2.0.11,
    ~3 ms per change with 20 devices, ~18 ms with 1 000, ~0.7 s with 10 000 (patterns alone: 57 ms).
    Mosquitto refuses ``%u`` substitution for usernames containing ``+``, ``#`` or ``/``; :func:`check_name`
    refuses those (and anything else that could break a line) before a name reaches a file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gizdev.errors import BrokerError

__all__ = [
    "PBKDF2_ITERATIONS",
    "SERVICE_READ_TOPICS",
    "SERVICE_USERNAME",
    "SERVICE_WRITE_TOPICS",
    "FileOwner",
    "check_name",
    "hash_password",
    "load_or_create_service_password",
    "render_acl",
    "render_config",
    "render_password_file",
    "verify_password",
    "write_file_atomic",
]

PBKDF2_ITERATIONS = 101  # mosquitto 2.x mosquitto_passwd default (PW_DEFAULT_ITERATIONS)
_SALT_BYTES = 12  # mosquitto 2.x (SALT_LEN)
_HASH_BYTES = 64  # SHA-512 output
SERVICE_USERNAME = "gizdev-cloud"

# What the cloud needs (cloud protocol §1.5): it consumes device frames and service requests and publishes
# commands, service replies and product notifications. $SYS is for monitoring.
SERVICE_READ_TOPICS = ("dev2app/#", "cli2ser_req", "$SYS/#")
SERVICE_WRITE_TOPICS = ("app2dev/#", "app2module/#", "ser2cli_res/#", "ser2cli_noti/#")

DEVICE_PATTERNS = (
    ("write", "dev2app/%u"),
    ("write", "dev2app/%u/#"),
    ("read", "app2dev/%u/#"),
    ("read", "app2module/%u/#"),  # subscribed by LUAT firmware (cloud protocol §1.5)
    ("read", "ser2cli_res/%u"),
)

# DIDs are 22 alphanumerics and product keys 32 hex digits; allow a little more, but nothing that is an MQTT
# wildcard or level separator, a password-file separator (":") or whitespace that would split a config line.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is safe as a username / topic level in mosquitto's files, else raise ValueError."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"{kind} {value!r} must be 1-64 of A-Z a-z 0-9 _ . - (starting alphanumeric)")
    return value


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto's ``$7$`` PBKDF2-SHA512 hash of ``password`` (the part after ``username:`` in a password file)."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _HASH_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash as mosquitto (and ``mosquitto_passwd``) writes it."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(key, expected)


def render_password_file(hashes: Mapping[str, str]) -> str:
    """Password file text from ``{username: hash}`` (usernames sorted, so the file is stable)."""
    return "".join(f"{user}:{hashes[user]}\n" for user in sorted(hashes))


def render_acl(product_keys: Mapping[str, str], *, service_username: str = SERVICE_USERNAME) -> str:
    """ACL file text for ``{did: product_key}`` plus the service user (see the module docstring)."""
    lines = [
        "# Generated by gizdev; rewritten whenever a device is added or removed. Do not edit.",
        "# Devices (username = client id = DID) may use only their own topics (cloud protocol 1.5).",
        *(f"pattern {access} {topic}" for access, topic in DEVICE_PATTERNS),
        "",
        "# The cloud.",
        f"user {service_username}",
        *(f"topic read {topic}" for topic in SERVICE_READ_TOPICS),
        *(f"topic write {topic}" for topic in SERVICE_WRITE_TOPICS),
        "",
        "# Per device: service requests, and its own product's notifications.",
    ]
    for did in sorted(product_keys):
        lines += [f"user {did}", "topic write cli2ser_req", f"topic read ser2cli_noti/{product_keys[did]}"]
    return "\n".join(lines) + "\n"


def render_config(
    *,
    host: str,
    port: int,
    password_file: Path,
    acl_file: Path,
    user: str | None,
    pin_client_ids: bool,
) -> str:
    """mosquitto.conf text: one listener, no anonymous access, our password and ACL files, no persistence."""
    for path in (password_file, acl_file):
        if any(ch in str(path) for ch in "\r\n") or str(path) != str(path).strip():
            raise ValueError(f"mosquitto cannot read a path with line breaks or edge spaces: {str(path)!r}")
    lines = [
        "# Generated by gizdev on every start; edits are lost.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp false",
        "connection_messages true",
    ]
    if user is not None:
        lines.append(f"user {user}")
    lines += [
        f"listener {port} {host}",
        "set_tcp_nodelay true",
    ]
    if pin_client_ids:
        # A device could otherwise connect with another device's DID as client id and take its session over.
        lines.append("use_username_as_clientid true")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class FileOwner:
    """Who must be able to read the broker's files: ``uid``/``gid``, or None to leave them as created."""

    uid: int | None = None
    gid: int | None = None


def write_file_atomic(path: Path, text: str, *, mode: int = 0o600, owner: FileOwner | None = None) -> None:
    """Replace ``path`` by ``text`` in one rename, with ``mode`` and ``owner`` set before the rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have cut bits of ``mode``
        if owner is not None and (owner.uid is not None or owner.gid is not None):
            os.fchown(fd, -1 if owner.uid is None else owner.uid, -1 if owner.gid is None else owner.gid)
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as file:
            file.write(text)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create_service_password(path: Path, username: str = SERVICE_USERNAME) -> str:
    """The service user's password kept in ``path`` (JSON, mode 0600); a random one is created on first use."""
    password = secrets.token_urlsafe(24)
    text = json.dumps({"username": username, "password": password}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        return password
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        stored_password = stored["password"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BrokerError(f"{path}: unreadable service credentials ({type(exc).__name__}); delete it") from exc
    if not isinstance(stored_password, str) or not stored_password:
        raise BrokerError(f"{path}: service password must be a non-empty string; delete the file")
    if stored.get("username") != username:
        raise BrokerError(f"{path}: credentials are for user {stored.get('username')!r}, not {username!r}")
    return stored_password


def group_ids(user: str, gid: int) -> set[int]:
    """The groups a user has after ``initgroups`` (what mosquitto does when it drops privileges)."""
    try:
        return set(os.getgrouplist(user, gid))
    except OSError:
        return {gid}


def unreachable_ancestor(path: Path, *, uid: int, gids: Iterable[int]) -> Path | None:
    """The first ancestor of ``path`` that ``uid`` cannot search (POSIX mode bits only), or None."""
    groups = set(gids)
    for directory in reversed(path.resolve().parents):
        st = directory.stat()
        if uid == 0:
            continue
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid in groups:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return directory
    return None
