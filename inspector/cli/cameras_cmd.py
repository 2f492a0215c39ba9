"""`inspector cameras [test]`: the cameras this PC sees, and a test grab with a station's camera settings."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cameras", help="list GenICam (GigE / USB3 Vision) and OpenCV cameras; `cameras test` grabs",
                       description="List every camera the installed GenTL producers (GENICAM_GENTL64_PATH, "
                                   "--cti, the config's camera.genicam.cti, the genicam simulator) and OpenCV see.")
    p.add_argument("--config", type=Path, help="station YAML: also search its camera.genicam.cti producers")
    p.add_argument("--cti", action="append", default=[], metavar="FILE", help="a GenTL producer (.cti) to search")
    p.add_argument("--no-simulator", action="store_true", help="leave out the genicam package's simulated cameras")
    p.add_argument("--no-opencv", action="store_true", help="leave out OpenCV (V4L2 / USB) cameras")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=list_cameras)
    cmds = p.add_subparsers(dest="cameras_command", metavar="ACTION")
    t = cmds.add_parser("test", help="grab N frames with the station's camera settings: fps, exposure, frame ids",
                        description="Open the camera exactly as `inspector run` would (node-map settings, trigger), "
                                    "grab N frames, one trigger each, and report rate, settings and frame-id "
                                    "continuity. Exit 1 when a frame was missing, extra or bad.")
    t.add_argument("--config", type=Path, required=True, help="station YAML (its camera section)")
    t.add_argument("--frames", type=int, default=20, metavar="N", help="frames to grab (default: 20)")
    t.add_argument("--json", action="store_true", help="print JSON instead of text")
    t.set_defaults(func=test_camera)


def list_cameras(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from inspector.station.camtools import genicam_rows, opencv_rows

    cti, resolve = list(args.cti), Path
    if args.config is not None:
        from inspector.config import load_station_config

        station = load_station_config(args.config)
        cti += station.camera.genicam.cti
        resolve = station.resolve
    rows, problems = genicam_rows(cti, resolve, simulator=not args.no_simulator)
    if not args.no_opencv:
        rows += opencv_rows()
    if args.json:
        print(json.dumps({"cameras": [asdict(r) for r in rows], "problems": problems}, indent=2))
        return 0
    console = Console(width=max(Console().width, 120))
    table = Table(title=f"{len(rows)} camera(s)")
    for col in ("kind", "index", "vendor", "model", "serial", "user id", "producer / device", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.kind, str(r.index), r.vendor, r.model, r.serial, r.user_id, Path(r.producer).name, r.note)
    console.print(table)
    for problem in problems:
        console.print(f"[yellow]{problem}")
    if rows:
        console.print("[dim]select a GenICam camera with camera.kind: genicam and camera.genicam.serial "
                      "(docs/cameras.md); check it with `inspector cameras test --config FILE`")
    return 0


def test_camera(args: argparse.Namespace) -> int:
    from inspector.config import load_station_config
    from inspector.station.camtools import trial_grab

    if args.frames < 1:
        print("error: --frames must be at least 1")
        return 2
    station = load_station_config(args.config)
    report = trial_grab(station.camera, station.resolve, args.frames)
    if args.json:
        out = asdict(report) | {"fps": report.fps, "continuous": report.continuous}
        print(json.dumps(out, indent=2, default=str))
        return 0 if report.continuous and report.frames == args.frames else 1
    print(f"camera      {report.label}")
    for name, value in report.features.items():
        print(f"  {name:<22}{value}")
    size = f"{report.size[0]}x{report.size[1]}" if report.size else "-"
    print(f"frames      {report.frames} of {args.frames}, {size} px, {report.fps:.1f} fps")
    if report.grab_ms:
        ms = sorted(report.grab_ms)
        print(f"grab        median {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms (trigger -> frame)")
    if report.frame_ids:
        print(f"frame ids   {report.frame_ids[0]} .. {report.frame_ids[-1]}, "
              + ("continuous" if report.id_gaps == 0 else f"{report.id_gaps} missing"))
    else:
        print("frame ids   none (this source has no camera frame ids)")
    for fault in report.faults:
        print(f"FAULT       {fault}")
    ok = report.continuous and report.frames == args.frames
    print("result      " + ("OK" if ok else "NOT OK: see the faults above (docs/cameras.md)"))
    return 0 if ok else 1
