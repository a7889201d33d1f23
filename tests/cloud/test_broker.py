"""The managed Mosquitto, against the real thing: logins (MQTT 3.1 and 3.1.1), topic ACLs, reloads, restarts, stop.

Every broker here is a real ``mosquitto`` on a free loopback port. Devices connect with a third-party client,
aiomqtt (MQTT 3.1.1: the broker set-up must serve any standard client), and a byte-level MQTT 3.1 client that
sends what GAgent sends (gagent-wire-observations §3); the cloud's service user with our own client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from gizdev.cloud.broker import (
    BrokerSettings,
    ManagedMosquitto,
    hash_password,
    verify_password,
)
from gizdev.errors import BrokerError, ConfigError
from gizdev.mqtt import MqttClient
from tests.cloud.broker_fixtures import (
    BrokerThread,
    RawMqtt31,
    broker_dir_fixture,  # noqa: F401
    connect_packet_v31,
    free_port,
    mosquitto_binary_fixture,  # noqa: F401
    mosquitto_broker_fixture,  # noqa: F401
    mosquitto_pids_for,
    pid_alive,
    wait_until_async,
)
from tests.guards import run

DID_A = "aaBBccDDeeFF001122334a"  # DIDs are 22 characters, passcodes 10 (gagent-wire-observations §3.1)
DID_B = "bbCCddEEffGG001122334b"
PASS_A = "PassA12345"
PASS_B = "PassB67890"
PK_1 = "0123456789abcdef0123456789abcdef"
PK_2 = "fedcba9876543210fedcba9876543210"
APP = "usr6U9jtyINX27hmwBGLV05"  # an app client id as it appears in app2dev topics (cloud protocol §1.5)

READ_0090 = bytes.fromhex("000000030400009002")  # app read (gagent-wire-observations §3.4)
REPORT_0091 = bytes.fromhex("000000030e000091040100000005000d000000")
ACK_0094 = bytes.fromhex("000000030700009400000001")
QUERY_020F = bytes.fromhex("00000003020f")  # "how many apps are online?" on cli2ser_req
ONLINE_0210 = bytes.fromhex("0000000302100001")


def device(port: int, did: str, passcode: str, *, identifier: str | None = None) -> aiomqtt.Client:
    """A device's MQTT 3.1.1 connection: client id = username = DID, password = passcode."""
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=did,
        password=passcode,
        identifier=identifier or did,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
        timeout=5,
    )


@contextlib.asynccontextmanager
async def service_client(settings: BrokerSettings) -> AsyncIterator[MqttClient]:
    """The cloud's service user, logged in with our client (a fresh client id: one connection per test)."""
    client = MqttClient(
        settings.host,
        settings.port,
        client_id=f"{settings.username}-{secrets.token_hex(4)}",
        username=settings.username,
        password=settings.password,
        timeout_s=5,
    )
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


async def next_message(client: aiomqtt.Client | MqttClient, timeout_s: float = 3.0) -> tuple[str, bytes]:
    async with asyncio.timeout(timeout_s):
        if isinstance(client, MqttClient):
            ours = await anext(aiter(client.messages()))
            return ours.topic, ours.payload
        message = await anext(client.messages)
    assert isinstance(message.payload, bytes)
    return str(message.topic), message.payload


def refused(exc: aiomqtt.MqttError) -> bool:
    """Whether a connect failed with CONNACK 4 or 5 (bad user name or password / not authorised)."""
    code = getattr(exc, "rc", None)
    value = getattr(code, "value", code)
    return value in (4, 5, 134, 135)  # paho reports MQTT 3.1.1 codes with their MQTT 5 numbers


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def reloads(caplog: pytest.LogCaptureFixture) -> int:
    return sum(record.getMessage().endswith(": Reloading config.") for record in caplog.records)


# -- logins ---------------------------------------------------------------------------------------------------


