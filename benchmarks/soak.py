"""Soak: the whole station for many parts, and what the PLC was told checked against the audit log.

The station is the real one: :class:`StationLoop` on a line config (default: the demo line) with
its synthetic camera, the real ASCII PLC server on one end of a pseudo-terminal null-modem pair,
the real HDF5 audit log. The PLC is :class:`inspector.plc.sim.AsciiPlcSimulator` in a child
process (so this process's memory and descriptors are the station's alone), triggering at a fixed
rate, pipelined like a conveyor, one window of parts per child. After the run every verdict the PLC
received is matched with the audit log by part id: lost, unmatched and OK-without-inspection
verdicts must be 0. Between windows the script samples RSS, open file descriptors and threads,
and reports the trigger -> result latency per window, so drift shows.

    .venv/bin/python benchmarks/soak.py --model inspector-tiny-vit                 # full mode: 10,000 parts
    .venv/bin/python benchmarks/soak.py --model inspector-tiny-vit --parts 500 --window 100 --out-dir DIR  # CI

``--model`` swaps the line's backbone (the demo's random ViT-B-16 runs ~1 part/s on a 2-core CPU,
so 10,000 parts would take hours): the soak tests the station's plumbing, not the backbone.
Writes ``soak.md`` and ``soak.json`` to ``--out-dir`` (default benchmarks/results); exit 1 when a
check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _reliability import (
    DEMO_CONFIG,
    ROOT,
    PartTrace,
    command_line,
    cpu_name,
    describe_model,
    percentiles,
    process_figures,
    read_audit,
    reconcile,
    station_dict,
)

RSS_GROWTH_LIMIT_PCT = 5.0


# ------------------------------------------------------------------------------------------------ PLC child


def plc_child(argv: list[str]) -> int:
    """``soak.py --plc-sim PORT ...``: one window of parts from the PLC simulator, traces as JSON on stdout."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--plc-sim", required=True)
    ap.add_argument("--parts", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--deadline-ms", type=float, required=True)
    args = ap.parse_args(argv)
    from inspector.plc.sim import AsciiPlcSimulator

    report = AsciiPlcSimulator(args.plc_sim, deadline_ms=args.deadline_ms).run(args.parts, args.rate, args.prefix)
    parts = [asdict(p) for p in report.parts]
    json.dump({"mismatches": report.mismatches, "notes": report.notes, "elapsed_s": report.elapsed_s,
               "parts": parts}, sys.stdout)
    return 0


def run_window(port: str, n: int, rate: float, prefix: str, deadline_ms: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--plc-sim", port, "--parts", str(n), "--rate", str(rate), "--prefix", prefix,
           "--deadline-ms", str(deadline_ms)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + 3 * n / rate, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"PLC simulator failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    out["parts"] = [PartTrace(**row) for row in out["parts"]]
    return out


# ------------------------------------------------------------------------------------------------ soak


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from inspector.config import parse_station_config
    from inspector.plc.base import LinkState
    from inspector.plc.factory import create_plc_link
    from inspector.plc.ptypair import VirtualNullModem
    from inspector.station.loop import StationLoop

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    log_dir = Path(args.log_dir) if args.log_dir else work / "logs"
    data = station_dict(Path(args.config), args.model, args.image_size)
    data.setdefault("trigger", {})["mode"] = "plc"
    data.setdefault("log", {})["folder"] = str(log_dir)
    modem = VirtualNullModem(work / "station", work / "plc").start()
    data["plc"] = {**(data.get("plc") or {}), "protocol": "ascii", "port": str(modem.a.path),
                   "result_timeout_ms": args.deadline_ms}
    station = parse_station_config(data)
    figures: list[dict[str, Any]] = []
    windows: list[dict[str, Any]] = []
    parts: list[PartTrace] = []
    sim_mismatches: list[str] = []
    t_load = time.perf_counter()
    loop = StationLoop(station, trigger_mode="plc").start()
    load_s = time.perf_counter() - t_load
    link = create_plc_link(station.plc, loop)  # type: ignore[arg-type]
    progress = _progress(args.parts)
    t0 = time.perf_counter()
    try:
        link.start()
        if not link.wait_for_state(LinkState.CONNECTED, timeout=10):
            raise SystemExit(f"PLC link did not come up: {link.detail}")
        figures.append({"after_parts": 0, "elapsed_s": 0.0, **process_figures()})
        n_windows = math.ceil(args.parts / args.window)
        for k in range(n_windows):
            n = min(args.window, args.parts - k * args.window)
            out = run_window(str(modem.b.path), n, args.rate, f"W{k + 1:03d}P", args.deadline_ms + 500)
            parts += out["parts"]
            sim_mismatches += out["mismatches"]
            lat = percentiles(p.latency_ms for p in out["parts"])
            stats = loop.stats()
            windows.append({"window": k + 1, "parts": n, "first": k * args.window + 1, "last": k * args.window + n,
                            "latency_ms": lat, "answered": sum(p.result_at is not None for p in out["parts"]),
                            "sim_mismatches": len(out["mismatches"]),
                            "log_write_ms_p50": round(stats.log.write_ms_p50, 2),
                            "log_backlog": next((s.queued for s in stats.sinks if s.name == "audit"), 0)})
            figures.append({"after_parts": k * args.window + n, "elapsed_s": round(time.perf_counter() - t0, 1),
                            **process_figures()})
            progress(n, f"window {k + 1}/{n_windows}: p50 {lat.get('p50', math.nan):.1f} ms, p99 "
                        f"{lat.get('p99', math.nan):.1f} ms, RSS {figures[-1]['rss_mb']:.0f} MiB, "
                        f"fds {figures[-1]['fds']}")
        loop.wait_published(len(parts), timeout=60)
        stats = loop.stats()
    finally:
        link.stop()
        loop.stop()
        modem.stop()
    elapsed = time.perf_counter() - t0
    counters = link.counters.as_dict()
    log = read_audit(log_dir)
    rec = reconcile(parts, log)
    return {"station": station, "data": data, "load_s": load_s, "elapsed_s": elapsed, "figures": figures,
            "windows": windows, "parts": parts, "sim_mismatches": sim_mismatches, "stats": stats,
            "counters": counters, "log": log, "reconciliation": rec, "log_dir": log_dir}


def _progress(total: int):
    bar = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="part", desc="soak")
        except ImportError:
            bar = None

    def update(n: int, text: str) -> None:
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(text.split(": ", 1)[-1])
        else:
            print(text, file=sys.stderr, flush=True)

    return update


# ------------------------------------------------------------------------------------------------ report


def judge(run: dict[str, Any]) -> dict[str, Any]:
    rec = run["reconciliation"]
    figures = run["figures"]
    warm = figures[1] if len(figures) > 1 else figures[0]
    end = figures[-1]
    growth_warm = 100 * (end["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"]
    growth_start = 100 * (end["rss_mb"] - figures[0]["rss_mb"]) / figures[0]["rss_mb"]
    log = run["log"]
    stats = run["stats"]
    logged_seqs = sorted(log.by_seq)
    seq_holes = (logged_seqs[-1] - logged_seqs[0] + 1 - len(logged_seqs)) if logged_seqs else 0
    checks = {
        "every trigger acknowledged and answered": rec.acked == rec.triggered == rec.answered,
        "lost verdicts = 0": not rec.lost and not rec.no_result,
        "unmatched verdicts = 0": not rec.unmatched,
        "OK without inspection = 0": not rec.ok_without_inspection,
        "refused / timed-out triggers = 0": rec.refused == 0 and rec.timeouts == 0,
        "simulator protocol checks clean": not run["sim_mismatches"],
        "log complete (no drops, no log_gap, no seq holes)": (not stats.drops and not log.events_of("log_gap")
                                                              and seq_holes == 0 and rec.logged == rec.triggered),
        f"RSS growth < {RSS_GROWTH_LIMIT_PCT:g} % (after the first window -> end)": growth_warm < RSS_GROWTH_LIMIT_PCT,
        "open file descriptors stable": end["fds"] <= warm["fds"],
    }
    return {"checks": checks, "passed": all(checks.values()), "rss_growth_pct_from_warm": round(growth_warm, 2),
            "rss_growth_pct_from_start": round(growth_start, 2), "seq_holes": seq_holes}


def to_json(args: argparse.Namespace, run: dict[str, Any], verdict: dict[str, Any]) -> dict[str, Any]:
    stats = run["stats"]
    parts = run["parts"]
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
                    "python": platform.python_version(), "load_avg_1m_end": round(os.getloadavg()[0], 2)},
        "config": str(args.config),
        "model": describe_model(run["data"]),
        "parts": args.parts,
        "window": args.window,
        "rate_hz": args.rate,
        "result_timeout_ms": args.deadline_ms,
        "line_load_s": round(run["load_s"], 1),
        "elapsed_s": round(run["elapsed_s"], 1),
        "passed": verdict["passed"],
        "checks": verdict["checks"],
        "reconciliation": run["reconciliation"].summary(),
        "sim_mismatches": run["sim_mismatches"][:20],
        "latency_ms": percentiles(p.latency_ms for p in parts),
        "windows": run["windows"],
        "process": run["figures"],
        "rss_growth_pct_from_warm": verdict["rss_growth_pct_from_warm"],
        "rss_growth_pct_from_start": verdict["rss_growth_pct_from_start"],
        "station": {"parts": stats.parts, "ok": stats.ok, "ng": stats.ng, "faults": stats.faults,
                    "drops": stats.drops, "rejected": stats.rejected, "log_published": stats.log.published,
                    "log_failed": stats.log.failed, "log_files": [Path(f).name for f in stats.log.files],
                    "log_write_ms_p50": round(stats.log.write_ms_p50, 2),
                    "log_write_ms_p95": round(stats.log.write_ms_p95, 2)},
        "plc_link": run["counters"],
        "log": {"files": run["log"].files, "records": len(run["log"].records),
                "events": {k: len(run["log"].events_of(k)) for k in sorted({e["kind"] for e in run["log"].events})},
                "bytes": sum(p.stat().st_size for p in Path(run["log_dir"]).glob("*.h5")),
                "seq_holes": verdict["seq_holes"]},
    }


