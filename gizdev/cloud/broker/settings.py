"""Where the cloud's MQTT broker is and how the cloud logs in to it: ``mqtt://user:pass@host:port`` URLs.

``--broker mqtt://…`` (or ``mqtts://…`` for TLS with the system's CA store) points the cloud at an external broker
instead of the managed Mosquitto. gizdev then manages no process and writes no password or ACL file: creating the
device accounts (username = client id = DID, password = passcode; for a device of the encrypted API, the digest in
``devices.mqtt_password_hash``, mosquitto's ``$7$`` format) and the per-device topic ACLs is the broker operator's
job. ``gizdev.cloud.broker.files`` renders the files we would use, as a template.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from gizdev.errors import ConfigError

__all__ = ["DEFAULT_PORTS", "BrokerSettings", "check_amqp_url", "service_login"]

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}  # IANA; also what Gizwits provisions (cloud protocol §1.4)


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """How to reach an MQTT broker and log in to it; ``str()`` and ``repr()`` never show the password."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("broker host is empty")
        if not 0 < self.port < 65536:
            raise ConfigError(f"broker port {self.port} is outside 1-65535")
        if self.password is not None and not self.username:
            raise ConfigError("a broker password needs a username (MQTT 3.1.1 §3.1.2.9)")

    @classmethod
    def from_url(cls, url: str) -> BrokerSettings:
        """Parse ``mqtt://[user[:password]@]host[:port]`` (or ``mqtts://``); user and password may be %-escaped."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"broker URL {_redact(url)!r}: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ConfigError(f"broker URL {_redact(url)!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ConfigError(f"broker URL {_redact(url)!r}: no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"broker URL {_redact(url)!r}: unexpected path, query or fragment")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(
            host=parts.hostname,
            port=port if port is not None else DEFAULT_PORTS[scheme],
            username=username,
            password=password,
            tls=scheme == "mqtts",
        )

    def url(self, *, show_password: bool = False) -> str:
        """The settings as a URL; the password is replaced by ``***`` unless ``show_password``."""
        auth = ""
        if self.username:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + (quote(self.password, safe="") if show_password else "***")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{host}:{self.port}"

    def __str__(self) -> str:
        return self.url()


def _redact(url: str) -> str:
    """``url`` with anything between ``:`` and ``@`` of the authority replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostport}{slash}{tail}" if ":" in userinfo else url


# -- RabbitMQ's AMQP side (gizdev.cloud.feeds.amqp) ---------------------------------------------------------------


def check_amqp_url(url: str) -> str:
    """``url`` if it is ``amqp[s]://user:password@host[:port][/vhost]``, else ConfigError (password not shown)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"AMQP URL: {exc}") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError("an AMQP URL is amqp://user:password@host:5672/ (or amqps://)")
    if not parts.username or not parts.password:
        raise ConfigError(
            f"AMQP URL amqp://…@{parts.hostname}: needs user:password, the cloud's service login (the cloud also "
            "answers for it in the broker's HTTP auth)"
        )
    return url


def service_login(url: str) -> tuple[str, str, str]:
    """(username, password, virtual host) of an AMQP URL (``amqp://u:p@host/`` and ``…/%2F`` are the vhost "/")."""
    parts = urlsplit(check_amqp_url(url))
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return unquote(parts.username or ""), unquote(parts.password or ""), vhost