def test_device_logs_in_with_did_and_passcode_over_mqtt311(
    mosquitto_broker: BrokerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker, port = mosquitto_broker, mosquitto_broker.port

    async def scenario() -> None:
        await broker.add_device(DID_A, PASS_A, PK_1)
        async with device(port, DID_A, PASS_A) as client, service_client(broker.settings) as service:
            await client.subscribe(f"app2dev/{DID_A}/#")
            await service.publish(f"app2dev/{DID_A}/{APP}", READ_0090)
            assert await next_message(client) == (f"app2dev/{DID_A}/{APP}", READ_0090)
        for did, passcode in ((DID_A, "WrongPass0"), (DID_B, PASS_A)):
            with pytest.raises(aiomqtt.MqttError) as info:
                async with device(port, did, passcode):
                    pass
            assert refused(info.value), info.value
        wrong = dataclasses.replace(broker.settings, password="not-the-password")
        with pytest.raises(BrokerError, match=r"refused .*: (bad user name or password|not authorized)"):
            async with service_client(wrong):
                pass

    run(scenario())
    service_password = broker.settings.password
    assert service_password
    password_file = broker.broker.password_path.read_text()
    assert PASS_A not in password_file and service_password not in password_file
    for secret in (PASS_A, service_password, "not-the-password"):
        assert secret not in caplog.text
    assert f"as {DID_A} (p2, c1" in caplog.text  # mosquitto's log reached ours: the check above saw it


def test_gagent_mqtt31_session_byte_for_byte(mosquitto_broker: BrokerThread) -> None:
    broker, port = mosquitto_broker, mosquitto_broker.port
    packet = connect_packet_v31(DID_A, DID_A, PASS_A)
    did_hex, pass_hex = DID_A.encode().hex(), PASS_A.encode().hex()
    assert packet.hex() == f"104800064d514973647003c20078 0016{did_hex} 0016{did_hex} 000a{pass_hex}".replace(" ", "")

    async def scenario() -> None:
        await broker.add_device(DID_A, PASS_A, PK_1)
        async with service_client(broker.settings) as service:
            await service.subscribe("dev2app/#")
            await service.subscribe("cli2ser_req")
            raw = await RawMqtt31.open("127.0.0.1", port)
            assert await raw.connect(DID_A, DID_A, PASS_A) == bytes.fromhex("20020000")
            topics = (f"ser2cli_noti/{PK_1}", f"ser2cli_res/{DID_A}", f"app2dev/{DID_A}/#")
            for message_id, topic in enumerate(topics, start=1):
                assert await raw.subscribe(message_id, topic) == bytes([0x90, 3, 0, message_id, 0])
            to_device = (
                (f"app2dev/{DID_A}/{APP}", READ_0090),
                (f"ser2cli_res/{DID_A}", ONLINE_0210),
                (f"ser2cli_noti/{PK_1}", b"product notice"),
            )
            for topic, payload in to_device:
                await service.publish(topic, payload)
                assert await raw.read_publish() == (topic, payload)
            to_cloud = (
                (f"dev2app/{DID_A}", REPORT_0091),
                (f"dev2app/{DID_A}/{APP}", ACK_0094),
                ("cli2ser_req", QUERY_020F),
            )
            for topic, payload in to_cloud:
                await raw.publish(topic, payload)
                assert await next_message(service) == (topic, payload)
            await raw.close()

        intruder = await RawMqtt31.open("127.0.0.1", port)
        connack = await intruder.connect(DID_A, DID_A, "WrongPass0")
        assert connack[:3] == bytes.fromhex("200200") and connack[3] in (4, 5), connack.hex()
        await intruder.close()

    run(scenario())


# -- topic ACLs -----------------------------------------------------------------------------------------------


def test_device_cannot_read_or_write_another_devices_topics(mosquitto_broker: BrokerThread) -> None:
    broker, port = mosquitto_broker, mosquitto_broker.port

    async def scenario() -> None:
        await broker.add_device(DID_A, PASS_A, PK_1)
        await broker.add_device(DID_B, PASS_B, PK_2)
        async with (
            service_client(broker.settings) as service,
            device(port, DID_A, PASS_A) as a,
            device(port, DID_B, PASS_B) as b,
        ):
            await service.subscribe("dev2app/#")
            await service.subscribe("cli2ser_req")
            b_topics = [f"app2dev/{DID_B}/{APP}", f"ser2cli_res/{DID_B}", f"ser2cli_noti/{PK_2}"]
            for topic in (*b_topics[:2], f"app2dev/{DID_B}/#", f"dev2app/{DID_B}", "cli2ser_req", f"app2dev/{DID_A}/#"):
                await a.subscribe(topic)  # mosquitto grants every subscription and filters on delivery
            await a.subscribe(f"ser2cli_noti/{PK_2}")
            for topic in (f"app2dev/{DID_B}/#", f"ser2cli_res/{DID_B}", f"ser2cli_noti/{PK_2}"):
                await b.subscribe(topic)

            # B talks to the cloud, the cloud writes to B's topics, then to A's: A's first message is its own.
            await b.publish(f"dev2app/{DID_B}", REPORT_0091)
            await b.publish("cli2ser_req", QUERY_020F)
            assert await next_message(service) == (f"dev2app/{DID_B}", REPORT_0091)
            assert await next_message(service) == ("cli2ser_req", QUERY_020F)
            for topic in b_topics:
                await service.publish(topic, b"for B")
            await service.publish(f"app2dev/{DID_A}/{APP}", b"for A")
            assert await next_message(a) == (f"app2dev/{DID_A}/{APP}", b"for A")
            for topic in b_topics:
                assert await next_message(b) == (topic, b"for B")

            # A poses as B and as the cloud, then speaks as itself: only the last reaches anyone.
            forged = [f"dev2app/{DID_B}", f"dev2app/{DID_B}/{APP}", *b_topics]
            for topic in forged:
                await a.publish(topic, b"forged by A")
            await a.publish(f"dev2app/{DID_A}", REPORT_0091)
            assert await next_message(service) == (f"dev2app/{DID_A}", REPORT_0091)
            await service.publish(f"app2dev/{DID_B}/{APP}", b"after")
            assert await next_message(b) == (f"app2dev/{DID_B}/{APP}", b"after")

    run(scenario())


def test_client_id_of_another_device_does_not_take_its_session(mosquitto_broker: BrokerThread) -> None:
    broker, port = mosquitto_broker, mosquitto_broker.port

    async def scenario() -> None:
        await broker.add_device(DID_A, PASS_A, PK_1)
        await broker.add_device(DID_B, PASS_B, PK_2)
        async with service_client(broker.settings) as service, device(port, DID_A, PASS_A) as a:
            await service.subscribe("dev2app/#")
            await a.subscribe(f"app2dev/{DID_A}/#")
            async with device(port, DID_B, PASS_B, identifier=DID_A) as intruder:
                await intruder.publish(f"dev2app/{DID_B}", b"B with A's client id")
                assert await next_message(service) == (f"dev2app/{DID_B}", b"B with A's client id")
                await service.publish(f"app2dev/{DID_A}/{APP}", b"still connected")
                assert await next_message(a) == (f"app2dev/{DID_A}/{APP}", b"still connected")

    run(scenario())


# -- accounts change while clients are connected ---------------------------------------------------------------


def test_accounts_change_without_dropping_other_clients(mosquitto_broker: BrokerThread) -> None:
    broker, port = mosquitto_broker, mosquitto_broker.port

    async def ping(service: MqttClient, a: aiomqtt.Client, text: bytes) -> None:
        await service.publish(f"app2dev/{DID_A}/{APP}", text)
        assert await next_message(a) == (f"app2dev/{DID_A}/{APP}", text)
        await a.publish(f"dev2app/{DID_A}", text)
        assert await next_message(service) == (f"dev2app/{DID_A}", text)

    async def scenario() -> None:
        await broker.add_device(DID_A, PASS_A, PK_1)
        pid = broker.pid
        async with service_client(broker.settings) as service, device(port, DID_A, PASS_A) as a:
            await service.subscribe("dev2app/#")
            await a.subscribe(f"app2dev/{DID_A}/#")

            await broker.add_device(DID_B, PASS_B, PK_2)
            async with device(port, DID_B, PASS_B) as b:  # at once: add_device returns after the reload
                await b.publish(f"dev2app/{DID_B}", b"B is new")
                assert await next_message(service) == (f"dev2app/{DID_B}", b"B is new")
            await ping(service, a, b"after add")

            async with device(port, DID_B, PASS_B) as b:
                await b.subscribe(f"app2dev/{DID_B}/#")
                assert await broker.remove_device(DID_B) is True
                with pytest.raises(aiomqtt.MqttError):
                    await next_message(b)  # mosquitto drops a client whose account is gone
            with pytest.raises(aiomqtt.MqttError) as info:
                async with device(port, DID_B, PASS_B):
                    pass
            assert refused(info.value)
            assert await broker.remove_device(DID_B) is False
            await ping(service, a, b"after remove")
        assert broker.pid == pid  # reloaded, never restarted

        await broker.add_device(DID_A, "NewPass123", PK_1)  # a new passcode replaces the old one
        with pytest.raises(aiomqtt.MqttError) as info:
            async with device(port, DID_A, PASS_A):
                pass
        assert refused(info.value)
        async with device(port, DID_A, "NewPass123"):
            pass

    run(scenario())


def test_concurrent_account_changes_share_reloads(
    mosquitto_binary: str, broker_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dids = [f"cccccccccccccccccccc{i:02d}" for i in range(6)]

    async def scenario() -> None:
        async with ManagedMosquitto(broker_dir, port=free_port(), binary=mosquitto_binary) as broker:
            before = reloads(caplog)
            await asyncio.gather(*(broker.add_device(did, PASS_B, PK_2) for did in dids))
            assert reloads(caplog) - before == 2  # the first call's, and one for the five that queued behind it
            for did in dids:
                async with device(broker.port, did, PASS_B):
                    pass

    run(scenario())


def test_names_that_would_break_the_files_are_refused(tmp_path: Path) -> None:
    broker = ManagedMosquitto(tmp_path / "broker")
    for did in ("a/b", "a+b", "#", "a b", "a:b", "", "x\nuser root", "gizdev-cloud"):
        with pytest.raises(ValueError):
            run(broker.add_device(did, PASS_A, PK_1))
    with pytest.raises(ValueError):
        run(broker.add_device(DID_A, PASS_A, "pk/#"))
    with pytest.raises(ValueError):
        run(broker.add_device(DID_A, "", PK_1))
    assert broker.devices == frozenset()


# -- process management ---------------------------------------------------------------------------------------


def test_killed_broker_is_restarted_and_clients_reconnect(
    mosquitto_binary: str, broker_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> int:
        async with ManagedMosquitto(broker_dir, port=free_port(), binary=mosquitto_binary) as broker:
            await broker.add_device(DID_A, PASS_A, PK_1)
            old = broker.pid
            assert old is not None
            async with device(broker.port, DID_A, PASS_A) as a:
                await a.subscribe(f"app2dev/{DID_A}/#")
                os.kill(old, signal.SIGKILL)
                with pytest.raises(aiomqtt.MqttError):
                    await next_message(a, timeout_s=5)
            await wait_until_async(lambda: broker.restarts == 1, 10, "the restart")
            new = broker.pid
            assert new is not None and new != old and not pid_alive(old)
            async with service_client(broker.settings) as service, device(broker.port, DID_A, PASS_A) as a:
                await service.subscribe("dev2app/#")
                await a.subscribe(f"app2dev/{DID_A}/#")
                await service.publish(f"app2dev/{DID_A}/{APP}", READ_0090)
                assert await next_message(a) == (f"app2dev/{DID_A}/{APP}", READ_0090)
                await a.publish(f"dev2app/{DID_A}", REPORT_0091)
                assert await next_message(service) == (f"dev2app/{DID_A}", REPORT_0091)
            return new

    new = run(scenario())
    assert not pid_alive(new)
    assert any("exited with code -9" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_stop_leaves_no_process_even_if_mosquitto_ignores_sigterm(
    mosquitto_binary: str, broker_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    broker = ManagedMosquitto(broker_dir, port=port, binary=mosquitto_binary, stop_timeout_s=0.3)

    async def scenario() -> tuple[int, int]:
        async with broker:
            first = broker.pid
            assert first is not None and broker.pid_path.read_text().strip() == str(first)
        await broker.start()
        second = broker.pid
        assert second is not None
        os.kill(second, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
        await broker.stop()
        return first, second

    first, second = run(scenario())
    assert not pid_alive(first) and not pid_alive(second)
    assert not broker.pid_path.exists() and broker.pid is None
    assert mosquitto_pids_for(broker.config_path) == []
    assert "still running 0.3 s after SIGTERM" in caplog.text
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # nobody listens any more


def test_cancelled_owner_leaves_no_process(mosquitto_binary: str, broker_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "never-ready-mosquitto"
    fake.write_text("#!/bin/sh\necho 'pretending to be mosquitto' >&2\nexec sleep 60\n")
    fake.chmod(0o755)

    async def owner(started: asyncio.Event, pids: list[int]) -> None:
        async with ManagedMosquitto(broker_dir, port=free_port(), binary=mosquitto_binary) as broker:
            assert broker.pid is not None
            pids.append(broker.pid)
            started.set()
            await asyncio.Event().wait()

    async def scenario() -> None:
        started, pids = asyncio.Event(), list[int]()
        task = asyncio.create_task(owner(started, pids))
        await started.wait()
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled() and not pid_alive(pids[0])

        # Cancelled while waiting for mosquitto to come up.
        starting = ManagedMosquitto(tmp_path / "starting", port=free_port(), binary=fake, start_timeout_s=30)
        task = asyncio.create_task(starting.start())
        await wait_until_async(lambda: starting.pid is not None, 5, "the spawn")
        pid = starting.pid
        assert pid is not None
        task.cancel()
        await asyncio.wait({task})
        assert task.cancelled() and not pid_alive(pid)

        # Never ready: a clear error, and nothing left.
        never = ManagedMosquitto(tmp_path / "never", port=free_port(), binary=fake, start_timeout_s=0.5)
        with pytest.raises(BrokerError, match="did not start serving") as info:
            await never.start()
        assert "pretending to be mosquitto" in info.value.stderr
        assert never.pid is None and not never.running

    run(scenario())


def test_start_fails_clearly_when_the_port_is_taken(mosquitto_binary: str, broker_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        broker = ManagedMosquitto(broker_dir, port=sock.getsockname()[1], binary=mosquitto_binary)
        with pytest.raises(BrokerError) as info:
            run(broker.start())
    error = info.value
    assert "Address already in use" in error.stderr and "Address already in use" in str(error)
    assert error.returncode not in (None, 0)
    assert f"127.0.0.1:{broker.port}" in str(error)
    assert broker.pid is None and not broker.running
    assert mosquitto_pids_for(broker.config_path) == []


def test_mosquitto_orphaned_by_a_killed_server_is_replaced(
    mosquitto_binary: str, broker_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    script = (
        "import asyncio, os, sys\n"
        "from gizdev.cloud.broker import ManagedMosquitto\n"
        "async def main():\n"
        "    broker = ManagedMosquitto(sys.argv[1], port=int(sys.argv[2]), binary=sys.argv[3])\n"
        "    await broker.start()\n"
        "    print(broker.pid, flush=True)\n"
        "    os._exit(0)  # like SIGKILL: no clean-up\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(broker_dir), str(port), mosquitto_binary],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    orphan = int(result.stdout)
    try:
        assert pid_alive(orphan)

        async def scenario() -> None:
            async with ManagedMosquitto(broker_dir, port=port, binary=mosquitto_binary) as broker:
                assert broker.pid != orphan and not pid_alive(orphan)

        run(scenario())
    finally:
        if pid_alive(orphan):
            os.kill(orphan, signal.SIGKILL)
    assert f"stopping mosquitto (pid {orphan}) left running" in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege handling applies when run as root")
def test_root_drops_to_the_mosquitto_user_when_it_can_read_the_files(
    mosquitto_binary: str, broker_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        account = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)

    async def scenario() -> None:
        async with ManagedMosquitto(broker_dir, port=free_port(), binary=mosquitto_binary) as broker:
            assert broker.pid is not None and broker.user == "mosquitto"
            assert uid_of(broker.pid) == account.pw_uid
            for path in (broker.config_path, broker.password_path, broker.acl_path):
                assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (account.pw_uid, 0o600)
            credentials = broker.credentials_path.stat()
            assert (credentials.st_uid, credentials.st_mode & 0o777) == (0, 0o600)
            await broker.add_device(DID_A, PASS_A, PK_1)  # re-read on SIGHUP as the mosquitto user
            async with device(broker.port, DID_A, PASS_A):
                pass

        # The mosquitto user cannot search tmp_path/private: run as root, say so, and still work.
        async with ManagedMosquitto(private / "broker", port=free_port(), binary=mosquitto_binary) as broker:
            assert broker.pid is not None and broker.user == "root" and uid_of(broker.pid) == 0
            await broker.add_device(DID_A, PASS_A, PK_1)
            async with device(broker.port, DID_A, PASS_A):
                pass
        explicit = ManagedMosquitto(private / "explicit", port=free_port(), binary=mosquitto_binary, run_as="mosquitto")
        with pytest.raises(BrokerError, match="cannot reach"):
            await explicit.start()

    run(scenario())
    assert "running mosquitto as root: user mosquitto cannot reach" in caplog.text


# -- files and settings ---------------------------------------------------------------------------------------


def test_password_hashes_are_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(path), DID_A, PASS_A], check=True, capture_output=True)
    user, theirs = path.read_text().strip().split(":", 1)
    assert user == DID_A and theirs.startswith("$7$101$")
    assert verify_password(PASS_A, theirs) and not verify_password("WrongPass0", theirs)
    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password(PASS_A, salt=salt) == theirs  # same salt, same line: the formats are identical
    ours = hash_password(PASS_A)
    assert ours != theirs and verify_password(PASS_A, ours)


def test_service_credentials_are_random_per_data_dir_and_private(tmp_path: Path) -> None:
    first = ManagedMosquitto(tmp_path / "one", port=1884).settings
    again = ManagedMosquitto(tmp_path / "one", port=1884).settings
    other = ManagedMosquitto(tmp_path / "two", port=1884).settings
    assert first.password == again.password != other.password
    assert first.password is not None and len(first.password) >= 24
    assert (first.host, first.port, first.username) == ("127.0.0.1", 1884, "gizdev-cloud")
    assert (tmp_path / "one" / "service-credentials.json").stat().st_mode & 0o777 == 0o600
    assert first.password not in repr(first) and first.password not in str(first)
    assert ManagedMosquitto(tmp_path / "lan", host="0.0.0.0").settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://cloud:s3cret@broker.example:1884", BrokerSettings("broker.example", 1884, "cloud", "s3cret")),
        ("mqtt://127.0.0.1", BrokerSettings("127.0.0.1", 1883)),
        ("mqtts://cloud@broker.example", BrokerSettings("broker.example", 8883, "cloud", tls=True)),
        ("MQTT://u%3Ax:p%40ss%2Fw@[::1]:1883/", BrokerSettings("::1", 1883, "u:x", "p@ss/w")),
    ],
)
def test_broker_url_is_parsed(url: str, expected: BrokerSettings) -> None:
    settings = BrokerSettings.from_url(url)
    assert settings == expected
    assert BrokerSettings.from_url(settings.url(show_password=True)) == settings
    if settings.password:
        assert settings.password not in settings.url() and settings.password not in repr(settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://cloud:s3cret@broker.example",
        "mqtt://",
        "mqtt://cloud:s3cret@broker.example:99999",
        "mqtt://cloud:s3cret@broker.example/topic",
        "mqtt://broker.example?x=1",
        "mqtt://:s3cret@broker.example",
    ],
)
def test_bad_broker_url_is_a_config_error_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerSettings.from_url(url)
    assert "s3cret" not in str(info.value)