def to_markdown(res: dict[str, Any]) -> str:
    rec = res["reconciliation"]
    procs = res["process"]
    lat = res["latency_ms"]
    lines = [
        "# Soak (benchmarks/soak.py)",
        "",
        f"- date: {res['date']}",
        f"- command: `{res['command']}`",
        f"- machine: {res['machine']['cpu']}, {res['machine']['cores']} CPU cores, {res['machine']['system']}, "
        f"Python {res['machine']['python']}; 1-min load average at the end {res['machine']['load_avg_1m_end']}",
        f"- station: `{Path(res['config']).name}` line config with the backbone {res['model']}; PLC trigger over a "
        f"pseudo-terminal null-modem pair (AsciiPlcSimulator in a child process, {res['rate_hz']:g} parts/s "
        f"pipelined, result deadline {res['result_timeout_ms']} ms); HDF5 audit log with the config's log settings",
        f"- {res['parts']} parts in {res['elapsed_s']:.0f} s (line load {res['line_load_s']:.1f} s); result: "
        f"**{'PASS' if res['passed'] else 'FAIL'}**",
        "",
        "## Verdicts: PLC against the audit log",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| triggers sent / acknowledged / answered | {rec['triggered']} / {rec['acked']} / {rec['answered']} |",
        f"| records in the audit log | {rec['logged']} |",
        f"| **lost** (acknowledged, not in the log, or no result) | {rec['lost'] + rec['no_result']} |",
        f"| **unmatched** (verdict / score / defect differ, logged twice, logged but never triggered) | "
        f"{rec['unmatched']} |",
        f"| **OK without inspection** | {rec['ok_without_inspection']} |",
        f"| refused (E04 / E05) / timed out (NG/TIMEOUT) | {rec['refused']} / {rec['timeouts']} |",
        f"| NG/FAULT answers (parts not inspected) | {rec['fault_answers']} |",
        f"| simulator protocol violations | {len(res['sim_mismatches'])} |",
        f"| log drops / log_gap events / seq holes | {sum(res['station']['drops'].values())} / "
        f"{res['log']['events'].get('log_gap', 0)} / {res['log']['seq_holes']} |",
        "",
        "## Process",
        "",
        f"RSS {procs[0]['rss_mb']:.0f} MiB after start, {procs[1]['rss_mb'] if len(procs) > 1 else math.nan:.0f} "
        f"MiB after the first window, {procs[-1]['rss_mb']:.0f} MiB at the end: "
        f"**{res['rss_growth_pct_from_warm']:+.2f} %** from the first window (limit {RSS_GROWTH_LIMIT_PCT:g} %), "
        f"{res['rss_growth_pct_from_start']:+.2f} % from start. Open descriptors {procs[0]['fds']} -> "
        f"{procs[-1]['fds']}, threads {procs[0]['threads']} -> {procs[-1]['threads']}.",
        "",
        "## Trigger -> result latency over time (as the PLC sees it)",
        "",
        f"All parts: p50 {lat.get('p50', math.nan):.1f} ms, p95 {lat.get('p95', math.nan):.1f} ms, p99 "
        f"{lat.get('p99', math.nan):.1f} ms, max {lat.get('max', math.nan):.1f} ms.",
        "",
        "| parts | p50 ms | p95 ms | p99 ms | max ms | log write p50 ms | RSS MiB | fds | threads |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for w, p in zip(res["windows"], procs[1:]):
        lw = w["latency_ms"]
        lines.append(f"| {w['first']}-{w['last']} | {lw.get('p50', math.nan):.1f} | {lw.get('p95', math.nan):.1f} | "
                     f"{lw.get('p99', math.nan):.1f} | {lw.get('max', math.nan):.1f} | {w['log_write_ms_p50']:.2f} | "
                     f"{p['rss_mb']:.0f} | {p['fds']} | {p['threads']} |")
    st = res["station"]
    lines += [
        "",
        f"Station: {st['parts']} parts, {st['ok']} OK, {st['ng']} NG, {st['faults']} FAULT (random weights: the "
        f"verdicts mean nothing); audit log {res['log']['records']} records in {len(res['log']['files'])} file(s), "
        f"{res['log']['bytes'] / 2**20:.1f} MiB, write p50 {st['log_write_ms_p50']} ms / p95 "
        f"{st['log_write_ms_p95']} ms per record; PLC link {res['plc_link']}.",
        "",
        "## Checks",
        "",
    ]
    lines += [f"- [{'x' if ok else ' '}] {name}" for name, ok in res["checks"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--plc-sim" in argv:
        return plc_child(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=DEMO_CONFIG, help="station config (default: the demo line)")
    ap.add_argument("--model", default=None,
                    help="open_clip architecture replacing the line's backbone, random weights (e.g. "
                         "inspector-tiny-vit); default: the config's own model")
    ap.add_argument("--image-size", type=int, default=None, help="input size with --model (default: the model's own)")
    ap.add_argument("--parts", type=int, default=10_000, help="parts in all (default 10000)")
    ap.add_argument("--window", type=int, default=1000, help="parts per PLC simulator run / figure window")
    ap.add_argument("--rate", type=float, default=15.0, help="PLC trigger rate, parts/s (below the station's rate)")
    ap.add_argument("--deadline-ms", type=int, default=2000, help="plc.result_timeout_ms (default 2000)")
    ap.add_argument("--log-dir", default=None, help="audit log folder (default: a temporary folder, deleted)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results",
                    help="where soak.md and soak.json go ('-': print only)")
    args = ap.parse_args(argv)
    if args.parts < 1 or args.window < 1 or args.rate <= 0:
        ap.error("--parts, --window and --rate must be positive")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        run = soak(args, Path(tmp))
        verdict = judge(run)
        res = to_json(args, run, verdict)
    text = to_markdown(res)
    print(text)
    if str(args.out_dir) != "-":
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "soak.md").write_text(text, encoding="utf-8")
        (args.out_dir / "soak.json").write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"written to {args.out_dir / 'soak.md'} and soak.json", file=sys.stderr)
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
