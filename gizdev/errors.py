"""The gizdev exception tree.

One root, :class:`GizdevError`; branches are named for what the caller should do about them. Exceptions carry
their data as attributes and build ``str()`` from it; bytes always appear as hex, datapoints and JSON fields by
their path. Third-party exceptions are wrapped where they cross into gizdev (``raise ... from exc``).
"""

from __future__ import annotations

__all__ = [
    "AckTimeout",
    "AddressInUse",
    "BrokerError",
    "ChecksumError",
    "CloudError",
    "CodecError",
    "ConfigError",
    "FrameError",
    "GizdevError",
    "HandshakeError",
    "LinkClosed",
    "LinkError",
    "PayloadError",
    "SchemaError",
    "SchemaFileError",
    "StorageError",
    "TransportError",
]


class GizdevError(Exception):
    """Root of every error gizdev raises on purpose."""


class ConfigError(GizdevError):
    """A setting, option or file given by the user cannot be used."""


class AddressInUse(ConfigError):
    """A listener cannot bind ``host:port``: another process has it; ``service`` names the listener ("HTTP")."""

    def __init__(self, host: str, port: int, service: str) -> None:
        self.host = host
        self.port = port
        self.service = service
        super().__init__(host, port, service)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.address} ({self.service}) is in use by another process"


class SchemaError(GizdevError):
    """A product datapoint schema is invalid; ``pointer`` is the JSON pointer of the offending field."""

    def __init__(self, pointer: str, reason: str, *, source: str | None = None) -> None:
        self.pointer = pointer
        self.reason = reason
        self.source = source
        super().__init__(pointer, reason)

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.pointer or '/'}: {self.reason}"


class SchemaFileError(SchemaError):
    """A schema file cannot be read at all (missing, a directory, no permission): no field to point at."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__("", reason, source=source)

    def __str__(self) -> str:
        return f"cannot read schema file {self.source}: {self.reason}"


class CodecError(GizdevError):
    """Bytes or values could not be encoded or decoded."""

    def __init__(self, reason: str, *, data: bytes = b"", path: str = "") -> None:
        self.reason = reason
        self.data = bytes(data)
        self.path = path
        super().__init__(reason)

    def __str__(self) -> str:
        text = f"{self.path}: {self.reason}" if self.path else self.reason
        if self.data:
            text += f" [{self.data.hex()}]"
        return text


class FrameError(CodecError):
    """A serial frame is malformed (bad length, bad stuffing, truncated, garbage between frames).

    ``offset`` counts bytes of the stream fed to a deframer (or of the buffer given to a parser) at which the
    offending bytes start.
    """

    def __init__(self, reason: str, *, data: bytes = b"", offset: int = 0) -> None:
        self.offset = offset
        super().__init__(reason, data=data)

    def __str__(self) -> str:
        return f"{super().__str__()} at offset {self.offset}"


class ChecksumError(FrameError):
    """A frame arrived whole but its checksum does not match."""

    def __init__(self, *, expected: int, actual: int, data: bytes = b"", offset: int = 0) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"checksum 0x{actual:02x}, expected 0x{expected:02x}", data=data, offset=offset)


class PayloadError(CodecError):
    """A payload or a value does not fit the layout: ``path`` names the field (e.g. ``attrs/LED_R``)."""


class LinkError(GizdevError):
    """The serial link failed to deliver or receive a frame."""


class AckTimeout(LinkError, TimeoutError):
    """No acknowledgement arrived after every resend."""

    def __init__(self, cmd: int, sn: int, attempts: int, timeout_s: float) -> None:
        self.cmd = cmd
        self.sn = sn
        self.attempts = attempts
        self.timeout_s = timeout_s
        super().__init__(cmd, sn, attempts)

    def __str__(self) -> str:
        return (
            f"no acknowledgement of cmd 0x{self.cmd:02x} sn {self.sn} after {self.attempts} transmission(s), "
            f"{self.timeout_s * 1000:.0f} ms apart"
        )


class LinkClosed(LinkError):
    """The link closed (cable pulled, port closed) while a request was pending or being sent."""


class HandshakeError(LinkError):
    """The peer answered the handshake with something we cannot work with (e.g. another product's key)."""


class TransportError(GizdevError):
    """A port, socket or pseudo-terminal could not be opened, read or written."""


class CloudError(GizdevError):
    """An error of the local cloud, mapped to a Gizwits error code at the HTTP boundary."""


class StorageError(CloudError):
    """The cloud's database refused or failed an operation; subclasses in ``gizdev.cloud.storage`` say which."""


class BrokerError(CloudError):
    """The MQTT broker could not be started, reloaded or reached; ``stderr`` holds the broker's last output."""

    def __init__(self, reason: str, *, stderr: str = "", returncode: int | None = None) -> None:
        self.reason = reason
        self.stderr = stderr
        self.returncode = returncode
        super().__init__(reason)

    def __str__(self) -> str:
        text = self.reason
        if self.returncode is not None:
            text += f" (exit code {self.returncode})"
        if self.stderr:
            text += "; broker output:\n" + self.stderr
        return text
