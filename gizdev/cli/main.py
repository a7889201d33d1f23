"""``gizdev`` entry point: global options, logging set-up and the subcommand table."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gizdev import __version__
from gizdev.cli import (
    bridge_cmd,
    check_cmd,
    cloud_cmd,
    codec_cmds,
    demo_cmd,
    flash_cmd,
    probe_cmd,
    schema_cmd,
    sim_cmd,
    sniff_cmd,
)
from gizdev.cli.console import EXIT_PIPE_CLOSED, silence
from gizdev.errors import GizdevError

_LOGGER = logging.getLogger(__name__)

DESCRIPTION = """\
Open tooling for Gizwits-style IoT products.

Every command that needs a product takes its datapoint schema (the Gizwits JSON export) with --product FILE;
protocols/gokit.json in the repository is the GoKit reference product.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gizdev", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"gizdev {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v: progress, -vv: every frame)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    codec_cmds.register(commands)
    schema_cmd.register(commands)
    sim_cmd.register(commands)
    probe_cmd.register(commands)
    sniff_cmd.register(commands)
    flash_cmd.register(commands)
    check_cmd.register(commands)
    cloud_cmd.register(commands)
    bridge_cmd.register(commands)
    demo_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one gizdev command; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        status: int = args.run(args)
    except GizdevError as exc:
        print(f"gizdev {args.command}: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("gizdev"):
            raise
        # The networked commands need the optional extras (aiohttp, SQLAlchemy...).
        print(f"gizdev {args.command}: needs {exc.name}: pip install 'gizdev[all]'", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `gizdev decode ... | head`); nothing left to say, and the interpreter's final
        # flush of what is still buffered must not fail again (it would print a traceback and exit 120).
        silence(sys.stdout)
        return EXIT_PIPE_CLOSED
    return status


if __name__ == "__main__":
    sys.exit(main())
