"""Helpers shared by CLI commands."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", type=Path, required=required, help="station YAML (station_configs/*.yaml)")
    parser.add_argument("--line", help="product line name (default: the config's default line)")


def load_inspector(args: argparse.Namespace, fit: bool = True):
    """Station config -> fitted Inspector for the chosen line, with a note on skipped files."""
    from rich.console import Console

    from inspector.config import load_station_config
    from inspector.engine import Inspector

    station = load_station_config(args.config)
    console = Console(stderr=True)
    with console.status(f"loading line {station.line(args.line).name} ..."):
        inspector = Inspector.from_config(station, args.line, fit=fit)
    if inspector.backbone.identity.untrained:
        console.print("[yellow]note: untrained backbone (pretrained: random) - verdicts are a demo, not a judgement")
    report = inspector.last_fit
    for reason in report.skipped if report else []:
        console.print(f"[yellow]skipped: {reason}")
    return station, inspector
