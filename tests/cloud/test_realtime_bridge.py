"""The WebSocket API with our own device: local cloud <-> Mosquitto <-> Bridge (software GAgent) <-> VirtualMcu on a
pty. A c2s_write changes the MCU's state, the MCU's own changes arrive as s2c_noti, acks travel both ways, and a
device the user has not bound stays out of reach."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.bridge.bridge_fixtures import Rig, bridge_rig, eventually
from tests.cloud.realtime_helpers import new_user, register, ws_client
from tests.cloud.server_fixtures import CloudThread
from tests.guards import run

BOARD = {"LED_R": 0x12, "LED_G": 0x34, "Motor_Speed": 3, "Temperature": 20, "Humidity": 55}


def bind_user(rig: Rig, appid: str) -> tuple[str, str]:
    return new_user(rig.cloud, appid, "alice", (rig.did, rig.bridge.identity.passcode))


def test_write_reaches_the_mcu_and_its_changes_come_back(cloud: CloudThread, tmp_path: Path) -> None:
    appid = cloud.add_app()
    cloud.add_product()  # the seed product, for a device nobody bound
    stranger = register(cloud, "001122334455", "OTHERPASSX")

    async def scenario() -> None:
        async with bridge_rig(cloud, tmp_path / "state", mcu_kwargs={"values": BOARD}) as rig:
            await rig.up()
            uid, token = await asyncio.to_thread(bind_user, rig, appid)
            async with ws_client(cloud) as ws:
                await ws.login(appid, uid, token)
                status = await ws.expect("s2c_online_status")
                assert status["data"]["did"] == rig.did and status["data"]["online"] is True

                # c2s_write -> 0x0090 on MQTT -> the bridge -> serial write -> the MCU's state; the MCU then
                # reports the change, which comes back as s2c_noti.
                await ws.send("c2s_write", {"did": rig.did, "attrs": {"LED_R": 200, "Motor_Speed": -2}})
                await eventually(lambda: rig.mcu.state["LED_R"] == 200, "the write on the MCU")
                assert rig.mcu.state["Motor_Speed"] == -2 and rig.mcu.state["LED_G"] == 0x34
                noti = await ws.expect("s2c_noti", 10)
                assert noti["data"]["did"] == rig.did
                attrs = noti["data"]["attrs"]
                assert attrs["LED_R"] == 200 and attrs["Motor_Speed"] == -2 and attrs["LED_G"] == 0x34

                # The board's own change (a sensor, an alert) -> report -> s2c_noti.
                rig.mcu.set_values({"Humidity": 77, "Alert_1": True})
                noti = await ws.expect("s2c_noti", 10)
                assert noti["data"]["attrs"]["Humidity"] == 77 and noti["data"]["attrs"]["Alert_1"] is True

                # With req_sn: 0x0093, which the bridge acknowledges with 0x0094 and the same sn.
                await ws.send("c2s_write", {"did": rig.did, "attrs": {"LED_OnOff": True}}, req_sn=41)
                assert await ws.expect("s2c_ack", 10, skip=("s2c_noti",)) == {
                    "cmd": "s2c_ack",
                    "res_sn": 41,
                    "did": rig.did,
                }
                await eventually(lambda: rig.mcu.state["LED_OnOff"] is True, "the acknowledged write on the MCU")
                # A read with req_sn: the 0x0094 carries the status, so s2c_ack then s2c_noti with res_sn.
                await ws.send("c2s_read", {"did": rig.did}, req_sn=42)
                await ws.expect("s2c_ack", 10, skip=("s2c_noti",))
                noti = await ws.expect("s2c_noti", 10)
                while "res_sn" not in noti:  # a report of the write may come first
                    noti = await ws.expect("s2c_noti", 10)
                assert noti["res_sn"] == 42 and noti["data"]["attrs"]["LED_OnOff"] is True

                # Bad values are refused as /app/control refuses them, and nothing reaches the MCU.
                for attrs in ({"LED_R": 256}, {"NoSuchPoint": 1}, {"Temperature": 30}, {"LED_Color": "Ultraviolet"}):
                    await ws.send("c2s_write", {"did": rig.did, "attrs": attrs})
                    assert await ws.invalid(skip=("s2c_noti",)) == 9025, attrs
                assert rig.mcu.state["Temperature"] == 20

                # The device nobody bound: refused everywhere.
                await ws.send("subscribe_req", [{"did": stranger}])
                reply = await ws.expect("subscribe_res", skip=("s2c_noti",))
                assert reply["data"]["success"] == []
                assert reply["data"]["failed"] == [{"did": stranger, "error_code": 9017, "msg": "device not bound!"}]
                await ws.send("c2s_write", {"did": stranger, "attrs": {"temp": 1}})
                assert await ws.invalid(skip=("s2c_noti",)) == 9017

    run(scenario(), 90)
