"""The bridge through faults, with real parts: the broker killed, the cloud restarted, the MCU's pty unplugged and
replugged, the MCU silent. Each time the bridge must come back by itself within 10 s of the peer's return, keep
its DID, and leave the cloud right: online, and the latest data = the MCU's state now (changed while the bridge
could not tell the cloud, so a stale report would show)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from gizdev.bridge.uplink import cancel_and_wait
from tests.bridge.bridge_fixtures import (
    GOKIT_SCHEMA,
    GOKIT_SECRET,
    PATIENCE_S,
    CloudPlace,
    Rig,
    bridge_rig,
    eventually,
    start_cloud,
)
from tests.cloud.server_fixtures import CloudThread
from tests.link.helpers import run

CLIENT_ID = "usrFaultClient"


def envelope(cmd: int, payload: bytes = b"", sn: int | None = None) -> bytes:
    """cloud-protocol §1.6 by hand: 00 00 00 03 | len | flag 00 | cmd | [sn] | payload."""
    body = b"\x00" + cmd.to_bytes(2, "big") + (b"" if sn is None else sn.to_bytes(4, "big")) + payload
    return bytes.fromhex("00000003") + bytes([len(body)]) + body


def device_count(cloud: CloudThread) -> int:
    return len(cloud.call(cloud.storage.list_devices(include_disabled=True, limit=1000, skip=0)))


async def recovered(rig: Rig, did: str, since: float) -> None:
    """Online again within the acceptance's 10 s of ``since`` (the peer's return), with the same DID."""
    await rig.up()
    took = time.monotonic() - since
    assert took < PATIENCE_S, f"recovered after {took:.1f} s"
    assert rig.did == did
    assert device_count(rig.cloud) == 1  # never registered again


async def latest_is(rig: Rig, expected: dict[str, object]) -> None:
    def matches() -> bool:
        latest = rig.latest() or {}
        return all(latest.get(name) == value for name, value in expected.items())

    await eventually(matches, f"the cloud's latest data {expected}")


def test_broker_killed_and_restarted(cloud_place: CloudPlace, tmp_path: Path) -> None:
    cloud = start_cloud(cloud_place)
    try:

        async def scenario() -> None:
            async with bridge_rig(cloud, tmp_path / "state") as rig:
                await rig.up()
                did = rig.did
                broker = cloud.server.broker
                assert broker is not None and broker.pid is not None
                uplink = rig.cloud_uplink
                os.kill(broker.pid, signal.SIGKILL)
                await eventually(lambda: not uplink.connected, "the bridge noticing the broker's death")
                rig.mcu.set_values({"Humidity": 61, "LED_R": 99})  # this report cannot reach the cloud
                await eventually(lambda: broker.restarts == 1, "the cloud's supervisor restarting mosquitto")
                await recovered(rig, did, time.monotonic())
                await latest_is(rig, {"Humidity": 61, "LED_R": 99})
                # The WiFi status word followed: cloud bit (5) clear while away, set again now.
                await eventually(
                    lambda: rig.mcu.wifi_status is not None and rig.mcu.wifi_status.cloud_connected, "cloud bit"
                )

        run(scenario(), 60)
    finally:
        cloud.close()


def test_cloud_stopped_and_started_again(cloud_place: CloudPlace, tmp_path: Path) -> None:
    cloud = start_cloud(cloud_place)
    try:

        async def scenario() -> CloudThread:
            nonlocal cloud
            async with bridge_rig(cloud, tmp_path / "state") as rig:
                await rig.up()
                did = rig.did
                uplink = rig.cloud_uplink
                await asyncio.to_thread(cloud.close)
                await eventually(lambda: not uplink.connected, "the bridge noticing the cloud's absence")
                await eventually(
                    lambda: rig.mcu.wifi_status is not None and not rig.mcu.wifi_status.cloud_connected,
                    "the cloud bit cleared for the MCU",
                )
                rig.mcu.set_values({"Temperature": 31, "LED_OnOff": True})
                await asyncio.sleep(1.5)  # a few failed attempts, so that the backoff is in play
                cloud = await asyncio.to_thread(start_cloud, cloud_place)  # same ports, data dir and database
                rig.cloud = cloud
                await recovered(rig, did, time.monotonic())
                await latest_is(rig, {"Temperature": 31, "LED_OnOff": True})
            return cloud

        run(scenario(), 60)
    finally:
        cloud.close()


def test_pty_unplugged_and_replugged(cloud_place: CloudPlace, tmp_path: Path) -> None:
    cloud = start_cloud(cloud_place)
    appid = cloud.add_app()
    try:

        async def scenario() -> None:
            async with bridge_rig(cloud, tmp_path / "state") as rig:
                await rig.up()
                did = rig.did
                token = await asyncio.to_thread(rig.user_token, appid)
                await rig.unplug()
                await rig.wait_online(False)  # the cloud shows the device offline while the MCU is away
                # An app's control now: the cloud refuses it for an offline device (9042), nothing hangs.
                refused = await rig.api(
                    "POST", f"/app/control/{did}", {"attrs": {"LED_R": 1}}, appid=appid, token=token
                )
                assert refused.status == 400 and refused.body["error_code"] == 9042, refused
                rig.mcu.set_values({"Motor_Speed": 4, "Humidity": 12})
                await asyncio.sleep(1.0)  # the bridge keeps failing to open the port meanwhile
                await rig.replug()
                await recovered(rig, did, time.monotonic())
                assert rig.bridge.connection.connects == 2
                await latest_is(rig, {"Motor_Speed": 4, "Humidity": 12})
                reply = await rig.api("POST", f"/app/control/{did}", {"attrs": {"LED_B": 77}}, appid=appid, token=token)
                assert reply.status == 200, reply
                await eventually(lambda: rig.mcu.state["LED_B"] == 77, "a control after the replug")

        run(scenario(), 60)
    finally:
        cloud.close()


def test_mcu_silent_then_back(cloud_place: CloudPlace, tmp_path: Path) -> None:
    cloud = start_cloud(cloud_place)
    bus = cloud.server.bus
    assert bus is not None
    heard: list[tuple[str, bytes]] = []
    dispatch = bus.dispatch

    async def spy(topic: str, payload: bytes) -> None:
        heard.append((topic, payload))
        await dispatch(topic, payload)

    bus.dispatch = spy  # type: ignore[method-assign]
    try:

        async def scenario() -> None:
            async with bridge_rig(cloud, tmp_path / "state") as rig:
                await rig.up()
                did = rig.did
                answers = f"dev2app/{did}/{CLIENT_ID}"

                async def ask(sn: int) -> None:
                    topic = f"app2dev/{did}/{CLIENT_ID}"
                    await asyncio.to_thread(cloud.call, bus._publish(topic, envelope(0x0093, b"\x02", sn=sn)))

                def answered(sn: int) -> bool:
                    return any(t == answers and p[8:12] == sn.to_bytes(4, "big") for t, p in heard)

                rig.mcu.inject(silent=True)
                await ask(11)  # reaches the bridge before it notices: the MCU never answers the read
                await rig.wait_online(False)
                assert not answered(11)
                rig.mcu.set_values({"LED_G": 5, "Infrared": True})
                rig.mcu.inject(silent=False)
                await recovered(rig, did, time.monotonic())
                await latest_is(rig, {"LED_G": 5, "Infrared": True})
                await ask(12)
                await eventually(lambda: answered(12), "the answer to the first read after the MCU's return")
                assert not answered(11)  # nothing stale turned up

        run(scenario(), 60)
    finally:
        cloud.close()


def test_a_cloud_that_forgot_the_device_gets_it_registered_again(cloud_place: CloudPlace, tmp_path: Path) -> None:
    """The cloud's database lost (restored from an old backup, rebuilt): provisioning answers 9014 for our DID, and
    the bridge registers again rather than retrying a DID that no longer exists."""
    cloud = start_cloud(cloud_place)
    try:

        async def scenario() -> None:
            nonlocal cloud
            async with bridge_rig(cloud, tmp_path / "state") as rig:
                await rig.up()
                old = rig.bridge.identity
                await asyncio.to_thread(cloud.close)
                (cloud_place.base / "cloud.db").unlink()
                cloud = await asyncio.to_thread(start_cloud, cloud_place)
                rig.cloud = cloud
                await asyncio.to_thread(cloud.add_product, GOKIT_SCHEMA, GOKIT_SECRET)
                await eventually(lambda: rig.bridge.identity.did not in ("", old.did), "a new registration")
                await rig.up()
                # The same MAC and passcode (the board did not change), a new DID on the new cloud.
                assert (rig.bridge.identity.mac, rig.bridge.identity.passcode) == (old.mac, old.passcode)
                assert device_count(cloud) == 1
                await latest_is(rig, {name: rig.mcu.state[name] for name in ("LED_R", "Humidity")})

        run(scenario(), 60)
    finally:
        cloud.close()


def test_closing_survives_a_lost_cancellation() -> None:
    """A task that loses its first cancellation (Python 3.11's wait_for, inside aiomqtt's publish, does that when
    its future completes in the same loop turn) must not keep the bridge from closing."""

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed, as that wait_for does
            await asyncio.sleep(30)
        await asyncio.sleep(30)

    async def scenario() -> None:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        started = time.monotonic()
        await cancel_and_wait([task])
        assert task.cancelled()
        assert time.monotonic() - started < 5

    run(scenario(), 20)
