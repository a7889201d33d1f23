"""A hypothesis state machine of the link: writes, reads and MCU-side changes while frames are dropped or delivered
late (before, between or after the sender's timeouts). Whatever the order, no write is applied twice, an
acknowledged write is in the MCU's state, and reads agree with what the MCU last reported."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gizdev.codec.p0 import Product, load_product
from gizdev.errors import AckTimeout
from tests.codec.schemas import app_values
from tests.conftest import product_path
from tests.guards import wind_down
from tests.link.helpers import FrameFaults, Pair, socket_pair

ACK_TIMEOUT = 0.02
GOKIT: Product = load_product(product_path("gokit"))
WRITABLE = [dp.name for dp in GOKIT.schema.writable]
# An ACK may vanish, pass, or arrive late: inside the first wait, after one resend, or after the sender gave up.
ACK_FATES = st.lists(st.sampled_from(["pass", "drop", "late"]), max_size=3)
LATENESS = st.sampled_from([0.5 * ACK_TIMEOUT, 1.5 * ACK_TIMEOUT, 4 * ACK_TIMEOUT])


class LinkMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.acks = FrameFaults()  # what the MCU sends back
        self.requests = FrameFaults(script_acks=False)  # what the module sends
        kwargs: dict[str, Any] = {"ack_timeout": ACK_TIMEOUT}
        self.pair: Pair = self.loop.run_until_complete(
            socket_pair(
                module_kwargs=kwargs,
                mcu_kwargs=kwargs,
                mcu_link_hook=self.acks.attach,
                module_link_hook=self.requests.attach,
            )
        )
        self.attempted = 0
        self.acknowledged = 0
        self.confirmed: dict[str, Any] = {}  # values whose write was acknowledged and not overwritten since

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 5))

    @rule(data=st.data(), fates=ACK_FATES, lateness=LATENESS, lost_requests=st.integers(0, 3))
    def write(self, data: st.DataObject, fates: list[str], lateness: float, lost_requests: int) -> None:
        names = data.draw(st.lists(st.sampled_from(WRITABLE), min_size=1, max_size=3, unique=True))
        values = data.draw(app_values(GOKIT, names))
        self.acks.script[:] = fates
        self.acks.late_s = lateness
        self.requests.script[:] = ["drop"] * lost_requests
        self.attempted += 1
        try:
            self.run(self.pair.module.write(values))
        except AckTimeout:
            for name in names:  # may or may not have landed
                self.confirmed.pop(name, None)
        else:
            self.acknowledged += 1
            self.confirmed.update(values)
            assert {name: self.pair.mcu.state[name] for name in names} == values
        finally:
            self.acks.script[:] = []

    @rule(data=st.data())
    def mcu_changes(self, data: st.DataObject) -> None:
        names = data.draw(st.lists(st.sampled_from(list(GOKIT.codecs)), min_size=1, max_size=3, unique=True))
        values = data.draw(app_values(GOKIT, names))
        self.pair.mcu.set_values(values)
        for name in names:
            self.confirmed.pop(name, None)

    @rule()
    def read(self) -> None:
        try:
            state = self.run(self.pair.module.read())
        except AckTimeout:
            return
        # As the SDK, the MCU answers with its last reported state (a read-only number can be held back for 6 s).
        assert state == self.pair.mcu.reported

    @rule(seconds=st.sampled_from([0.0, ACK_TIMEOUT, 5 * ACK_TIMEOUT]))
    def let_time_pass(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    @invariant()
    def acknowledged_writes_hold(self) -> None:
        for name, value in self.confirmed.items():
            assert self.pair.mcu.state[name] == value

    @invariant()
    def no_write_applied_twice(self) -> None:
        # Each write call is one request (one sn); resends of it must not apply it again.
        assert self.acknowledged <= self.pair.mcu.writes_applied <= self.attempted

    def teardown(self) -> None:
        try:
            self.run(self.pair.close())
        finally:
            left = self.loop.run_until_complete(wind_down("the state machine's loop"))
            self.loop.close()
        if left is not None:
            raise left


LinkMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
)
TestLinkStateMachine = LinkMachine.TestCase
