"""The LAN server of the bridge: what GAgent offers apps on the local network (cloud protocol §2).

Design note
-----------
::

    app ──UDP 12414── 0x0003 discover ──────────► 0x0004 (unicast back: did, mac, fw, pk, mcu attrs, tail)
    bridge ──UDP──► broadcast_address:broadcast_port  0x0005 start-up announcement, `broadcast_rounds` × 1 s
    app ──TCP 12416── 0x0006 passcode ──────────► 0x0007 (binding window open) | 0x0007 len 0 + close
                      0x0008 login ─────────────► 0x0009 00 | 0x0009 01 + close
                      0x0013 module info ───────► 0x0014
                      0x0015 heartbeat ─────────► 0x0016                    (after login)
                      0x0090 P0 ──► MCU ──reply─► 0x0091 to every logged-in client (nothing for a bare ACK)
                      0x0093 sn P0 ► MCU ──reply► 0x0094 sn [P0] to the requester only
    MCU report ─────► push_report(p0) ──────────► 0x0091 to every logged-in client

Rules taken from GAgent 04020006 (GA-lan ``lantcp.c``), and where we differ:

* Only 0x0006, 0x0008, 0x0013, 0x000C and 0x0017 are served before login; any other command (heartbeat, control,
  unknown) from a client that has not logged in closes its socket (``Lan_checkAuthorization``).
* Login: GAgent compares the configured passcode with the bytes at offset 10 of the packet, i.e. right after the
  u16 length field when the envelope length takes one byte (every real login does), and ignores the u16 itself.
  We compare the bytes right after the u16 field wherever the envelope put them, over the configured passcode's
  length (so the result equals GAgent's for every real login), in constant time.
* Binding window closed: GAgent sends ``00 00 00 03 0f 00 00 07 00 00`` — a length byte still claiming 15 bytes —
  then closes. We send the well-formed envelope with an empty passcode (``... 05 00 00 07 00 00``) and close.
* At most ``max_clients`` (8) connections: the next one is accepted and closed at once, as GAgent does.
* Idle timeout: GAgent drops a client 14 s after its last read. We count from the last *complete envelope*, so a
  client trickling a partial frame (slowloris) cannot hold one of the eight slots.
* Malformed input (bad envelope, impossible length, garbage) before login closes the socket (GAgent would read a
  command out of the garbage, which is not one of the five allowed, and close); after login it is logged and
  skipped. The lone ``00`` apps send after each heartbeat (gagent-wire-observations §4) is expected, logged at
  DEBUG. Buffers are capped: one envelope of ``max_frame_len`` per client, ``max_write_buffer`` unsent bytes (a
  client that stops reading is disconnected rather than letting reports pile up).
* Controls run one at a time per client, in order, in a worker task, so a slow MCU never stalls the client's
  heartbeats; at most ``max_pending_controls`` wait, more are dropped with a warning. When the MCU cannot be
  reached (the device raises a :class:`~gizdev.errors.GizdevError` or exceeds ``control_timeout_s``) the client
  gets no reply, as with GAgent, whose protocol has no error answer; the connection stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from dataclasses import dataclass
from typing import Protocol, cast

from gizdev.codec.envelope import PROTOCOL_VERSION, Envelope, EnvelopeDeframer, decode_envelope, encode_envelope
from gizdev.codec.lan import (
    MCU_ATTR_LEN,
    DiscoveryInfo,
    LanCmd,
    LoginResult,
    ModuleInfoReply,
    build_discovery,
    build_module_info,
    build_passcode,
)
from gizdev.errors import CodecError, ConfigError, GizdevError, TransportError

__all__ = [
    "BROADCAST_PORT",
    "LAN_CLIENT_MAXLIVETIME_S",
    "LAN_TCP_PORT",
    "LAN_UDP_PORT",
    "MAX_CLIENTS",
    "LanDevice",
    "LanIdentity",
    "LanServer",
    "LanSettings",
    "LanStats",
]

_LOGGER = logging.getLogger(__name__)

LAN_UDP_PORT = 12414  # cloud protocol §2: discovery
LAN_TCP_PORT = 12416  # cloud protocol §2: control server
BROADCAST_PORT = 2415  # gagent-wire-observations §4: start-up broadcasts go to 255.255.255.255:2415
BROADCAST_ROUNDS = 30  # cloud protocol §2.1: SEND_UDP_DATA_TIMES
BROADCAST_INTERVAL_S = 1.0  # cloud protocol §2.1: one per GAgent_LanTick second
MAX_CLIENTS = 8  # cloud protocol §2: LAN_TCPCLIENT_MAX
LAN_CLIENT_MAXLIVETIME_S = 14.0  # cloud protocol §2.2: idle timeout in station mode
# GAgent's receive buffer is 4 KiB (GA-h); a LAN control of any real product is far smaller.
DEFAULT_MAX_FRAME_LEN = 4096
DEFAULT_MAX_WRITE_BUFFER = 256 * 1024  # unsent bytes to one client before it counts as not reading
DEFAULT_MAX_PENDING_CONTROLS = 32
# The MCU link resends within ~0.6 s (serial protocol §3); this only bounds a device implementation that hangs.
DEFAULT_CONTROL_TIMEOUT_S = 10.0
READ_CHUNK = 4096
_PRE_LOGIN = frozenset({LanCmd.PASSCODE, LanCmd.LOGIN, LanCmd.MODULE_INFO, LanCmd.HOTSPOTS, LanCmd.TEST})


@dataclass(frozen=True, slots=True)
class LanIdentity:
    """What the LAN protocol tells apps about the device (discovery, passcode, module info)."""

    did: str
    mac: bytes  # 6 raw bytes
    product_key: str
    passcode: str
    firmware_version: str = ""  # GAgent 04020006 sends an empty one (gagent-wire-observations §4)
    mcu_attributes: bytes = bytes(MCU_ATTR_LEN)
    wifi_hardware_version: str = ""
    wifi_software_version: str = ""
    mcu_hardware_version: str = ""
    mcu_software_version: str = ""
    p0_version: str = ""
    api_server: str = ""  # with gagent_version: the NUL-terminated discovery tail (empty: no tail)
    gagent_version: str = ""


class LanDevice(Protocol):
    """The bridge as the LAN server sees it (implemented over a ModuleSession by ModuleSessionLanDevice)."""

    def lan_identity(self) -> LanIdentity:
        """The current identity; asked for every packet, so a DID assigned later shows up at once."""
        ...

    def binding_open(self) -> bool:
        """Whether apps may fetch the passcode now (GAgent's WIFI_MODE_BINDING)."""
        ...

    async def control(self, p0: bytes) -> bytes | None:
        """Hand an app's P0 to the MCU; the MCU's reply P0 (read reply), or None/b'' for a bare ACK.

        Raises a GizdevError when the MCU cannot be reached or the P0 is refused.
        """
        ...


@dataclass(frozen=True, slots=True)
class LanSettings:
    """Where and how the LAN server listens; ``hosts`` has no default: the bridge config decides."""

    hosts: tuple[str, ...]
    udp_port: int = LAN_UDP_PORT
    tcp_port: int = LAN_TCP_PORT
    broadcast_address: str = "255.255.255.255"
    broadcast_port: int = BROADCAST_PORT
    broadcast_rounds: int = BROADCAST_ROUNDS
    broadcast_interval_s: float = BROADCAST_INTERVAL_S
    idle_timeout_s: float = LAN_CLIENT_MAXLIVETIME_S
    max_clients: int = MAX_CLIENTS
    max_frame_len: int = DEFAULT_MAX_FRAME_LEN
    max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER
    max_pending_controls: int = DEFAULT_MAX_PENDING_CONTROLS
    control_timeout_s: float = DEFAULT_CONTROL_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ConfigError("LAN: give at least one listen address")
        for name in ("udp_port", "tcp_port", "broadcast_port"):
            port = getattr(self, name)
            if not 0 <= port <= 0xFFFF:
                raise ConfigError(f"LAN: {name} {port} is not a port number")
        for name in ("idle_timeout_s", "control_timeout_s", "broadcast_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"LAN: {name} must be positive")
        if self.broadcast_rounds < 0:
            raise ConfigError("LAN: broadcast_rounds must be >= 0")
        if self.max_clients < 1 or self.max_pending_controls < 1 or self.max_write_buffer < 1:
            raise ConfigError("LAN: max_clients, max_pending_controls and max_write_buffer must be >= 1")
        if not 16 <= self.max_frame_len <= 1 << 20:
            raise ConfigError("LAN: max_frame_len must be within 16..1048576")


@dataclass
class LanStats:
    """Counters for logs, tests and the bench."""

    connections: int = 0
    refused: int = 0  # connections beyond max_clients
    logins: int = 0
    failed_logins: int = 0
    bad_frames: int = 0
    controls: int = 0
    control_failures: int = 0
    dropped_controls: int = 0
    discoveries: int = 0
    broadcasts: int = 0


@dataclass(eq=False)
class _Client:
    number: int
    peer: str
    writer: asyncio.StreamWriter
    last_frame: float
    controls: asyncio.Queue[Envelope]
    logged_in: bool = False
    warned_bad_input: bool = False
    warned_dropped: bool = False
    closing: bool = False

    def __str__(self) -> str:
        return f"LAN client {self.number} ({self.peer})"


class _Discovery(asyncio.DatagramProtocol):
    def __init__(self, server: LanServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport does not subclass DatagramTransport on every Python version.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.transport is not None:
            self.server._datagram(self.transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        _LOGGER.debug("LAN UDP: %s", exc)


class LanServer:
    """UDP discovery and start-up broadcasts, and the TCP control server for up to eight apps."""

    def __init__(self, device: LanDevice, settings: LanSettings) -> None:
        self.device = device
        self.settings = settings
        self.stats = LanStats()
        self._clients: set[_Client] = set()
        self._serve_tasks: set[asyncio.Task[None]] = set()
        self._tcp: asyncio.Server | None = None
        self._udp: list[asyncio.DatagramTransport] = []
        self._broadcast_task: asyncio.Task[None] | None = None
        self._numbers = 0
        self._control_failing = False

    # ---- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the UDP and TCP sockets and start the start-up broadcasts."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        try:
            self._tcp = await asyncio.start_server(
                self._serve, list(settings.hosts), settings.tcp_port, reuse_address=True
            )
            for host in settings.hosts:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Discovery(self), local_addr=(host, settings.udp_port), allow_broadcast=True
                )
                self._udp.append(transport)
        except OSError as exc:
            await self.close()
            raise TransportError(f"LAN: cannot listen on {', '.join(settings.hosts)}: {exc}") from exc
        _LOGGER.info(
            "LAN: discovery on UDP %s, control server on TCP %s",
            ", ".join(f"{h}:{p}" for h, p in self.udp_addresses),
            ", ".join(f"{h}:{p}" for h, p in self.tcp_addresses),
        )
        self.announce()

    async def close(self) -> None:
        """Stop broadcasting, close every client and both servers."""
        task, self._broadcast_task = self._broadcast_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp is not None:
            self._tcp.close()
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        for serve in list(self._serve_tasks):
            serve.cancel()
        for serve in list(self._serve_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await serve
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> LanServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def tcp_addresses(self) -> list[tuple[str, int]]:
        """The bound TCP (host, port) pairs (port 0 in the settings gives ephemeral ports)."""
        if self._tcp is None:
            return []
        return [sock.getsockname()[:2] for sock in self._tcp.sockets]

    @property
    def udp_addresses(self) -> list[tuple[str, int]]:
        """The bound UDP (host, port) pairs."""
        return [transport.get_extra_info("sockname")[:2] for transport in self._udp]

    @property
    def logged_in_clients(self) -> int:
        return sum(1 for client in self._clients if client.logged_in)

    @property
    def connected_clients(self) -> int:
        return len(self._clients)

    # ---- what the bridge calls --------------------------------------------------------------------------

    def push_report(self, p0: bytes) -> int:
        """Send an MCU report (P0, action byte first) as 0x0091 to every logged-in client; returns how many."""
        return self._to_logged_in(encode_envelope(LanCmd.TRANSMIT_REPLY, p0))

    def announce(self) -> None:
        """(Re)start the start-up broadcasts: 0x0005, broadcast_rounds times, broadcast_interval_s apart."""
        if self.settings.broadcast_rounds == 0:
            return
        if self._broadcast_task is not None and not self._broadcast_task.done():
            self._broadcast_task.cancel()
        self._broadcast_task = asyncio.get_running_loop().create_task(self._broadcast(), name="lan-broadcast")

    # ---- UDP ----------------------------------------------------------------------------------------------

    def _discovery_packet(self, cmd: LanCmd) -> bytes:
        ident = self.device.lan_identity()
        return encode_envelope(
            cmd,
            build_discovery(
                DiscoveryInfo(
                    did=ident.did,
                    mac=ident.mac,
                    firmware_version=ident.firmware_version,
                    product_key=ident.product_key,
                    mcu_attributes=ident.mcu_attributes,
                    api_server=ident.api_server,
                    gagent_version=ident.gagent_version,
                )
            ),
        )

    def _datagram(self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            envelope = decode_envelope(data)
        except CodecError as exc:
            self.stats.bad_frames += 1
            _LOGGER.debug("LAN UDP from %s: ignored: %s", addr[0], exc)
            return
        if envelope.cmd == LanCmd.DISCOVER:
            try:
                packet = self._discovery_packet(LanCmd.DISCOVER_REPLY)
            except GizdevError as exc:
                _LOGGER.error("LAN: cannot build the discovery reply: %s", exc)
                return
            self.stats.discoveries += 1
            _LOGGER.debug("LAN UDP: discovery from %s:%s", addr[0], addr[1])
            transport.sendto(packet, addr)
        elif envelope.cmd == LanCmd.ONBOARDING:
            # SoftAP onboarding configures a WiFi chip; the bridge's network is the host's business.
            _LOGGER.info("LAN UDP: onboarding request from %s ignored (the bridge has no SoftAP mode)", addr[0])
        else:
            _LOGGER.debug("LAN UDP from %s: cmd 0x%04x ignored", addr[0], envelope.cmd)

    async def _broadcast(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, family=socket.AF_INET, allow_broadcast=True
            )
        except OSError as exc:
            _LOGGER.error("LAN: no start-up broadcasts: %s", exc)
            return
        target = (settings.broadcast_address, settings.broadcast_port)
        try:
            for _ in range(settings.broadcast_rounds):
                try:
                    transport.sendto(self._discovery_packet(LanCmd.STARTUP_BROADCAST), target)
                    self.stats.broadcasts += 1
                except GizdevError as exc:
                    _LOGGER.error("LAN: cannot build the start-up broadcast: %s", exc)
                    return
                await asyncio.sleep(settings.broadcast_interval_s)
            _LOGGER.debug("LAN: %d start-up broadcasts sent to %s:%d", settings.broadcast_rounds, *target)
        finally:
            transport.close()

    # ---- TCP ----------------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serve_tasks.add(task)
        peer_info = writer.get_extra_info("peername")
        peer = f"{peer_info[0]}:{peer_info[1]}" if peer_info else "?"
        try:
            if len(self._clients) >= self.settings.max_clients:
                self.stats.refused += 1
                _LOGGER.info("LAN: %s refused, already %d clients", peer, len(self._clients))
                return
            self._numbers += 1
            self.stats.connections += 1
            client = _Client(
                self._numbers,
                peer,
                writer,
                asyncio.get_running_loop().time(),
                asyncio.Queue(self.settings.max_pending_controls),
            )
            self._clients.add(client)
            _LOGGER.info("LAN: %s connected", client)
            worker = asyncio.get_running_loop().create_task(self._controls(client), name=f"lan-controls-{peer}")
            try:
                await self._read_loop(client, reader)
            finally:
                self._clients.discard(client)
                client.closing = True
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
                _LOGGER.info("LAN: %s disconnected", client)
        except (ConnectionError, OSError) as exc:
            _LOGGER.info("LAN: %s: %s", peer, exc)
        except asyncio.CancelledError:
            # Cancelled by close(). End normally: on Python 3.11 asyncio's server calls exception() on a handler
            # task that ended cancelled and logs the CancelledError as an error (CPython gh-113538, fixed later).
            _LOGGER.debug("LAN: %s closed with the server", peer)
        finally:
            self._serve_tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_loop(self, client: _Client, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        deframer = EnvelopeDeframer(self.settings.max_frame_len)
        while not client.closing:
            remaining = client.last_frame + self.settings.idle_timeout_s - loop.time()
            if remaining <= 0:
                _LOGGER.info("LAN: %s idle for %.0f s, closing", client, self.settings.idle_timeout_s)
                return
            try:
                async with asyncio.timeout(remaining):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                continue
            if not data:
                for item in deframer.flush():
                    if isinstance(item, CodecError):
                        self._bad_input(client, item)
                return
            if not client.logged_in and not deframer.pending_bytes and not PROTOCOL_VERSION.startswith(data[:4]):
                # The deframer reports garbage only once a header follows it; before login, not starting with a
                # header is proof enough that this peer does not speak the protocol.
                self.stats.bad_frames += 1
                _LOGGER.info("LAN: %s sent %s before login, closing", client, data[:16].hex())
                return
            for item in deframer.feed(data):
                if isinstance(item, CodecError):
                    if not self._bad_input(client, item):
                        return
                    continue
                client.last_frame = loop.time()
                if not self._dispatch(client, item):
                    return
                if client.closing:
                    return

    def _bad_input(self, client: _Client, error: CodecError) -> bool:
        """Log one deframer error; whether the connection stays up."""
        self.stats.bad_frames += 1
        if not client.logged_in:
            _LOGGER.info("LAN: %s sent %s before login, closing", client, error)
            return False
        if error.data == b"\x00":
            _LOGGER.debug("LAN: %s: stray 00 byte (apps send one after each heartbeat)", client)
        elif not client.warned_bad_input:
            client.warned_bad_input = True
            _LOGGER.warning("LAN: %s: bad input skipped: %s", client, error)
        else:
            _LOGGER.debug("LAN: %s: bad input skipped: %s", client, error)
        return True

    def _dispatch(self, client: _Client, envelope: Envelope) -> bool:
        """Serve one envelope; whether the connection stays up."""
        cmd = envelope.cmd
        _LOGGER.debug("LAN: %s: cmd 0x%04x, %d bytes", client, cmd, len(envelope.payload))
        if cmd in _PRE_LOGIN:
            return self._pre_login(client, envelope)
        if not client.logged_in:
            _LOGGER.info("LAN: %s sent cmd 0x%04x before login, closing", client, cmd)
            return False
        if cmd == LanCmd.HEARTBEAT:
            self._send(client, encode_envelope(LanCmd.HEARTBEAT_REPLY))
        elif cmd in (LanCmd.TRANSMIT, LanCmd.CONTROL):
            try:
                client.controls.put_nowait(envelope)
            except asyncio.QueueFull:
                self.stats.dropped_controls += 1
                log = _LOGGER.debug if client.warned_dropped else _LOGGER.warning
                client.warned_dropped = True
                log("LAN: %s: %d controls already waiting, cmd 0x%04x dropped", client, client.controls.qsize(), cmd)
        else:
            _LOGGER.debug("LAN: %s: cmd 0x%04x ignored", client, cmd)
        return True

    def _pre_login(self, client: _Client, envelope: Envelope) -> bool:
        cmd = envelope.cmd
        ident = self.device.lan_identity()
        if cmd == LanCmd.PASSCODE:
            if self.device.binding_open():
                _LOGGER.info("LAN: %s asked for the passcode", client)
                self._send(client, encode_envelope(LanCmd.PASSCODE_REPLY, build_passcode(ident.passcode)))
                return True
            _LOGGER.info("LAN: %s asked for the passcode outside the binding window, closing", client)
            self._send(client, encode_envelope(LanCmd.PASSCODE_REPLY, build_passcode("")))
            return False
        if cmd == LanCmd.LOGIN:
            expected = ident.passcode.encode("ascii")
            offered = envelope.payload[2 : 2 + len(expected)]
            ok = bool(expected) and hmac.compare_digest(offered, expected)
            self._send(client, encode_envelope(LanCmd.LOGIN_REPLY, bytes([LoginResult.OK if ok else LoginResult.FAIL])))
            if ok:
                if not client.logged_in:
                    self.stats.logins += 1
                client.logged_in = True
                _LOGGER.info("LAN: %s logged in", client)
                return True
            self.stats.failed_logins += 1
            _LOGGER.info("LAN: %s: wrong passcode, closing", client)
            return False
        if cmd == LanCmd.MODULE_INFO:
            try:
                body = build_module_info(
                    ModuleInfoReply(
                        wifi_hardware_version=ident.wifi_hardware_version,
                        wifi_software_version=ident.wifi_software_version,
                        mcu_hardware_version=ident.mcu_hardware_version,
                        mcu_software_version=ident.mcu_software_version,
                        p0_version=ident.p0_version,
                        firmware_version=ident.firmware_version,
                        product_key=ident.product_key,
                    )
                )
            except GizdevError as exc:
                _LOGGER.error("LAN: cannot build the module info: %s", exc)
                return True
            self._send(client, encode_envelope(LanCmd.MODULE_INFO_REPLY, body))
            return True
        if cmd == LanCmd.HOTSPOTS:
            # The bridge scans no WiFi: an empty list; GAgent closes the socket after this answer.
            self._send(client, encode_envelope(LanCmd.HOTSPOTS_REPLY))
            return False
        # LanCmd.TEST: GAgent leaves its factory-test mode; the bridge has none, the answer is all there is.
        self._send(client, encode_envelope(LanCmd.TEST_REPLY))
        return True

    async def _controls(self, client: _Client) -> None:
        while True:
            envelope = await client.controls.get()
            if not envelope.payload:
                _LOGGER.debug("LAN: %s: cmd 0x%04x without P0 ignored", client, envelope.cmd)
                continue
            self.stats.controls += 1
            try:
                async with asyncio.timeout(self.settings.control_timeout_s):
                    reply = await self.device.control(envelope.payload)
            except GizdevError as exc:
                self._control_failed(client, envelope, str(exc))
                continue
            except TimeoutError:
                self._control_failed(client, envelope, f"no answer within {self.settings.control_timeout_s:g} s")
                continue
            if self._control_failing:
                self._control_failing = False
                _LOGGER.info("LAN: controls reach the MCU again")
            if envelope.cmd == LanCmd.CONTROL:
                self._send(client, encode_envelope(LanCmd.CONTROL_REPLY, reply or b"", sn=envelope.sn))
            elif reply:
                self._to_logged_in(encode_envelope(LanCmd.TRANSMIT_REPLY, reply))

    def _control_failed(self, client: _Client, envelope: Envelope, reason: str) -> None:
        self.stats.control_failures += 1
        log = _LOGGER.debug if self._control_failing else _LOGGER.warning
        self._control_failing = True
        log(
            "LAN: %s: cmd 0x%04x P0 %s not answered: %s",
            client,
            envelope.cmd,
            envelope.payload.hex(),
            reason,
        )

    def _to_logged_in(self, data: bytes) -> int:
        sent = 0
        for client in list(self._clients):
            if client.logged_in and self._send(client, data):
                sent += 1
        return sent

    def _send(self, client: _Client, data: bytes) -> bool:
        writer = client.writer
        if client.closing or writer.is_closing():
            return False
        writer.write(data)
        if writer.transport.get_write_buffer_size() > self.settings.max_write_buffer:
            _LOGGER.warning("LAN: %s does not read what we send, disconnecting", client)
            client.closing = True
            writer.transport.abort()
            return False
        return True
