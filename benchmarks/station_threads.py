"""The station's backbone slowdown before / after the thread-ownership fixes, alternated in one run.

Each round runs ``inspector bench --station`` twice in child processes (the OpenMP wait policy is read
once per process): "before" with ``OMP_WAIT_POLICY=ACTIVE`` (spinning OpenMP workers, libgomp's own
behaviour before this fix) and ``INSPECTOR_BACKGROUND_NICE=0`` (capture and log threads at the inspect
thread's priority); "after" with the station's defaults (passive workers, background threads niced).
Alternating the two puts background load on both alike; each reports ``station_backbone_ratio``.

    .venv/bin/python benchmarks/station_threads.py                          # demo line (ViT-B-16), 2 rounds
    .venv/bin/python benchmarks/station_threads.py --rounds 1 --parts 10 --backend openvino
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "before": {"OMP_WAIT_POLICY": "ACTIVE", "INSPECTOR_BACKGROUND_NICE": "0"},
    "after": {"OMP_WAIT_POLICY": "PASSIVE", "INSPECTOR_BACKGROUND_NICE": "5"},
}


def run_one(mode: str, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, **MODES[mode], "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", "import sys; from inspector.cli import main; sys.exit(main(sys.argv[1:]))",
           "bench", "--station", "--config", str(args.config), "--parts", str(args.parts), "--warmup", "2",
           "--json", str(out)]
    if args.backend:
        cmd += ["--backend", args.backend]
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "station_configs" / "demo.yaml")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--backend", default=None, choices=("torch", "openvino", "auto"))
    ap.add_argument("--json", type=Path, default=None, help="also write every run's figures here")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in MODES:
                result = run_one(mode, args, Path(tmp) / f"{mode}-{r}.json")
                runs[mode].append(result)
                print(f"round {r + 1} {mode:6s}: ratio {result['station_backbone_ratio']:.3f} "
                      f"(station {result['station_backbone_p50_ms']:.0f} ms / bare {result['backbone_p50_ms']:.0f} ms)"
                      f", {result['parts_per_s']:.2f} parts/s, load {result['load_avg'][0]:.1f}", flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    for mode, results in runs.items():
        ratios = [x["station_backbone_ratio"] for x in results]
        rates = [x["parts_per_s"] for x in results]
        print(f"{mode:6s}: station_backbone_ratio median {statistics.median(ratios):.3f} {ratios}, "
              f"parts/s median {statistics.median(rates):.2f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
