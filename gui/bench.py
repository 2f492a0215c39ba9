"""Inspection rate with the GUI open vs headless, in one run: ``python -m gui.bench --config FILE``.

The station free-runs as fast as the engine allows (``--rate`` above the engine's speed). Phases
alternate, headless then GUI, ``--rounds`` times, on the same engines and process; each phase counts
parts inspected in its steady window (after ``--settle`` seconds). The GUI phases show the real main
window (painting every part it can) and need a display: Xvfb, or QT_QPA_PLATFORM=offscreen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--line")
    p.add_argument("--seconds", type=float, default=20.0, help="steady window per phase")
    p.add_argument("--settle", type=float, default=3.0, help="seconds skipped after each start")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rate", type=float, default=1000.0, help="free-run rate (above the engine's speed)")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from gui import theme
    from gui.main_window import MainWindow
    from gui.pin import PinStore
    from inspector.station.handle import StationHandle

    app = QApplication.instance() or QApplication(sys.argv[:1])
    theme.apply(app)  # type: ignore[arg-type]
    tmp = Path(tempfile.mkdtemp(prefix="gui-bench-"))
    handle = StationHandle(args.config, line=args.line, log_dir=tmp / "logs", trigger_mode="free_run",
                           rate_hz=args.rate)

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.005)

    def measure(window: MainWindow | None) -> float:
        if window is None:
            handle.start()
        else:
            window.start_station()
            while not handle.running or window.busy:
                pump(0.05)
        pump(args.settle)
        n0, t0 = handle.counts().parts, time.perf_counter()
        pump(args.seconds)
        rate = (handle.counts().parts - n0) / (time.perf_counter() - t0)
        handle.stop()
        pump(0.2)
        return rate

    print(f"loading line {handle.line} ...", file=sys.stderr)
    handle.engines.get(handle.line)  # model load and fit outside the measurement
    headless: list[float] = []
    gui: list[float] = []
    shown = 0
    for r in range(args.rounds):
        headless.append(measure(None))
        window = MainWindow(handle, PinStore(tmp / "pin.json"), autostart=False)
        window.resize(1920, 1080)
        window.show()
        pump(0.5)
        gui.append(measure(window))
        shown += window.feed.shown
        window.shutdown()
        window.close()
        window.deleteLater()
        pump(0.2)
        print(f"round {r + 1}: headless {headless[-1]:.2f} parts/s, GUI {gui[-1]:.2f} parts/s", file=sys.stderr)
    handle.shutdown()
    h, g = statistics.median(headless), statistics.median(gui)
    result = {"config": str(args.config), "line": handle.line, "seconds_per_phase": args.seconds,
              "rounds": args.rounds, "headless_parts_per_s": headless, "gui_parts_per_s": gui,
              "headless_median": h, "gui_median": g, "gui_cost_pct": 100.0 * (h - g) / h if h else None,
              "frames_painted": shown, "qt_platform": app.platformName(), "cpus": os.cpu_count()}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
