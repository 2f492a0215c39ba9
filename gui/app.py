"""``inspector gui`` / ``python -m gui`` / ``inspector-gui``: the operator and engineer GUI of a station."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inspector gui", description="Operator and engineer GUI of the station.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True, help="station YAML (station_configs/*.yaml)")
    p.add_argument("--line", help="product line to start on (default: the config's default line)")
    p.add_argument("--log-dir", type=Path, metavar="DIR", help="audit log folder (default: log.folder)")
    p.add_argument("--trigger", choices=["free_run", "software", "plc"], help="trigger mode (default: trigger.mode)")
    p.add_argument("--rate", type=float, metavar="HZ", help="free-run rate (default: trigger.rate_hz)")
    p.add_argument("--pin-file", type=Path, metavar="FILE",
                   help="engineer PIN hash file (default: <config>.pin.json next to the config)")
    p.add_argument("--set-pin", action="store_true", help="set the engineer PIN on the terminal and exit")
    p.add_argument("--no-start", action="store_true", help="open the window with the station stopped")
    p.add_argument("--fullscreen", action="store_true", help="kiosk mode for the line's touch screen")
    p.add_argument("-v", "--verbose", action="count", default=0)


def _set_pin(store: object) -> int:
    from gui.pin import PinError

    pin = getpass.getpass("new engineer PIN (4-12 digits): ")
    if pin != getpass.getpass("again: "):
        print("error: the two PINs differ", file=sys.stderr)
        return 2
    try:
        store.set_pin(pin)  # type: ignore[attr-defined]
    except PinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"engineer PIN set (scrypt hash in {store.path})")  # type: ignore[attr-defined]
    return 0


def run(args: argparse.Namespace) -> int:
    """Open the window and run the Qt event loop until it closes."""
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    from gui.pin import PinStore, default_pin_path

    store = PinStore(args.pin_file or default_pin_path(args.config))
    if args.set_pin:
        return _set_pin(store)
    from PySide6.QtWidgets import QApplication

    from gui import theme
    from gui.main_window import MainWindow
    from inspector.errors import InspectorError
    from inspector.station.handle import StationHandle

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("CLIP Inspector")
    theme.apply(app)  # type: ignore[arg-type]
    try:
        handle = StationHandle(args.config, line=args.line, log_dir=args.log_dir, trigger_mode=args.trigger,
                               rate_hz=args.rate)
    except (InspectorError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    window = MainWindow(handle, store, autostart=not args.no_start)
    window.resize(1600, 960)
    if args.fullscreen:
        window.showFullScreen()
    else:
        window.show()
    # Ctrl-C and SIGTERM close the window cleanly (the station drains and closes its log).
    signal.signal(signal.SIGINT, lambda *_: window.close())
    signal.signal(signal.SIGTERM, lambda *_: window.close())
    from PySide6.QtCore import QTimer

    pulse = QTimer()
    pulse.start(250)  # lets Python see the signal while Qt's loop runs
    pulse.timeout.connect(lambda: None)
    return int(app.exec())


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
