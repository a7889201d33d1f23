"""Acceptance: a module session and a virtual MCU on two pty pairs, the sniffer relaying in the middle.

The trace of each direction must list exactly the frames that side sent (parsed independently), in order, with
the injected garbage and the torn frame reported where they were injected; the session itself must work through
the relay; and the recorded capture must replay to the same trace.
"""

from __future__ import annotations

import io

from gizdev.board.sniff import Direction, Relay, TraceDecoder, TraceEvent, TraceTap, event_json, replay
from gizdev.codec.p0 import load_product
from gizdev.link import ModuleSession
from gizdev.sim.mcu import VirtualMcu
from gizdev.transport import open_pty_pair
from tests.board.sniff.helpers import until
from tests.board.sniff.scenario import MCU_GARBAGE, MODULE_GARBAGE, attach, observed, talk
from tests.conftest import product_path
from tests.link.helpers import run


def test_sniffer_in_the_middle_decodes_the_session_exactly() -> None:
    async def main() -> None:
        product = load_product(product_path("gokit"))
        mcu = VirtualMcu(product)
        module = ModuleSession(product)
        events: list[TraceEvent] = []
        record = io.StringIO()
        decoder = TraceDecoder(product)
        tap = TraceTap(decoder, events.append, record=record)
        mcu_pty, module_pty = open_pty_pair(), open_pty_pair()
        relay = Relay(tap)
        try:
            await mcu_pty.connect_master(mcu.protocol_factory)
            await module_pty.connect_master(module.protocol_factory)
            await relay.open(mcu_pty.slave_path, module_pty.slave_path)
            mcu.start()
            sent = attach(module, mcu)
            await talk(module, mcu, sent)
            want = {d: sent.expected(d) for d in (Direction.MCU_TO_MODULE, Direction.MODULE_TO_MCU)}
            await until(lambda: all(len(observed(events, d)) >= len(want[d]) for d in want), what="the sniffer's trace")
        finally:
            await relay.close()
            await module.close()
            await mcu.close()
            for link in (module.link, mcu.session.link):
                if link is not None:
                    await link.wait_closed()
            mcu_pty.close()
            module_pty.close()
        tap.finish(0)
        for direction, expected in want.items():
            assert observed(events, direction) == expected, direction
        # The scenario did put what it claims on the wire (so the comparison above covers it).
        assert ("bad", MCU_GARBAGE) in want[Direction.MCU_TO_MODULE]
        assert ("bad", MODULE_GARBAGE) in want[Direction.MODULE_TO_MCU]
        assert sum(kind == "bad" for kind, _ in want[Direction.MCU_TO_MODULE]) == 2  # garbage + torn report
        # Decoded fields: each report the module session received appears with the same values, by name.
        reports = [e.fields for e in events if e.fields and e.fields.get("action_name") == "report"]
        assert [r["attrs"] for r in reports] == [product.attrs_to_json(m.attrs) for m in sent.reports]
        writes = [e.fields["attrs"] for e in events if e.fields and e.fields.get("action_name") == "write"]
        assert writes == [{"LED_R": 200}, {"Motor_Speed": 3}]
        # Relay statistics agree with the decoder's byte counts.
        assert relay.stats.mcu_to_module_bytes == decoder.stats(Direction.MCU_TO_MODULE).bytes
        assert relay.stats.module_to_mcu_bytes == decoder.stats(Direction.MODULE_TO_MCU).bytes
        # The capture replays to the same trace.
        replayed: list[TraceEvent] = []
        replay(io.StringIO(record.getvalue()), TraceDecoder(product), replayed.append)
        assert [event_json(e) for e in replayed] == [event_json(e) for e in events]

    run(main(), timeout=60)
