"""Process start -> first inspected part, per stage, cold (empty caches) and warm (every start after the first).

Each start is a fresh child process running the real station on a line config (default: the demo line,
ViT-B-16) with its synthetic camera, the audit log on and free run; the child reports, in seconds since
its own process was created (from /proc, so interpreter start-up counts): imports done, line loaded
(backbone, compiled-model cache, prompts, fitted state), station started, first part inspected. The first
start runs on an empty cache folder, the following ones reuse it (a warm line start).

    .venv/bin/python benchmarks/startup.py                       # demo line: 1 cold + 2 warm starts
    .venv/bin/python benchmarks/startup.py --backend openvino --warm 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def since_process_start() -> float:
    """Seconds since this process was created (Linux /proc; elsewhere since this module ran)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _T0


_T0 = time.perf_counter()


def child(args: argparse.Namespace) -> None:
    marks = {"interpreter": since_process_start()}
    sys.path.insert(0, str(ROOT))
    import threading

    from inspector.config import TriggerSpec, load_station_config
    from inspector.station.engines import EngineCache
    from inspector.station.loop import StationLoop

    marks["imports"] = since_process_start()
    station = load_station_config(args.config)
    line = station.line(args.line)
    if args.backend:
        line = line.model_copy(update={"model": line.model.model_copy(update={"backend": args.backend})})
        station = station.model_copy(update={"lines": [line if ln.name == line.name else ln for ln in station.lines]})
    station = station.model_copy(update={
        "cache_dir": args.cache_dir, "trigger": TriggerSpec(mode="free_run", rate_hz=20.0),
        "log": station.log.model_copy(update={"enabled": True, "folder": args.log_dir})})
    engines = EngineCache(station)
    engines.get(line.name)
    marks["line_loaded"] = since_process_start()
    first = threading.Event()
    loop = StationLoop(station, line=line.name, engines=engines, log=True, log_dir=args.log_dir, max_parts=1)
    loop.add_sink(lambda _r: first.set(), name="startup")
    loop.start()
    marks["station_started"] = since_process_start()
    first.wait(600)
    marks["first_part"] = since_process_start()
    loop.wait_done(60)
    loop.stop()
    print("STARTUP " + json.dumps(marks), flush=True)


def run_start(args: argparse.Namespace, cache: Path, logs: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", "--config", str(args.config), "--cache-dir", str(cache),
           "--log-dir", str(logs)] + (["--line", args.line] if args.line else []) + (
        ["--backend", args.backend] if args.backend else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("STARTUP "):
            return json.loads(line[len("STARTUP "):])
    msg = f"the start failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    raise RuntimeError(msg)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "station_configs" / "demo.yaml")
    ap.add_argument("--line", default=None)
    ap.add_argument("--backend", default=None, choices=("torch", "openvino", "auto"))
    ap.add_argument("--warm", type=int, default=2, help="warm starts after the cold one")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--log-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    results: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="inspector-startup-") as tmp:
        cache = Path(tmp) / "cache"
        for i in range(1 + args.warm):
            kind = "cold" if i == 0 else "warm"
            marks = run_start(args, cache, Path(tmp) / f"logs-{i}")
            results[kind].append(marks)
            print(f"{kind}: " + ", ".join(f"{k} {v:.2f} s" for k, v in marks.items())
                  + f" | load {os.getloadavg()[0]:.1f}", flush=True)
    warm = [m["first_part"] for m in results["warm"]]
    if warm:
        print(f"warm start -> first inspected part: median {statistics.median(warm):.2f} s {warm}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
