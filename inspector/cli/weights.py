"""``inspector weights list | fetch MODEL TAG | import FILE --model MODEL``: backbone weights."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from inspector.errors import InspectorError

if TYPE_CHECKING:
    from inspector.backbone.weights import WeightsEntry

logger = logging.getLogger(__name__)

USER_ERROR = 2
DEFAULT_MODEL_DIR = Path("models")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``weights`` and its sub-commands on the main parser's subparsers."""
    parser = subparsers.add_parser(
        "weights",
        help="list, fetch (online) or import (offline) backbone weights",
        description="Backbone weights: the station never downloads; fetch on a machine with internet, "
                    "copy the file over and import it.",
    )
    parser.set_defaults(func=lambda _args: _usage(parser))
    sub = parser.add_subparsers(dest="weights_command", metavar="{list,fetch,import}")

    p_list = sub.add_parser("list", help="weights available on this machine (imported and cached)")
    p_list.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help="folder of imported weights (default: %(default)s)")
    p_list.add_argument("--model", help="only this architecture")
    p_list.set_defaults(func=_run_list)

    p_fetch = sub.add_parser("fetch", help="download a tag's weights (needs internet)")
    p_fetch.add_argument("model", metavar="MODEL", help="open_clip architecture, e.g. ViT-B-16")
    p_fetch.add_argument("tag", metavar="TAG", help="open_clip pretrained tag, e.g. laion2b_s34b_b88k")
    p_fetch.add_argument("--no-progress", action="store_true", help="no download progress bar")
    p_fetch.set_defaults(func=_run_fetch)

    p_import = sub.add_parser("import", help="check a weights file and copy it into the model folder")
    p_import.add_argument("file", metavar="FILE", type=Path,
                          help=".safetensors (preferred), .pt, .pth or .bin")
    p_import.add_argument("--model", required=True, help="open_clip architecture the file is for")
    p_import.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                          help="folder of imported weights (default: %(default)s)")
    p_import.add_argument("--name", help="file name in the model folder; an open_clip tag name makes "
                                         "`pretrained: TAG` find it (default: the file's name)")
    p_import.set_defaults(func=_run_import)


def _usage(parser: argparse.ArgumentParser) -> int:
    Console(stderr=True).print(parser.format_usage().rstrip(), markup=False, highlight=False)
    return USER_ERROR


def _fail(exc: Exception) -> int:
    Console(stderr=True, soft_wrap=True).print(f"error: {exc}", markup=False, highlight=False)
    return USER_ERROR


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _label(entry: WeightsEntry) -> str:
    return entry.name if not entry.tag or entry.tag == entry.name else f"{entry.name} ({entry.tag})"


def _run_list(args: argparse.Namespace) -> int:
    from inspector.backbone.weights import list_weights

    try:
        entries = list_weights(args.model_dir)
    except InspectorError as exc:
        return _fail(exc)
    if args.model:
        entries = [e for e in entries if e.model == args.model]
    console = Console()
    if not entries:
        console.print(f"No backbone weights on this machine (model dir: {args.model_dir}). "
                      "Fetch on a machine with internet: `inspector weights fetch MODEL TAG`, then "
                      "`inspector weights import FILE --model MODEL --name TAG` here.",
                      markup=False, highlight=False, soft_wrap=True)
        return 0
    # Paths are long: a column on wide terminals, one line per file below the table otherwise.
    wide = console.width >= 150
    table = Table(title=f"Backbone weights (model dir: {escape(str(args.model_dir))})")
    table.add_column("#" if not wide else "", justify="right", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("pretrained", overflow="fold")
    table.add_column("source", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    if wide:
        table.add_column("path", overflow="fold")
    for i, e in enumerate(entries, 1):
        row = [str(i), escape(e.model), escape(_label(e)), e.source, _size(e.size), (e.sha256 or "")[:12]]
        table.add_row(*row, *([escape(str(e.path))] if wide else []))
    console.print(table)
    if not wide:
        for i, e in enumerate(entries, 1):
            console.print(f"{i:>3}: {e.path}", markup=False, highlight=False, soft_wrap=True)
    return 0


def _run_fetch(args: argparse.Namespace) -> int:
    from inspector.backbone.checkpoint import file_sha256
    from inspector.backbone.weights import fetch_weights

    try:
        path = fetch_weights(args.model, args.tag, progress=not args.no_progress)
    except InspectorError as exc:
        return _fail(exc)
    console = Console(soft_wrap=True)
    console.print(f"Fetched {args.model} / {args.tag}: {path}", markup=False, highlight=False)
    console.print(f"size {_size(path.stat().st_size)}, sha256 {file_sha256(path)}", markup=False,
                  highlight=False)
    console.print("This machine can now load it by tag. For an offline station, copy the file over and run:",
                  markup=False, highlight=False)
    console.print(f"  inspector weights import {path.name} --model {args.model} --name {args.tag}",
                  markup=False, highlight=False)
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from inspector.backbone.weights import import_weights

    console = Console(soft_wrap=True)
    try:
        with console.status(f"checking {args.file} against {args.model} ..."):
            entry = import_weights(args.file, args.model, args.model_dir, name=args.name)
    except InspectorError as exc:
        return _fail(exc)
    console.print(f"Imported {args.file} -> {entry.path} ({_size(entry.size)})",
                  markup=False, highlight=False)
    console.print("Paste under the line's `model:` in the station YAML:", markup=False, highlight=False)
    for line in entry.yaml_snippet().splitlines():
        console.print(f"  {line}", markup=False, highlight=False)
    return 0
