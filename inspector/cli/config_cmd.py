"""`inspector config check FILE...`: validate station YAML files without running anything."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="station config tools")
    s = p.add_subparsers(dest="config_command", metavar="{check}")
    c = s.add_parser("check", help="validate station YAML files")
    c.add_argument("files", nargs="+", type=Path, metavar="FILE")
    c.set_defaults(func=run_check)
    p.set_defaults(func=lambda _a: p.print_help() or 2)


def run_check(args: argparse.Namespace) -> int:
    from inspector.config import config_hash, load_station_config
    from inspector.errors import ConfigError

    status = 0
    for path in args.files:
        try:
            station = load_station_config(path)
        except ConfigError as exc:
            print(exc)
            status = 2
            continue
        for line in station.lines:
            print(f"{path}: line {line.name} ({line.object_name}) model {line.model.name}/{line.model.pretrained} "
                  f"config {config_hash(line)} ok")
    return status
