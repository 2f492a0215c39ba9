"""GUI cost: the station's inspection rate with the operator window open vs headless (``python -m gui.bench``).

    xvfb-run -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/gui_cost.py --model inspector-tiny-vit
    .venv/bin/python benchmarks/gui_cost.py --seconds 20 --rounds 3        # the demo line as it is (ViT-B-16)

Runs ``gui.bench`` (headless and GUI phases alternated in one process, free run above the engine's pace)
on the demo line, optionally with its backbone swapped for a smaller registered architecture (random
weights) so the GUI's share of the CPU is visible at tens of parts per second. The line's few-shot fit
goes to a temporary cache folder, outside the measured phases. Needs a display: Xvfb, or
``QT_QPA_PLATFORM=offscreen`` (paints into memory; cheaper than a real screen).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _reliability import DEMO_CONFIG, ROOT, station_dict, write_yaml  # also puts ROOT on sys.path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=DEMO_CONFIG)
    ap.add_argument("--model", default=None, help="swap the line's backbone (e.g. inspector-tiny-vit)")
    ap.add_argument("--seconds", type=float, default=20.0, help="steady window per phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from gui.bench import main as gui_bench

    with tempfile.TemporaryDirectory(prefix="gui-cost-") as tmp:
        data = station_dict(args.config, args.model)
        data["cache_dir"] = str(Path(tmp) / "cache")
        config = write_yaml(data, Path(tmp) / "station.yaml")
        bench_args = ["--config", str(config), "--seconds", str(args.seconds), "--rounds", str(args.rounds)]
        if args.json:
            bench_args += ["--json", str(args.json.resolve())]
        print(f"{ROOT.name}: gui.bench on {args.config.name} with {args.model or 'its own model'}, "
              f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM', '(default)')}, "
              f"DISPLAY={os.environ.get('DISPLAY', '-')}, load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
        code = gui_bench(bench_args)
        print(f"load avg at the end {os.getloadavg()[0]:.1f}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
