"""`inspector gui --config FILE [--line L]`: the operator / engineer GUI (the gui package, PySide6).

The core never imports the GUI: this command runs ``python -m gui`` in a child process by module
name, so ``inspector`` holds no import of ``gui`` or PySide6 (the import-linter contract). The GUI's
options are declared once, here (:func:`add_gui_arguments`): ``gui.app`` builds its parser from it,
and :func:`gui_argv` writes the parsed options back as arguments from the same declaration.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

GUI_MODULE = "gui"


def add_gui_arguments(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Declare the GUI's options on ``p`` and return them (``-v`` is the caller's: ``inspector -v gui``)."""
    return [
        p.add_argument("--config", type=Path, required=True, help="station YAML (station_configs/*.yaml)"),
        p.add_argument("--line", help="product line to start on (default: the config's default line)"),
        p.add_argument("--log-dir", type=Path, metavar="DIR", help="audit log folder (default: log.folder)"),
        p.add_argument("--trigger", choices=["free_run", "software", "plc"],
                       help="trigger mode (default: trigger.mode)"),
        p.add_argument("--rate", type=float, metavar="HZ", help="free-run rate (default: trigger.rate_hz)"),
        p.add_argument("--pin-file", type=Path, metavar="FILE",
                       help="engineer PIN hash file (default: <config>.pin.json next to the config)"),
        p.add_argument("--set-pin", action="store_true", help="set the engineer PIN on the terminal and exit"),
        p.add_argument("--no-start", action="store_true", help="open the window with the station stopped"),
        p.add_argument("--fullscreen", action="store_true", help="kiosk mode for the line's touch screen"),
    ]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="operator and engineer GUI (PySide6) of the station",
                       description="Open the station GUI: live verdicts, engineer mode behind a PIN, history "
                                   "and CLIP search of the audit log.")
    add_gui_arguments(p)
    p.set_defaults(func=run)


def gui_argv(args: argparse.Namespace) -> list[str]:
    """The parsed options as ``python -m gui`` arguments."""
    argv: list[str] = []
    for action in add_gui_arguments(argparse.ArgumentParser(add_help=False)):
        flag, value = action.option_strings[0], getattr(args, action.dest)
        if action.nargs == 0:  # a switch
            argv += [flag] if value else []
        elif value is not None:
            argv += [flag, str(value)]
    argv += ["-v"] * int(getattr(args, "verbose", 0) or 0)
    return argv


def run(args: argparse.Namespace) -> int:
    proc = subprocess.Popen([sys.executable, "-m", GUI_MODULE, *gui_argv(args)])
    # A service manager's SIGTERM reaches this process only: pass it on, so the GUI stops the station cleanly.
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the GUI too: wait while it drains the station
            return proc.wait()  # a second Ctrl-C leaves it to finish on its own
    finally:
        signal.signal(signal.SIGTERM, previous)
