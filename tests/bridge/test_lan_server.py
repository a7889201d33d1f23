"""The LAN server on real loopback sockets, with a recording device: protocol rules, limits and hostile input."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gizdev.bridge.lan import LanIdentity, LanServer, LanSettings
from gizdev.errors import ConfigError, LinkClosed
from tests.bridge.lanclient import (
    DISCOVER,
    HEARTBEAT,
    HEARTBEAT_REPLY,
    LOGIN_FAIL,
    LOGIN_OK,
    PASSCODE_REQUEST,
    RawClient,
    UdpPeer,
    login_request,
)
from tests.link.helpers import run

PASSCODE = "HKIPANQEYX"
DID = "RefPeerDid0123456789ab"
PK = "0123456789abcdef0123456789abcdef"
IDENTITY = LanIdentity(
    did=DID,
    mac=bytes.fromhex("aabbccddeeff"),
    product_key=PK,
    passcode=PASSCODE,
    mcu_attributes=bytes.fromhex("0000000000000002"),
    wifi_hardware_version="GIZDEV01",
    wifi_software_version="04020006",
    mcu_hardware_version="03010100",
    mcu_software_version="03030000",
    p0_version="00000002",
)
READ_REPLY_P0 = bytes.fromhex("0301000000050000000000")  # any bytes: the server relays, it does not decode


@dataclass
class RecordingDevice:
    """A LanDevice that records the P0 it is handed and answers from a script."""

    identity: LanIdentity = IDENTITY
    binding: bool = True
    received: list[bytes] = field(default_factory=list)
    fail: Exception | None = None
    hang: bool = False

    def lan_identity(self) -> LanIdentity:
        return self.identity

    def binding_open(self) -> bool:
        return self.binding

    async def control(self, p0: bytes) -> bytes | None:
        self.received.append(p0)
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        return READ_REPLY_P0 if p0[:1] == b"\x02" else None


@contextlib.asynccontextmanager
async def serving(device: RecordingDevice, **settings: Any) -> AsyncIterator[LanServer]:
    settings.setdefault("broadcast_rounds", 0)
    server = LanServer(device, LanSettings(hosts=("127.0.0.1",), udp_port=0, tcp_port=0, **settings))
    async with server:
        yield server


def tcp_port(server: LanServer) -> int:
    return server.tcp_addresses[0][1]


def udp_port(server: LanServer) -> int:
    return server.udp_addresses[0][1]


def envelope(cmd: int, payload: bytes = b"", sn: int | None = None) -> bytes:
    """Built by hand (one-byte length) so that the tests do not depend on the encoder under test."""
    body = b"\x00" + cmd.to_bytes(2, "big") + (sn.to_bytes(4, "big") if sn is not None else b"") + payload
    assert len(body) < 128
    return bytes.fromhex("00000003") + bytes([len(body)]) + body


async def logged_in(server: LanServer) -> RawClient:
    client = await RawClient.connect(tcp_port(server))
    await client.login(PASSCODE)
    return client


# ---- UDP ---------------------------------------------------------------------------------------------------

OBSERVED_REPLY = (
    bytes.fromhex("000000034f000004") + bytes.fromhex("0016") + DID.encode() + bytes.fromhex("0006aabbccddeeff")
    + bytes.fromhex("00000020") + PK.encode() + bytes.fromhex("0000000000000002")
)  # fmt: skip


def test_discovery_reply_is_the_observed_packet() -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            app = await UdpPeer.open()
            try:
                app.send(DISCOVER, udp_port(server))
                assert (await app.recv()).hex() == OBSERVED_REPLY.hex()
            finally:
                app.close()

    run(main())


def test_discovery_reply_with_the_tail() -> None:
    async def main() -> None:
        device = RecordingDevice(
            LanIdentity(**{**vars_of(IDENTITY), "api_server": "api.gizwits.com:80", "gagent_version": "4.0.8"})
        )
        async with serving(device) as server:
            app = await UdpPeer.open()
            try:
                app.send(DISCOVER, udp_port(server))
                tail = b"api.gizwits.com:80\x004.0.8\x00"
                expected = bytes.fromhex("00000003") + bytes([0x4F + len(tail)]) + OBSERVED_REPLY[5:] + tail
                assert (await app.recv()).hex() == expected.hex()
            finally:
                app.close()

    run(main())


def vars_of(identity: LanIdentity) -> dict[str, Any]:
    return {name: getattr(identity, name) for name in identity.__slots__}


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00",
        bytes.fromhex("00000003"),  # no length
        bytes.fromhex("0000000303000003ff"),  # trailing byte (GAgent: packet length must match)
        bytes.fromhex("0000000303"),  # truncated
        bytes.fromhex("00000003ffffffff"),  # length field longer than 4 bytes
        bytes.fromhex("0000000303000001"),  # onboarding: the bridge has no SoftAP
        bytes.fromhex("0000000303000004"),  # a reply, not a request
        bytes.fromhex("0000000403000003"),  # wrong protocol version
        bytes(range(256)) * 200,  # 51 KiB of garbage
    ],
)
def test_bad_datagrams_get_no_answer_and_do_not_hurt(datagram: bytes) -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            app = await UdpPeer.open()
            try:
                app.send(datagram, udp_port(server))
                app.send(DISCOVER, udp_port(server))
                # UDP on loopback keeps order: the first answer must be the one to the good request.
                assert await app.recv() == OBSERVED_REPLY
                with pytest.raises(TimeoutError):
                    await app.recv(timeout=0.2)
            finally:
                app.close()

    run(main())


def test_startup_broadcasts() -> None:
    async def main() -> None:
        listener = await UdpPeer.open()
        try:
            device = RecordingDevice()
            settings = {"broadcast_address": "127.0.0.1", "broadcast_port": listener.port}
            async with serving(device, broadcast_rounds=5, broadcast_interval_s=0.02, **settings) as server:
                expected = bytes.fromhex("00000003") + bytes([0x4F]) + b"\x00\x00\x05" + OBSERVED_REPLY[8:]
                for _ in range(5):
                    assert (await listener.recv()).hex() == expected.hex()
                with pytest.raises(TimeoutError):
                    await listener.recv(timeout=0.3)
                assert server.stats.broadcasts == 5
                # The bridge can announce again (e.g. after the DID changed): the new identity goes out.
                device.identity = LanIdentity(**{**vars_of(IDENTITY), "did": ""})
                server.announce()
                again = await listener.recv()
                assert again[4] == 0x39  # §4: "before a DID exists, did len is 0 and varlen is 0x39"
                assert again[8:10] == b"\x00\x00"
        finally:
            listener.close()

    run(main())


# ---- passcode and login ------------------------------------------------------------------------------------


def test_passcode_then_login_on_one_connection() -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            client = await RawClient.connect(tcp_port(server))
            client.send(PASSCODE_REQUEST)
            await client.expect(bytes.fromhex("000000030f000007000a") + PASSCODE.encode())
            client.send(bytes.fromhex("000000030f000008000a") + PASSCODE.encode())
            await client.expect(LOGIN_OK)
            await client.still_served()
            assert server.logged_in_clients == 1
            await client.close()

    run(main())


def test_passcode_refused_outside_the_binding_window() -> None:
    async def main() -> None:
        async with serving(RecordingDevice(binding=False)) as server:
            client = await RawClient.connect(tcp_port(server))
            client.send(PASSCODE_REQUEST)
            # cmd 0x0007 with a zero passcode length, then the device hangs up (§2.2)
            assert (await client.hung_up()).hex() == "00000003050000070000"
            await client.close()
            # Login with a known passcode still works while the window is closed (GAgent does not check it).
            await (await logged_in(server)).close()

    run(main())


@pytest.mark.parametrize(
    "request_bytes",
    [
        login_request("WRONGWRONG"),
        login_request(PASSCODE[:-1]),  # a prefix of the right one
        login_request(""),
        envelope(0x0008),  # no body
        envelope(0x0008, b"\x00"),
        login_request(PASSCODE.lower()),
    ],
)
def test_wrong_login_answers_1_and_closes(request_bytes: bytes) -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            client = await RawClient.connect(tcp_port(server))
            client.send(request_bytes)
            assert (await client.hung_up()).hex() == LOGIN_FAIL.hex()
            await client.close()
            assert server.stats.failed_logins == 1
            assert server.logged_in_clients == 0

    run(main())


def test_login_passcode_found_after_a_two_byte_length() -> None:
    # GAgent reads the passcode at byte 10, which is right only for a one-byte envelope length; we read it after
    # the u16 field wherever that is, and, like GAgent, ignore bytes after the passcode's length.
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            client = await RawClient.connect(tcp_port(server))
            body = b"\x00\x0a" + PASSCODE.encode() + bytes(200)
            length = 3 + len(body)
            client.send(bytes.fromhex("00000003") + bytes([length & 0x7F | 0x80, length >> 7]) + b"\x00\x00\x08" + body)
            await client.expect(LOGIN_OK)
            await client.still_served()
            await client.close()

    run(main())


@pytest.mark.parametrize(
    "request_bytes",
    [
        HEARTBEAT,
        envelope(0x0090, b"\x02"),
        envelope(0x0093, b"\x02", sn=1),
        envelope(0x0042),  # unknown
        envelope(0x0016),
        b"GET / HTTP/1.1\r\n\r\n",  # garbage
        bytes.fromhex("00000003ffffffffff"),  # length field too long
    ],
)
def test_anything_but_the_open_commands_before_login_closes(request_bytes: bytes) -> None:
    async def main() -> None:
        device = RecordingDevice()
        async with serving(device) as server:
            client = await RawClient.connect(tcp_port(server))
            client.send(request_bytes)
            assert await client.hung_up() == b""
            await client.close()
            assert device.received == []

    run(main())


def test_module_info_and_test_before_login() -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            client = await RawClient.connect(tcp_port(server))
            client.send(envelope(0x0013))
            body = (
                b"GIZDEV01" + b"04020006" + b"03010100" + b"03030000" + b"00000002" + bytes(8)
                + b"\x00\x00" + b"\x00\x20" + PK.encode()
            )  # fmt: skip
            await client.expect(bytes.fromhex("00000003") + bytes([3 + len(body)]) + b"\x00\x00\x14" + body)
            client.send(envelope(0x0017))
            await client.expect(bytes.fromhex("0000000303000018"))
            # Hotspots: an empty list, then GAgent closes the socket.
            client.send(envelope(0x000C))
            assert (await client.hung_up()).hex() == "000000030300000d"
            await client.close()

    run(main())


# ---- after login --------------------------------------------------------------------------------------------


def test_heartbeat_with_the_stray_byte_many_times() -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            client = await logged_in(server)
            client.send(HEARTBEAT * 20)
            await client.expect(HEARTBEAT_REPLY * 20)
            # Every heartbeat in one byte-by-byte dribble works as well.
            for byte in HEARTBEAT:
                client.send(bytes([byte]))
                await client.writer.drain()
            await client.expect(HEARTBEAT_REPLY)
            await client.close()

    run(main())


def test_read_goes_to_every_logged_in_client_control_reply_only_to_its_requester() -> None:
    async def main() -> None:
        device = RecordingDevice()
        async with serving(device) as server:
            a, b = await logged_in(server), await logged_in(server)
            stranger = await RawClient.connect(tcp_port(server))  # connected, not logged in
            a.send(envelope(0x0090, b"\x02"))
            report = envelope(0x0091, READ_REPLY_P0)
            await a.expect(report)
            await b.expect(report)
            b.send(envelope(0x0093, b"\x02", sn=0xDEADBEEF))
            await b.expect(envelope(0x0094, READ_REPLY_P0, sn=0xDEADBEEF))
            # A write is acknowledged by the MCU without P0: 0x0094 carries the sn alone; 0x0090 gets nothing.
            a.send(envelope(0x0093, b"\x01\x01\x01\x00\x00\x00\x00", sn=1))
            await a.expect(bytes.fromhex("000000030700009400000001"))
            a.send(envelope(0x0090, b"\x01\x01\x00\x00\x00\x00\x00"))
            # Nothing else reached a or b: their next frames are the heartbeat replies.
            await a.still_served()
            await b.still_served()
            assert device.received == [
                b"\x02",
                b"\x02",
                b"\x01\x01\x01\x00\x00\x00\x00",
                b"\x01\x01\x00\x00\x00\x00\x00",
            ]
            # The stranger got nothing of it: its next frame answers its own request.
            stranger.send(envelope(0x0017))
            await stranger.expect(bytes.fromhex("0000000303000018"))
            for client in (a, b, stranger):
                await client.close()

    run(main())


def test_push_report_reaches_logged_in_clients_only() -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            a, b = await logged_in(server), await logged_in(server)
            stranger = await RawClient.connect(tcp_port(server))
            report = bytes.fromhex("0401000000050000000000")
            assert server.push_report(report) == 2
            for client in (a, b):
                await client.expect(bytes.fromhex("000000030e000091") + report)
            stranger.send(envelope(0x0017))
            await stranger.expect(bytes.fromhex("0000000303000018"))
            for client in (a, b, stranger):
                await client.close()

    run(main())


def test_empty_controls_and_unknown_commands_are_ignored() -> None:
    async def main() -> None:
        device = RecordingDevice()
        async with serving(device) as server:
            client = await logged_in(server)
            client.send(envelope(0x0090) + envelope(0x0093, sn=5) + envelope(0x4242, b"xyz") + envelope(0x0094, sn=1))
            await client.still_served()
            assert device.received == []
            await client.close()

    run(main())


# ---- limits -----------------------------------------------------------------------------------------------------


def test_ninth_client_is_refused() -> None:
    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            clients = [await logged_in(server) for _ in range(8)]
            ninth = await RawClient.connect(tcp_port(server))
            assert await ninth.hung_up() == b""
            await ninth.close()
            assert server.stats.refused == 1
            for client in clients:
                await client.still_served()
            # A slot that frees up can be taken again.
            await clients.pop().close()
            async with asyncio.timeout(10):
                while server.connected_clients > 7:
                    await asyncio.sleep(0.01)
            clients.append(await logged_in(server))
            for client in clients:
                await client.close()

    run(main())


def test_idle_client_is_dropped_and_heartbeats_keep_it() -> None:
    async def main() -> None:
        async with serving(RecordingDevice(), idle_timeout_s=0.6) as server:
            idle = await logged_in(server)
            busy = await logged_in(server)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for _ in range(12):  # 1.2 s of heartbeats every 0.1 s: twice the timeout
                await busy.still_served()
                await asyncio.sleep(0.1)
            assert await idle.hung_up() == b""
            assert loop.time() - start >= 0.5
            await busy.still_served()
            await idle.close()
            await busy.close()

    run(main())


def test_slowloris_partial_frame_does_not_hold_a_slot() -> None:
    async def main() -> None:
        async with serving(RecordingDevice(), idle_timeout_s=0.5) as server:
            client = await logged_in(server)
            # Bytes keep coming, but never a whole envelope: 00 00 00 03 7f then a trickle of body bytes.
            client.send(bytes.fromhex("000000037f"))
            closed = False
            for _ in range(60):
                await asyncio.sleep(0.05)
                try:
                    client.send(b"\x01")
                    await client.writer.drain()
                except (ConnectionError, OSError):
                    closed = True
                    break
                if client.reader.at_eof() or server.connected_clients == 0:
                    closed = True
                    break
            assert closed
            assert await client.hung_up() == b""
            await client.close()

    run(main())


@pytest.mark.parametrize(
    "hostile",
    [
        b"\xff" * 100,
        bytes.fromhex("00000003ffffffffff"),  # length field longer than 4 bytes
        bytes.fromhex("00000003ffffff7f"),  # 268 MB claimed
        bytes.fromhex("0000000302"),  # length below flag + cmd
        bytes.fromhex("00000003050000930000"),  # 0x0093 too short for its sn
        bytes.fromhex("00000003808001") + b"\x00" * 10,  # 16 KiB claimed, beyond max_frame_len
        bytes(range(256)) * 4096,  # 1 MiB of garbage
    ],
)
def test_hostile_input_after_login_is_skipped(hostile: bytes) -> None:
    async def main() -> None:
        device = RecordingDevice()
        async with serving(device) as server:
            victim, bystander = await logged_in(server), await logged_in(server)
            victim.send(hostile)
            await victim.writer.drain()
            victim.send(envelope(0x0093, b"\x02", sn=9))
            await victim.expect(envelope(0x0094, READ_REPLY_P0, sn=9))
            await victim.still_served()
            await bystander.still_served()
            assert server.stats.bad_frames >= 1
            for client in (victim, bystander):
                await client.close()

    run(main())


def test_client_that_stops_reading_is_dropped_not_others() -> None:
    async def main() -> None:
        async with serving(RecordingDevice(), max_write_buffer=16 * 1024) as server:
            stalled = await RawClient.connect(tcp_port(server), rcvbuf=4096)
            await stalled.login(PASSCODE)
            watcher = await RawClient.connect(tcp_port(server))  # not logged in: gets no reports
            report = b"\x04" + bytes(8000)
            pushed = 0
            while server.logged_in_clients and pushed < 20_000:
                server.push_report(report)
                pushed += 1
                await asyncio.sleep(0)
            assert server.logged_in_clients == 0
            watcher.send(envelope(0x0017))
            await watcher.expect(bytes.fromhex("0000000303000018"))
            for client in (stalled, watcher):
                await client.close()

    run(main())


# ---- the MCU side failing -------------------------------------------------------------------------------------


def test_mcu_down_gives_no_answer_and_the_connection_lives() -> None:
    async def main() -> None:
        device = RecordingDevice(fail=LinkClosed("module: no MCU link"))
        async with serving(device) as server:
            client = await logged_in(server)
            client.send(envelope(0x0093, b"\x02", sn=3))
            client.send(envelope(0x0090, b"\x02"))
            await client.still_served()
            async with asyncio.timeout(10):
                while server.stats.control_failures < 2:
                    await asyncio.sleep(0.01)
            device.fail = None
            client.send(envelope(0x0093, b"\x02", sn=4))
            await client.expect(envelope(0x0094, READ_REPLY_P0, sn=4))
            await client.close()

    run(main())


def test_hanging_device_is_cut_off_and_heartbeats_still_answered() -> None:
    async def main() -> None:
        device = RecordingDevice(hang=True)
        async with serving(device, control_timeout_s=0.3, max_pending_controls=2) as server:
            client = await logged_in(server)
            client.send(envelope(0x0093, b"\x02", sn=0))
            async with asyncio.timeout(10):
                while not device.received:  # the worker is stuck in it
                    await asyncio.sleep(0.01)
            for sn in range(1, 5):  # two wait, two are dropped
                client.send(envelope(0x0093, b"\x02", sn=sn))
            await client.still_served()  # answered while the control hangs
            async with asyncio.timeout(10):
                while server.stats.control_failures < 3:
                    await asyncio.sleep(0.01)
            assert server.stats.dropped_controls == 2
            device.hang = False
            client.send(envelope(0x0093, b"\x02", sn=77))
            await client.expect(envelope(0x0094, READ_REPLY_P0, sn=77))
            await client.close()

    run(main())


def test_settings_are_checked() -> None:
    for bad in (
        {"hosts": ()},
        {"tcp_port": 70000},
        {"idle_timeout_s": 0},
        {"max_clients": 0},
        {"max_frame_len": 2},
        {"broadcast_rounds": -1},
    ):
        with pytest.raises(ConfigError):
            LanSettings(**{"hosts": ("127.0.0.1",), **bad})  # type: ignore[arg-type]


def test_port_in_use_is_a_transport_error() -> None:
    from gizdev.errors import TransportError

    async def main() -> None:
        async with serving(RecordingDevice()) as server:
            settings = LanSettings(hosts=("127.0.0.1",), udp_port=0, tcp_port=tcp_port(server), broadcast_rounds=0)
            other = LanServer(RecordingDevice(), settings)
            with pytest.raises(TransportError, match="cannot listen"):
                await other.start()

    run(main())
