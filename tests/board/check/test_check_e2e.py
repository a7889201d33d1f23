"""check-board against the virtual MCU over real pty pairs: a well-behaved board passes every check, and each
fault the sim can inject fails exactly the check that names it (other checks pass, or warn/skip where the fault
leaves nothing to check)."""

from __future__ import annotations

import asyncio
from typing import Any

from gizdev.board.check import CHECK_NAMES, CheckResult, Status, check_board
from gizdev.codec.p0 import load_product
from gizdev.sim.mcu import FaultPlan, VirtualMcu
from gizdev.transport import open_pty_pair
from tests.board.test_probe import SpecBoard
from tests.conftest import product_path
from tests.link.helpers import run

OTHER_KEY = "fedcba9876543210fedcba9876543210"


async def check_sim(
    name: str = "gokit",
    faults: FaultPlan | None = None,
    *,
    throttle_baud: int | None = None,
    only: tuple[str, ...] = (),
    **mcu_kwargs: Any,
) -> dict[str, CheckResult]:
    """A virtual MCU on a pty master, check-board on the slave path; results by check name."""
    product = load_product(product_path(name))
    mcu = VirtualMcu(product, faults=faults, **mcu_kwargs)
    with open_pty_pair() as pair:
        await pair.connect_master(mcu.protocol_factory, throttle_baud=throttle_baud)
        mcu.start()
        try:
            results, _ = await check_board(pair.slave_path, product, only=only)
        finally:
            await mcu.close()
    return {result.name: result for result in results}


def failing(results: dict[str, CheckResult]) -> set[str]:
    return {name for name, result in results.items() if result.status is Status.FAIL}


