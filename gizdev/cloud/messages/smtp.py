"""Mail over SMTP (aiosmtplib): reset links and sign-up notices to a real mailbox.

TLS modes: ``none`` (plain; a relay on the same host), ``starttls`` (upgrade on the submission port 587 and refuse
to go on if the server cannot; the default), ``tls`` (implicit TLS, port 465). The server's certificate is checked
against the system's CAs, or against ``ca_file`` for a private CA.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Literal

import aiosmtplib

from gizdev.cloud.messages.message import Message, SendFailed
from gizdev.cloud.names import email_key

__all__ = ["DEFAULT_PORTS", "SmtpSender", "SmtpSettings", "TlsMode"]

TlsMode = Literal["none", "starttls", "tls"]
DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    mail_from: str
    port: int | None = None  # default: by the TLS mode (DEFAULT_PORTS)
    tls: TlsMode = "starttls"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("the SMTP host is empty")
        if self.tls not in DEFAULT_PORTS:
            raise ValueError(f"the SMTP TLS mode must be one of {', '.join(DEFAULT_PORTS)}, not {self.tls!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"the SMTP port {self.port} is not a port number")
        if (self.username is None) != (self.password is None):
            raise ValueError("give the SMTP username and password together")
        try:
            email_key(self.mail_from)
        except ValueError as exc:
            raise ValueError(f"the mail-from address {self.mail_from!r} {exc}") from None
        if self.password is not None and self.tls == "none":
            raise ValueError("an SMTP password needs TLS (starttls or tls): it would cross the network in clear")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.tls]


@dataclass(frozen=True, slots=True)
class SmtpSender:
    """Sends ``email`` messages; one SMTP session per message (mails are rare: reset links, notices)."""

    settings: SmtpSettings

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.settings.tls == "none":
            return None
        cafile = str(self.settings.ca_file) if self.settings.ca_file is not None else None
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise SendFailed(f"cannot load the SMTP CA file {cafile}: {exc}") from exc

    def _mail(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.settings.mail_from
        mail["To"] = message.to
        mail["Subject"] = message.subject or "gizdev cloud"
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = make_msgid(domain=self.settings.mail_from.rpartition("@")[2])
        mail.set_content(message.text)
        return mail

    async def send(self, message: Message) -> None:
        if message.channel != "email":
            raise SendFailed(f"the SMTP sender carries mails, not {message.channel} messages")
        settings = self.settings
        try:
            mail = self._mail(message)  # a header with a line break is refused here, not sent
        except (ValueError, TypeError) as exc:
            raise SendFailed(f"cannot write a mail to {message.to!r}: {exc}") from exc
        try:
            await aiosmtplib.send(
                mail,
                hostname=settings.host,
                port=settings.effective_port,
                username=settings.username,
                password=settings.password,
                use_tls=settings.tls == "tls",
                start_tls=settings.tls == "starttls",
                tls_context=self._tls_context(),
                timeout=settings.timeout_s,
            )
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise SendFailed(
                f"SMTP {settings.host}:{settings.effective_port} did not take the mail: {exc}"[:300]
            ) from exc
