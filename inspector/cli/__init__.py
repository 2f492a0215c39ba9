"""Command-line interface: `inspector <command>`. Thin: parse, call the core, print.

Heavy imports (torch, open_clip) happen inside the handlers so `inspector --help` is instant.
Exit codes: 0 success, 1 a check failed (e.g. NG parts with --fail-on-ng), 2 user error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

# The station never reaches for the network on its own (HF hub, open_clip downloads).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def build_parser() -> argparse.ArgumentParser:
    from inspector import __version__
    from inspector.cli import calibrate, config_cmd, eval_cmd, predict, weights

    parser = argparse.ArgumentParser(prog="inspector", description="CLIP inspection station")
    parser.add_argument("--version", action="version", version=f"inspector {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (predict, eval_cmd, calibrate, config_cmd, weights):
        module.add_parser(sub)
    for module in _subsystem_commands():
        module.add_parser(sub)
    return parser


def _subsystem_commands() -> list:
    """Every ``inspector/cli/*_cmd.py`` module registers its own command (run, log, train, ...)."""
    import importlib
    import pkgutil

    import inspector.cli as package

    core = {"eval_cmd", "config_cmd"}
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.endswith("_cmd"))
    return [importlib.import_module(f"inspector.cli.{name}") for name in names if name not in core]


def main(argv: list[str] | None = None) -> int:
    from inspector.errors import InspectorError

    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
