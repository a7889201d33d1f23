"""One cloud worker as its own process, for the multi-worker scheduler test (``python -m`` this module).

A whole :class:`CloudServer` (storage, device bus on an external broker, HTTP, the runner ticking on its own
timer) whose clock runs at the real rate from ``--virtual-at`` reached at real time ``--real-at``, so that several
workers share one shifted clock. Prints ``ready <runner's worker name>`` once started; stops on SIGTERM.
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


async def serve(args: argparse.Namespace) -> None:
    def clock() -> float:
        return float(args.virtual_at) + (time.time() - float(args.real_at))

    config = CloudConfig(
        data_dir=Path(args.data_dir),
        http_port=0,
        broker_url=args.broker,
        database=args.database,
        kdf=FAST_KDF,
        broker_client_id=f"gizdev-{args.name}",
        scheduler=SchedulerSettings(tick_s=0.1, lease_s=args.lease, batch=args.batch),
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
    for name in ("--database", "--broker", "--data-dir", "--name", "--real-at", "--virtual-at"):
        parser.add_argument(name, required=True)
    parser.add_argument("--lease", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20)
    asyncio.run(serve(parser.parse_args()))  # noqa: TID251  (a process's main, not a test)
    sys.exit(0)


if __name__ == "__main__":
    main()
