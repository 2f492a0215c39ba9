"""``inspector history`` / ``python -m gui.viewer``: QA's read-only window on an audit log, without the station.

The History view (filters, paging, export, similar-part search) over one log folder, on any PC: it never
takes the station lock and never writes into the log, except that the folder's index is caught up from
the HDF5 files when no station holds the folder (a folder it may not write is indexed into the user's
cache instead, :func:`inspector.audit.catalog.open_index`). Neither the station nor torch / open_clip is
imported until a search by words needs the CLIP text encoder: then the backbone named by the records
themselves is loaded once, offline, from ``--model-dir`` (or the config's ``model_dir``) and the caches.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

from gui import theme
from gui.views.history import HistoryView
from inspector.audit.browse import Browser
from inspector.cli.history_cmd import add_history_arguments
from inspector.errors import InspectorError, WeightsNotFoundError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_logger = logging.getLogger(__name__)


class LogFolder:
    """The view's source: a log folder and nothing else (no station)."""

    def __init__(self, folder: Path) -> None:
        self.log_dir = Path(folder)


class RecordsBackbone:
    """Text queries by the backbone that wrote the records (their ``model`` field), loaded on first use."""

    def __init__(self, model_dir: Path | None) -> None:
        self.model_dir = model_dir
        self._encoders: dict[str, object] = {}
        self._lock = threading.Lock()

    def unavailable(self, kind: str) -> str | None:
        if kind == "image":
            return ("a search by an image file needs the line's region of interest: run it in the station GUI, "
                    "or pick a logged part and use 'Parts like the selected one'")
        return None

    def ready(self) -> bool:
        return bool(self._encoders)

    def embed(self, query: str | np.ndarray, browser: Browser) -> tuple[np.ndarray, str | None]:
        if not isinstance(query, str):
            raise InspectorError(self.unavailable("image") or "")
        model = browser.newest_model()
        if model is None:
            msg = "no inspected record in this log: nothing to compare a description with"
            raise InspectorError(msg)
        with self._lock:  # one load, however many searches wait for it
            encoder = self._encoders.get(model)
            if encoder is None:
                from inspector.tuning.search import BackboneQuery  # torch and open_clip: only now

                try:
                    encoder = BackboneQuery(model, self.model_dir)
                except WeightsNotFoundError as exc:
                    msg = (f"search by words needs the CLIP weights the records were made with ({model}), "
                           f"and they are not on this PC. {exc}")
                    raise WeightsNotFoundError(msg) from None
                self._encoders[model] = encoder
        return encoder.embed_text(query), model  # type: ignore[attr-defined]


class HistoryWindow(QMainWindow):
    """The History view of one log folder, read-only, with a status line for its messages."""

    def __init__(self, folder: Path, model_dir: Path | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"Inspection history - {folder} (read-only)")
        self.queries = RecordsBackbone(model_dir)
        self.view = HistoryView(LogFolder(folder), self.notify, queries=self.queries, feedback=False,
                                image_search=False)
        self.status = QLabel("")
        self.status.setObjectName("hint")
        self.statusBar().addWidget(self.status, 1)
        self.setCentralWidget(self.view)
        self.last_error: str | None = None

    def notify(self, text: str, level: str = "info") -> None:
        colour = theme.level_colour(level)
        self.status.setStyleSheet(f"color: {colour};")
        self.status.setText(f"{time.strftime('%H:%M:%S')}  {text}")
        if level == "error":
            self.last_error = text

    def closeEvent(self, event) -> None:
        self.view.shutdown()
        super().closeEvent(event)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inspector history", description="Read-only window on an audit log.")
    add_history_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def log_folder(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """(log folder, model dir) from LOG_FOLDER / --config / --model-dir; InspectorError when neither names one."""
    model_dir = args.model_dir
    folder = args.folder
    if args.config is not None:
        from inspector.config import load_station_config

        station = load_station_config(args.config)
        folder = folder if folder is not None else station.resolve(station.log.folder)
        model_dir = model_dir if model_dir is not None else station.resolve(station.model_dir)
    if folder is None:
        msg = "name the log folder (inspector history LOG_FOLDER) or the station config (--config FILE)"
        raise InspectorError(msg)
    if not Path(folder).is_dir():
        msg = f"{folder}: no such log folder (log.folder of the station config, or a copy of it)"
        raise InspectorError(msg)
    return Path(folder), model_dir


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        folder, model_dir = log_folder(args)
    except InspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("CLIP Inspector history")
    theme.apply(app)  # type: ignore[arg-type]
    window = HistoryWindow(folder, model_dir)
    window.resize(1600, 1000)
    window.show()
    window.view.ensure_loaded()
    if args.exit_after_load:  # scripted checks: open, show the first page, print what it says, close
        outcome: list[str] = []
        window.view.loaded.connect(lambda: outcome.append(window.view.summary.text()))
        while not outcome and window.view._worker is not None:
            app.processEvents()
            time.sleep(0.01)
        app.processEvents()
        text = outcome[0] if outcome else window.view.summary.text()
        print(text)
        window.close()
        return 0 if outcome else 1
    pulse = QTimer()  # lets Python see Ctrl-C while Qt's loop runs
    pulse.start(250)
    pulse.timeout.connect(lambda: None)
    import signal

    signal.signal(signal.SIGINT, lambda *_: window.close())
    return int(app.exec())


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
