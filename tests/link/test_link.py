"""The link engine and both sessions, module <-> virtual MCU over real sockets (a socketpair)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from gizdev.codec.commands import Command, ConfigModeKind, WifiStatus
from gizdev.codec.frame import Frame, encode_frame, parse_frame
from gizdev.errors import AckTimeout, HandshakeError, LinkClosed
from gizdev.link import ModuleEvent, Role, SerialLink
from gizdev.sim.mcu import FaultPlan
from tests.conftest import load_vectors
from tests.link.helpers import FrameFaults, Pair, run, socket_pair

# Every writable GoKit datapoint, at both ends of its range.
GOKIT_WRITES: list[dict[str, Any]] = [
    {"LED_OnOff": True},
    {"LED_OnOff": False},
    {"LED_Color": "Pink"},
    {"LED_Color": "Customize"},
    {"LED_R": 254},
    {"LED_R": 0},
    {"LED_G": 254},
    {"LED_B": 127},
    {"Motor_Speed": -5},
    {"Motor_Speed": 5},
    {"LED_R": 1, "LED_G": 2, "LED_B": 3, "Motor_Speed": 0, "LED_OnOff": True, "LED_Color": "Yellow"},
]


async def next_report(pair: Pair, timeout: float = 2.0) -> dict[str, Any]:
    message = await asyncio.wait_for(pair.module.reports_queue.get(), timeout)
    return message.attrs


def test_handshake_read_every_write_and_reports() -> None:
    async def scenario() -> None:
        pair = await socket_pair()
        try:
            info = await pair.module.handshake()
            assert info.product_key == pair.product.product_key
            assert info.protocol_version == "00000004" and info.p0_version == "00000002"
            assert await pair.module.read() == pair.mcu.state
            for attrs in GOKIT_WRITES:
                before = dict(pair.mcu.state)
                await pair.module.write(attrs)
                assert {k: pair.mcu.state[k] for k in attrs} == attrs
                if any(before[k] != v for k, v in attrs.items()):
                    assert await next_report(pair) == pair.mcu.state
            assert await pair.module.read() == pair.mcu.state
            assert pair.mcu.writes_applied == len(GOKIT_WRITES)
        finally:
            await pair.close()

    run(scenario())


def test_write_that_changes_nothing_is_acked_without_report() -> None:
    async def scenario() -> None:
        pair = await socket_pair()
        try:
            await pair.module.handshake()
            await pair.module.write({"LED_R": 0})  # already 0
            with pytest.raises(TimeoutError):
                await next_report(pair, timeout=0.3)
        finally:
            await pair.close()

    run(scenario())


def test_variable_length_product_end_to_end() -> None:
    async def scenario() -> None:
        pair = await socket_pair("fan", mcu_kwargs={"readonly_min_interval_s": 0.1})
        try:
            await pair.module.handshake()
            await pair.module.write({"windspeed": "high", "wemdu_kongzhi": 30})
            assert await next_report(pair) == {"windspeed": "high", "wemdu_kongzhi": 30}  # changed points only
            pair.mcu.set_values({"shidu": 55})  # read-only number: waits for the rate limit, then reports
            assert await next_report(pair) == {"shidu": 55}
            assert await pair.module.read() == pair.mcu.state
        finally:
            await pair.close()

    run(scenario())


def test_readonly_numbers_are_rate_limited_but_bools_are_not() -> None:
    async def scenario() -> None:
        pair = await socket_pair(mcu_kwargs={"readonly_min_interval_s": 0.5})
        try:
            await pair.module.handshake()
            pair.mcu.set_values({"LED_OnOff": True})
            await next_report(pair)
            started = time.monotonic()
            pair.mcu.set_values({"Temperature": 30})
            report = await next_report(pair)
            assert report["Temperature"] == 30
            assert time.monotonic() - started >= 0.4
            started = time.monotonic()
            pair.mcu.set_values({"Infrared": True})  # a read-only bool: at once
            await next_report(pair)
            assert time.monotonic() - started < 0.3
        finally:
            await pair.close()

    run(scenario())


def test_periodic_report() -> None:
    async def scenario() -> None:
        pair = await socket_pair("fan", mcu_kwargs={"periodic_interval_s": 0.3})
        try:
            await pair.module.handshake()
            message = await asyncio.wait_for(pair.module.reports_queue.get(), 2)
            assert message.flags == 0xFF  # every flag bit, as the SDK's 10-minute report
            assert message.attrs == pair.mcu.state
        finally:
            await pair.close()

    run(scenario())


def test_time_wifi_status_and_mcu_requests() -> None:
    async def scenario() -> None:
        pair = await socket_pair()
        try:
            await pair.module.handshake()
            before = int(time.time())
            answer = await pair.mcu.session.request_time()
            assert before <= answer.ntp <= int(time.time()) + 1
            local = time.localtime(answer.ntp)
            assert (answer.year, answer.month, answer.day, answer.hour) == (
                local.tm_year,
                local.tm_mon,
                local.tm_mday,
                local.tm_hour,
            )
            for word in (0x0000, 0x0732, 0x1F3F, 0x0F3A):
                status = WifiStatus.from_word(word)
                await pair.module.send_wifi_status(status)
                assert pair.mcu.wifi_status is not None and pair.mcu.wifi_status.word == word
            await pair.mcu.session.config_mode(ConfigModeKind.AIRLINK)
            await pair.mcu.session.reset_module()
            await pair.mcu.session.binding_mode()
            await pair.mcu.session.test_mode()
            await pair.mcu.session.restart_module()
            await pair.mcu.session.passthrough(b"\x01\xff\x02")
            info = await pair.mcu.session.module_info()
            assert info.device_attributes == pair.mcu.device_info().device_attributes
            kinds = []
            while not pair.module.events.empty():
                event: ModuleEvent = pair.module.events.get_nowait()
                kinds.append(event.kind)
                if event.kind == "config_mode":
                    assert event.data.mode == 2
                if event.kind == "passthrough":
                    assert event.data == b"\x01\xff\x02"
            assert kinds == [
                "mcu_online",
                "config_mode",
                "module_reset",
                "binding_mode",
                "test_mode",
                "module_restart",
                "passthrough",
            ]
            await pair.module.passthrough(b"\xfe\xff")
            assert pair.mcu.passthrough_received == [b"\xfe\xff"]
            await pair.module.restart_mcu()
            await asyncio.sleep(0.05)
            assert pair.mcu.restarts == 1
        finally:
            await pair.close()

    run(scenario())


def test_heartbeats_offline_after_three_misses_and_back() -> None:
    async def scenario() -> None:
        pair = await socket_pair(module_kwargs={"heartbeat_interval": 0.05, "ack_timeout": 0.02, "resends": 0})
        try:
            await pair.module.handshake()
            assert (await pair.module.events.get()).kind == "mcu_online"
            pair.module.start_heartbeats()
            await asyncio.sleep(0.2)
            assert pair.module_link.stats.frames_out >= 3 and pair.module.mcu_online
            pair.mcu.inject(silent=True)
            event = await asyncio.wait_for(pair.module.events.get(), 2)
            assert event.kind == "mcu_offline" and pair.module.missed >= 3
            pair.mcu.inject(silent=False)  # keeps trying, comes back on the next answer
            event = await asyncio.wait_for(pair.module.events.get(), 2)
            assert event.kind == "mcu_online" and pair.module.missed == 0
        finally:
            await pair.close()

    run(scenario())


def test_product_key_mismatch_is_a_handshake_error() -> None:
    async def scenario() -> None:
        pair = await socket_pair()
        try:
            pair.mcu._device_info = dataclasses.replace(pair.mcu.device_info(), product_key="f" * 32)
            with pytest.raises(HandshakeError, match=r"f{32}.*0123456789abcdef"):
                await pair.module.handshake()
        finally:
            await pair.close()

    run(scenario())


def test_ack_timeout_after_three_transmissions() -> None:
    async def scenario() -> None:
        pair = await socket_pair(mcu_kwargs={"faults": FaultPlan(silent=True)})
        try:
            started = time.monotonic()
            with pytest.raises(AckTimeout) as caught:
                await pair.module.write({"LED_R": 1})
            elapsed = time.monotonic() - started
            assert caught.value.attempts == 3
            assert 0.55 <= elapsed <= 1.5  # three waits of 200 ms
            assert pair.module_link.stats.resends == 2
            assert pair.mcu.writes_applied == 1  # heard, applied once; its ACKs were never sent
            assert pair.mcu_link.stats.duplicates == 2
        finally:
            await pair.close()

    run(scenario())


def test_lost_ack_is_not_applied_twice() -> None:
    async def scenario() -> None:
        faults = FrameFaults(script=["drop"])  # the MCU's first ACK vanishes; the module resends
        pair = await socket_pair(mcu_link_hook=faults.attach)
        try:
            await pair.module.write({"LED_G": 9})
            assert pair.mcu.writes_applied == 1
            assert pair.mcu_link.stats.duplicates == 1
            assert pair.module_link.stats.resends == 1
        finally:
            await pair.close()

    run(scenario())


def test_late_ack_of_an_earlier_request_is_not_taken_for_the_next_one() -> None:
    async def scenario() -> None:
        faults = FrameFaults(script=["late", "late", "late"], late_s=0.7)  # all 3 ACKs of write 1 arrive late
        pair = await socket_pair(mcu_link_hook=faults.attach)
        try:
            with pytest.raises(AckTimeout):
                await pair.module.write({"LED_B": 1})
            await pair.module.write({"LED_B": 2})
            await asyncio.sleep(0.3)  # the late ACKs have landed by now
            assert pair.module_link.stats.stray_acks >= 1
            assert pair.mcu.state["LED_B"] == 2
        finally:
            await pair.close()

    run(scenario())


def test_illegal_message_notices() -> None:
    async def scenario() -> None:
        pair = await socket_pair()
        seen: list[Any] = []
        try:
            module_link = pair.module_link
            original = module_link._on_frame

            def spy(frame: Frame) -> None:
                seen.append(frame)
                if original is not None:
                    original(frame)

            module_link._on_frame = spy
            bad = bytearray(encode_frame(Command.HEARTBEAT, 0x42))
            bad[-1] ^= 0xFF
            module_link.write_raw(bytes(bad))  # the vendor vector error_reply-0595 scenario
            module_link.write_raw(encode_frame(0x40, 0x44))  # unknown command (vector error_reply-0597)
            module_link.write_raw(encode_frame(Command.ILLEGAL_MESSAGE, 0x45, b"\x03"))
            await asyncio.sleep(0.1)
            vectors = {v["id"]: v for v in load_vectors("gokit")}
            wires = [encode_frame(f.cmd, f.sn, f.payload, f.flags) for f in seen]
            assert bytes.fromhex(vectors["error_reply-0595"]["frame_hex"]) in wires
            assert bytes.fromhex(vectors["error_reply-0597"]["frame_hex"]) in wires
            # The module's own notice gets no answer: the SDK drops a 0x11 (test_sdk_rules has the raw bytes).
            assert len(wires) == 2
            assert pair.mcu_link.stats.checksum_errors == 1
            assert pair.mcu_link.stats.notices_in == 1
            assert pair.module_link.stats.notices_in == 2
            # The link is still fine afterwards.
            assert await pair.module.read() == pair.mcu.state
        finally:
            await pair.close()

    run(scenario())


def test_duplicate_request_bytes_are_acked_twice_applied_once() -> None:
    async def scenario() -> None:
        pair = await socket_pair()
        acks: list[Any] = []
        try:
            link = pair.module_link
            link._on_frame = acks.append
            write = encode_frame(Command.P0_DOWN, 0x77, pair.product.encode("write", {"LED_R": 50}))
            link.write_raw(write)
            link.write_raw(write)
            await asyncio.sleep(0.1)
            assert [(f.cmd, f.sn) for f in acks if f.cmd == 4] == [(4, 0x77), (4, 0x77)]
            assert pair.mcu.writes_applied == 1
        finally:
            await pair.close()

    run(scenario())


def test_close_fails_the_pending_request_with_the_reason() -> None:
    async def scenario() -> None:
        pair = await socket_pair(mcu_kwargs={"faults": FaultPlan(silent=True)})
        try:
            pending = asyncio.ensure_future(pair.module.write({"LED_R": 3}))
            await asyncio.sleep(0.05)
            pair.mcu_link.close()  # the peer goes away
            with pytest.raises(LinkClosed):
                await pending
            with pytest.raises(LinkClosed):
                await pair.module.read()
        finally:
            await pair.close()

    run(scenario())


@pytest.mark.parametrize("seed", [1, 2])
def test_lossy_link_converges_without_lost_or_doubled_writes(seed: int) -> None:
    """1% of bytes corrupted and 5% of frames dropped, both ways: every write lands exactly once."""

    async def scenario() -> None:
        to_mcu = FrameFaults(drop=0.05, corrupt=0.01, seed=seed)
        to_module = FrameFaults(drop=0.05, corrupt=0.01, seed=seed + 100)
        fast = {"ack_timeout": 0.05}  # the resend rule under test is the same at 50 ms; it keeps the test short
        pair = await socket_pair(
            module_kwargs=fast, mcu_kwargs=fast, module_link_hook=to_mcu.attach, mcu_link_hook=to_module.attach
        )
        try:
            await pair.module.handshake()
            expected = dict(pair.mcu.state)
            acknowledged = 0
            for index in range(150):
                attrs = {"LED_R": index % 255, "Motor_Speed": index % 11 - 5}
                while True:  # the application retries a write whose every transmission was lost
                    try:
                        await pair.module.write(attrs)
                        acknowledged += 1
                        break
                    except AckTimeout:
                        continue
                expected.update(attrs)
                assert {k: pair.mcu.state[k] for k in attrs} == attrs
            assert pair.mcu.state == expected
            # Link-level resends of a write were ACKed again but applied once: applied = distinct write requests.
            assert pair.mcu.writes_applied >= acknowledged
            assert pair.mcu.writes_applied - acknowledged <= pair.module_link.stats.ack_timeouts
            for _ in range(5):
                try:
                    assert await pair.module.read() == expected
                    break
                except AckTimeout:
                    continue
            bad_seen = pair.mcu_link.stats.bad_frames + pair.module_link.stats.bad_frames
            corrupted = to_mcu.corrupted_frames + to_module.corrupted_frames
            assert corrupted > 10 and to_mcu.dropped + to_module.dropped > 10
            assert bad_seen >= 0.8 * corrupted
        finally:
            await pair.close()

    run(scenario(), timeout=120)


def test_link_send_requires_open_transport() -> None:
    async def scenario() -> None:
        link = SerialLink(Role.MODULE, lambda frame: b"")
        with pytest.raises(LinkClosed):
            await link.request(Command.HEARTBEAT)
        with pytest.raises(LinkClosed):
            link.send(Command.HEARTBEAT)

    run(scenario())


def test_unknown_action_is_acked_like_the_sdk() -> None:
    async def scenario() -> None:
        pair = await socket_pair()
        try:
            (vector,) = (v for v in load_vectors("gokit") if v["kind"] == "p0_unknown_action_ack")
            frame = parse_frame(bytes.fromhex(vector["input_hex"]))
            ack = await pair.module_link.request(frame.cmd, frame.payload)
            assert ack.cmd == 4 and ack.payload == b""
            assert pair.mcu_link.stats.notices_in == 0 and pair.module_link.stats.notices_in == 0
        finally:
            await pair.close()

    run(scenario())
