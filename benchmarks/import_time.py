"""Import time of the station's entry points: each target imported by a fresh Python process, wall time.

    .venv/bin/python benchmarks/import_time.py --rounds 3

Each measurement is one child process ``python -c "import <modules>"`` from spawn to exit (interpreter
start-up included, no work after the imports), the targets alternated round by round so that background
load hits them alike. ``python -c pass`` is the interpreter's own floor. The station's whole start-up
(imports, line load, first part) is ``benchmarks/startup.py``; this isolates the import share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "interpreter only": "pass",
    "inspector.cli (the CLI entry point)": "import inspector.cli",
    "torch": "import torch",
    "open_clip (torch included)": "import open_clip",
    "station: inspector.station.loop + inspector.cli": "import inspector.station.loop, inspector.cli",
}


def time_import(code: str) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in TARGETS}
    loads = [os.getloadavg()[0]]
    time_import("import torch, open_clip")  # warm the page cache once, outside the figures
    for _ in range(args.rounds):
        for name, code in TARGETS.items():
            times[name].append(time_import(code))
        loads.append(os.getloadavg()[0])
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {args.rounds} rounds, "
          f"1-min load average {min(loads):.1f}-{max(loads):.1f}")
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})")
    if args.json:
        args.json.write_text(json.dumps({"times_s": times, "load_avg": loads}, indent=2) + "\n")
    return times


if __name__ == "__main__":
    main()
