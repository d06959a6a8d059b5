"""Command line: ``pitwall-rt [--demo] [--port N ...]`` serves;
``pitwall-rt replay PATH --rate X --to udp://HOST:PORT`` sends a recording,
CSV or demo file to a running server; ``pitwall-rt generate`` writes
synthetic sessions.

Every setting has a flag (``--batch-ms 50``); flags beat environment
variables, which beat config.toml. A bad setting prints one line naming it
and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from .config import SETTING_NAMES, ConfigError, Settings, flag_name, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pitwall-rt", description="Real-time race telemetry server."
    )
    parser.add_argument("--demo", action="store_true", help="replay DEMO_DATA_PATH in a loop")
    parser.add_argument("--config", help="config file (default ./config.toml if present)")
    for name in SETTING_NAMES:
        parser.add_argument(flag_name(name), dest=name, metavar=name, default=None)
    return parser


SUBCOMMANDS = {
    "replay": ("pitwall_rt.replay", "main"),
    "generate": ("pitwall_rt.replay", "main_generate"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module, function = SUBCOMMANDS[argv[0]]
        command = getattr(importlib.import_module(module), function)
        return int(command(argv[1:]))
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            args.config, overrides={n: getattr(args, n) for n in SETTING_NAMES}
        )
    except ConfigError as exc:
        print(f"pitwall-rt: bad setting: {exc}", file=sys.stderr)
        return 2
    return run_server(settings, args.demo)


def run_server(settings: Settings, demo: bool) -> int:
    from .server import install_loop, serve

    logging.basicConfig(
        level=settings.LOG_LEVEL.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    loop_name = install_loop(settings.LOOP)
    logging.getLogger("pitwall_rt").info("event loop: %s", loop_name)
    try:
        asyncio.run(serve(settings, demo))
    except ConfigError as exc:
        print(f"pitwall-rt: bad setting: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pitwall-rt: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
