"""One cloud worker as its own process, for the multi-worker scheduler test (``python -m`` this module).

A whole :class:`CloudServer` (storage, device bus on an external broker, HTTP, the runner ticking on its own
timer) whose clock stands two seconds before ``--virtual-at`` until the test writes a real time R into
``--go-file``; from then on it runs at the real rate and reaches ``--virtual-at`` at R, the same for every worker.
Prints ``ready <runner's worker name>`` once started; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from gizdev.cloud.scheduler.runner import SchedulerSettings
from gizdev.cloud.server import CloudConfig, CloudServer
from tests.cloud.server_fixtures import FAST_KDF

HOLD_S = 2.0  # how far before the minute the clock stands until the go file says when the minute is


class GoClock:
    def __init__(self, virtual_at: float, go_file: Path) -> None:
        self.virtual_at = virtual_at
        self.go_file = go_file
        self.real_at: float | None = None

    def __call__(self) -> float:
        if self.real_at is None:
            try:
                self.real_at = float(self.go_file.read_text())
            except (OSError, ValueError):
                return self.virtual_at - HOLD_S
        return self.virtual_at + (time.time() - self.real_at)


async def serve(args: argparse.Namespace) -> None:
    clock = GoClock(float(args.virtual_at), Path(args.go_file))

    config = CloudConfig(
        data_dir=Path(args.data_dir),
        http_port=0,
        broker_url=args.broker,
        database=args.database,
        kdf=FAST_KDF,
        broker_client_id=f"gizdev-{args.name}",
        scheduler=SchedulerSettings(
            tick_s=0.1, lease_s=args.lease, batch=args.batch, start_delay_s=0, ack_timeout_s=args.lease / 3
        ),
    )
    server = CloudServer(config, clock=clock)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await server.start()
    try:
        assert server.scheduler is not None
        print("ready", server.scheduler.worker, flush=True)
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--database", "--broker", "--data-dir", "--name", "--go-file", "--virtual-at"):
        parser.add_argument(name, required=True)
    parser.add_argument("--lease", type=int, default=3)
    parser.add_argument("--batch", type=int, default=SchedulerSettings().batch)
    asyncio.run(serve(parser.parse_args()))  # noqa: TID251  (a process's main, not a test)
    sys.exit(0)


if __name__ == "__main__":
    main()
