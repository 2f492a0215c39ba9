"""Screenshots of the GUI for docs/screenshots/, from a real window on the demo line.

Run under a display (a real one, or Xvfb on a headless box):

    xvfb-run -s "-screen 0 1920x1080x24" .venv/bin/python scripts/take_screenshots.py

It starts the station on station_configs/demo.yaml (audit log, PIN and trained versions in a temporary
folder: nothing in the repository changes), waits for live parts, logs in as engineer, runs a short
retrain, and grabs each screen at 1920x1080 with QWidget.grab().
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "station_configs" / "demo.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--parts", type=int, default=12, help="live parts before the first screenshot")
    parser.add_argument("--rate", type=float, default=3.0, help="free-run rate of the demo camera (Hz)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the retrain shown (the demo is slow on CPU)")
    parser.add_argument("--ng-wait", type=float, default=600.0,
                        help="seconds to wait for an NG part to show (random weights make NG parts rare)")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from gui import theme
    from gui.main_window import MainWindow
    from gui.pin import PinStore
    from inspector.station.handle import StationHandle

    app = QApplication(sys.argv[:1])
    theme.apply(app)
    tmp = Path(tempfile.mkdtemp(prefix="inspector-shots-"))
    pins = PinStore(tmp / "pin.json")
    pins.set_pin("2468")
    handle = StationHandle(args.config, log_dir=tmp / "logs", rate_hz=args.rate, registry_dir=tmp / "models")
    window = MainWindow(handle, pins, confirm_changeover=False)
    w, h = (int(v) for v in args.size.split("x"))
    window.resize(w, h)
    window.show()
    args.out.mkdir(parents=True, exist_ok=True)

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            pump(0.1)

    def shot(name: str) -> None:
        pump(0.5)
        path = args.out / f"{name}.png"
        window.grab().save(str(path))
        print(f"wrote {path}")

    try:
        wait(lambda: handle.running and not window.busy, 600, "the station to start")
        wait(lambda: window.feed.pushed >= args.parts, 900, "live parts")
        # Hold the display on an NG part: that is the screen an operator must read at a glance.
        try:
            wait(lambda: window.operator.last_item is not None and window.operator.last_item.verdict == "NG",
                 args.ng_wait, "an NG part")
        except TimeoutError as exc:
            print(f"note: {exc}; taking the operator screen as it is")
        window.feed.updated.disconnect(window._on_feed)
        pump(1.0)
        shot("operator")
        window.feed.updated.connect(window._on_feed)

        window.show_screen(1)
        shot("engineer_locked")
        from gui.widgets.pin_dialog import LoginDialog

        dialog = LoginDialog(window.session.check, "Dana", window)
        dialog.show()
        dialog.pin.setText("12")
        dialog._say("Wrong PIN. 4 attempt(s) left before a lockout.", theme.FAULT)
        pump(0.5)
        dialog.grab().save(str(args.out / "engineer_login.png"))
        print(f"wrote {args.out / 'engineer_login.png'}")
        dialog.close()
        assert window.session.check("Dana", "2468").ok
        eng = window.engineer
        prompts = eng.prompts
        wait(lambda: prompts.preview is not None and prompts._worker is None, 300, "the prompt preview")
        prompts.defects.item(0, 1).setText("a long bright scratch across the ring surface")
        prompts._debounce.stop()
        prompts.run_preview()
        wait(lambda: prompts._worker is None and prompts.preview is not None
             and prompts.preview.frame is not None and abs(prompts.preview.frame.after - prompts.preview.frame.before)
             > 0, 300, "the edited preview")
        shot("engineer_prompts")

        eng.tabs.setCurrentWidget(eng.threshold)
        eng.threshold.slider.setValue(int(eng.threshold.slider.value() * 0.92))
        shot("engineer_threshold")

        eng.tabs.setCurrentWidget(eng.samples)
        eng.samples.refresh_frame()
        shot("engineer_samples")

        eng.tabs.setCurrentWidget(eng.retrain)
        eng.retrain.epochs.setValue(args.epochs)
        eng.retrain.start()
        # Mid-run: progress, live losses and AUROC per head; then the finished candidate.
        wait(lambda: not eng.retrain.running or sum(e.stage == "train" for e in eng.retrain.events) >= 12, 1200,
             "training epochs")
        shot("engineer_retrain")
        wait(lambda: not eng.retrain.running, 1800, "the end of the retrain")
        shot("engineer_models")
        # The approval side-by-side of the candidate (live thresholds, held-out figures, confusion counts).
        candidate = next((r for r in eng.retrain.rows if r.status == "candidate"), None)
        if candidate is not None:
            from gui.widgets.approval import ApprovalDialog

            approve = ApprovalDialog(*eng.retrain.approve_text(candidate), parent=window)
            approve.reason.setText("fewer escapes on the new scratches")
            approve.show()
            pump(0.5)
            approve.grab().save(str(args.out / "engineer_approve.png"))
            print(f"wrote {args.out / 'engineer_approve.png'}")
            approve.close()

        window.show_screen(2)
        wait(lambda: window.history._loaded and window.history._worker is None, 120, "the history")
        hist = window.history
        hist.verdict.setCurrentText("NG")
        hist.table.selectRow(0)
        shot("history")
        hist.verdict.setCurrentText("(all)")
        hist.query.setText("a scratch on the ring surface")
        hist.search_text()
        wait(lambda: hist._worker is None and hist.search_result is not None, 120, "the CLIP search")
        hist.table.selectRow(0)
        shot("history_search")
    finally:
        window.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