def test_a_well_behaved_board_passes_every_check_for_each_product() -> None:
    """GoKit, the SDK's fixed-length light and variable-length fan products, and GoKit paced at 9600 baud."""

    async def timed(name: str, **kwargs: Any) -> tuple[dict[str, CheckResult], float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await check_sim(name, **kwargs)
        return results, loop.time() - start

    async def scenario() -> list[tuple[dict[str, CheckResult], float]]:
        runs = (timed("gokit"), timed("light"), timed("fan"), timed("gokit", throttle_baud=9600))
        return list(await asyncio.gather(*runs))

    outcomes = run(scenario(), timeout=90)
    assert outcomes[-1][1] < 30  # the whole run at the protocol's 9600 baud takes seconds
    for results, _ in outcomes:
        assert list(results) == list(CHECK_NAMES)
        assert {name: r.status for name, r in results.items()} == dict.fromkeys(CHECK_NAMES, Status.PASS), {
            name: r.findings for name, r in results.items() if r.status is not Status.PASS
        }
    gokit = run(check_sim("gokit", only=("write-report", "stuffing")), timeout=60)
    # GoKit: 6 writable points; bools both ways, each other enum member and back, min/max and back (§6); the
    # motor starts at 0, between its ends (the SDK's zero in app units), so it takes min, max and back.
    assert gokit["write-report"].summary.startswith("15 writes to 6 points, 15 reports")
    assert list(gokit) == ["write-report", "stuffing"]


#: fault -> the checks that must fail (all others must not).
FAULTS: dict[str, tuple[FaultPlan, set[str]]] = {
    "wrong product key": (FaultPlan(product_key=OTHER_KEY), {"device-info"}),
    "slow ACK": (FaultPlan(ack_delay_s=0.35), {"heartbeat", "ack-timing"}),
    # Every 13th frame: none of them is an answer another check judges (every 12th hits the 0x12 to 0x60).
    "bad checksum": (FaultPlan(bad_checksum_every=13), {"frame-integrity"}),
    "missing report after a write": (FaultPlan(no_report_after_write=True), {"write-report"}),
    "no stuffing": (FaultPlan(no_stuffing=True), {"stuffing"}),
    "wrong sn echo": (FaultPlan(wrong_ack_sn=True), {"sn-echo"}),
    "no resend": (FaultPlan(no_resend=True), {"resend"}),
    "ignores illegal messages": (FaultPlan(ignore_illegal=True), {"illegal-checksum", "illegal-command"}),
}


WITHOUT_WRITES = tuple(name for name in CHECK_NAMES if not name.startswith("write-"))


def test_each_fault_fails_exactly_its_check() -> None:
    async def scenario() -> dict[str, dict[str, CheckResult]]:
        # A slow ACK makes every request slow: its run leaves out the many writes (and their read-backs).
        runs = (
            check_sim("gokit", plan, only=WITHOUT_WRITES if fault == "slow ACK" else ())
            for fault, (plan, _) in FAULTS.items()
        )
        outcomes = await asyncio.gather(*runs)
        return dict(zip(FAULTS, outcomes, strict=True))

    outcomes = run(scenario(), timeout=110)
    for fault, (_, expected) in FAULTS.items():
        results = outcomes[fault]
        assert failing(results) == expected, (fault, {n: r.findings for n, r in results.items()})
        for name in expected:
            # Every failure shows what was sent and received, as hex and decoded.
            assert results[name].evidence, (fault, name)
            assert all(len(bytes.fromhex(item.hex)) >= 9 for item in results[name].evidence), (fault, name)
    assert OTHER_KEY in outcomes["wrong product key"]["device-info"].headline()
    slow = outcomes["slow ACK"]["heartbeat"].headline()
    assert "answered after" in slow and "allowed" in slow
    # Nothing to withhold an ACK from when no report follows a write: said, not failed.
    assert outcomes["missing report after a write"]["resend"].status is Status.SKIP
    sn = outcomes["wrong sn echo"]["sn-echo"]
    assert any(item.direction == "received" for item in sn.evidence)
    stuffing = outcomes["no stuffing"]["stuffing"]
    assert any("ff" in item.hex and "ff55" not in item.hex for item in stuffing.evidence)


async def check_with_sensor(sensor: bool, **mcu_kwargs: Any) -> CheckResult:
    """report-rate after a short run, optionally with a temperature that changes every 0.3 s."""
    product = load_product(product_path("gokit"))
    mcu = VirtualMcu(product, **mcu_kwargs)

    async def changing_temperature() -> None:
        for step in range(30):
            mcu.set_values({"Temperature": 20 + step % 2})
            await asyncio.sleep(0.3)

    with open_pty_pair() as pair:
        await pair.connect_master(mcu.protocol_factory)
        mcu.start()
        task = asyncio.get_running_loop().create_task(changing_temperature()) if sensor else None
        try:
            results, _ = await check_board(
                pair.slave_path, product, only=("heartbeat", "read-reply", "report-rate"), observe_s=2.5
            )
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await mcu.close()
    return results[-1]


def test_report_rate_limits() -> None:
    """A board that repeats unchanged reports, and one that reports a changing temperature at once, fail; the
    SDK's own rule (a read-only number alone at most every 6 s, the sim's default) passes."""

    async def scenario() -> list[CheckResult]:
        return list(
            await asyncio.gather(
                check_with_sensor(False, periodic_interval_s=0.4),
                check_with_sensor(True, readonly_min_interval_s=0.0),
                check_with_sensor(True),
            )
        )

    flood, too_fast, sdk = run(scenario(), timeout=60)
    assert flood.status is Status.FAIL and "without any change" in flood.headline(), flood.findings
    assert too_fast.status is Status.FAIL, too_fast.findings
    assert any("read-only numbers alone" in finding for finding in too_fast.findings), too_fast.findings
    assert sdk.status is Status.PASS, sdk.findings


def test_a_board_written_from_the_spec_that_boots_slowly() -> None:
    """The probe tests' SpecBoard: ignores the first device info request, sends a report and a time request of
    its own before answering with the 66-byte 2015 device info. The checker plays the module: it acknowledges
    the report and answers the time request; booting is noted, not failed; the short device info is a warning."""

    async def scenario() -> tuple[dict[str, CheckResult], SpecBoard]:
        with open_pty_pair() as pair:
            transport, board = await pair.connect_master(SpecBoard)
            try:
                results, _ = await check_board(
                    pair.slave_path, board.product, only=("device-info", "read-reply", "ack-timing", "sn-echo")
                )
            finally:
                transport.close()
                await board.closed
        return {r.name: r for r in results}, board

    results, board = run(scenario(), timeout=30)
    statuses = {name: r.status for name, r in results.items()}
    assert statuses == {
        "device-info": Status.WARN,
        "read-reply": Status.PASS,
        "ack-timing": Status.PASS,
        "sn-echo": Status.PASS,
    }, {name: r.findings for name, r in results.items()}
    assert any("66-byte device info" in finding for finding in results["device-info"].findings)
    assert any("booting" in finding for finding in results["device-info"].findings)
    answers = {(frame.cmd, frame.sn) for frame in board.received}
    assert (0x06, 0x40) in answers and (0x18, 0x41) in answers
