"""`inspector history [LOG_FOLDER | --config FILE]`: QA's read-only window on an audit log (docs/history.md).

The History view without the station (``python -m gui.viewer`` in a child process, by module name, as
``inspector gui`` does: the core never imports the GUI). It takes no station lock and writes nothing into
the log but its index catch-up; torch and open_clip load only for a search by words.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

VIEWER_MODULE = "gui.viewer"


def add_history_arguments(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Declare the viewer's options on ``p`` (``gui.viewer`` builds its parser from the same declaration)."""
    return [
        p.add_argument("folder", nargs="?", type=Path, metavar="LOG_FOLDER",
                       help="audit log folder (default: log.folder of --config)"),
        p.add_argument("--config", type=Path, help="station YAML: its log folder and model_dir"),
        p.add_argument("--model-dir", type=Path, metavar="DIR",
                       help="imported CLIP weights for a search by words (default: model_dir of --config)"),
        p.add_argument("--exit-after-load", action="store_true", help=argparse.SUPPRESS),
    ]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="read-only window on an audit log (QA, no station needed)",
                       description="Browse an audit log folder: filters, paging, CSV export, similar-part search "
                                   "and search by words. Read-only: no station lock, nothing written into the log "
                                   "but its index.")
    add_history_arguments(p)
    p.set_defaults(func=run)


def viewer_argv(args: argparse.Namespace) -> list[str]:
    """The parsed options as ``python -m gui.viewer`` arguments."""
    argv: list[str] = []
    for action in add_history_arguments(argparse.ArgumentParser(add_help=False)):
        value = getattr(args, action.dest)
        if not action.option_strings:  # the positional folder
            argv += [str(value)] if value is not None else []
        elif action.nargs == 0:
            argv += [action.option_strings[0]] if value else []
        elif value is not None:
            argv += [action.option_strings[0], str(value)]
    argv += ["-v"] * int(getattr(args, "verbose", 0) or 0)
    return argv


def run(args: argparse.Namespace) -> int:
    if args.folder is None and args.config is None:
        print("error: name the log folder (inspector history LOG_FOLDER) or the station config (--config FILE)",
              file=sys.stderr)
        return 2
    if args.folder is not None and not args.folder.is_dir():
        print(f"error: {args.folder}: no such log folder", file=sys.stderr)
        return 2
    proc = subprocess.Popen([sys.executable, "-m", VIEWER_MODULE, *viewer_argv(args)])
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the viewer too: it closes its window
        return proc.wait()
