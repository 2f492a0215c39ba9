"""``inspector gui`` / ``python -m gui``: the operator and engineer GUI of a station."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from collections.abc import Sequence

from inspector.cli.gui_cmd import add_gui_arguments

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """``python -m gui``'s parser: the options ``inspector gui`` declares, plus ``-v``."""
    p = argparse.ArgumentParser(prog="inspector gui", description="Operator and engineer GUI of the station.")
    add_gui_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


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
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
    # Fit the panel it opens on (1280 x 800 up to 1920 x 1080): a window larger than the screen hides controls.
    screen = app.primaryScreen()
    avail = screen.availableGeometry() if screen is not None else None
    if args.fullscreen:
        window.showFullScreen()
    elif avail is not None and (avail.width() <= 1920 or avail.height() <= 1080):
        window.resize(min(1600, avail.width()), min(1000, avail.height()))
        window.showMaximized()
    else:
        window.resize(1600, 1000)
        window.show()
    # Ctrl-C and SIGTERM (a service manager's stop) close the window cleanly: the station drains and seals its log.
    def stop_on_signal(signum: int, _frame: object) -> None:
        _logger.warning("%s: stopping the station and closing the audit log", signal.Signals(signum).name)
        window.close()

    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    from PySide6.QtCore import QTimer

    pulse = QTimer()
    pulse.start(250)  # lets Python see the signal while Qt's loop runs
    pulse.timeout.connect(lambda: None)
    code = int(app.exec())
    window.shutdown()  # idempotent: closeEvent already did it unless the loop ended another way
    _logger.warning("station stopped, audit log closed")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
