"""GenICam camera path: pixel-format conversion cost per frame, and trigger -> frame on the GenTL simulator.

1. Conversion (inspector.frames.pixels.to_rgb), paid once per frame a part claims, on the capture
   thread: median ms per frame for common formats at 2.3 MP (1920x1200) and 5 MP (2448x2048).
2. The simulator (viky.cti through harvesters, the path of a real camera), free-running at ``--fps``:
   the station's grab for a trigger (Camera.grab: wait for the first frame after the trigger, copy,
   convert, validate), its median and p95, and frame-id continuity. With a free-running camera the
   wait is up to one frame period by design: that is what a hardware trigger removes.

    .venv/bin/python benchmarks/camera.py                    # writes benchmarks/results/camera.md
    .venv/bin/python benchmarks/camera.py --grabs 100 --out -
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.config.camera import CameraSpec  # noqa: E402
from inspector.demo.bench import cpu_name  # noqa: E402
from inspector.frames.pixels import to_rgb  # noqa: E402
from inspector.station.framematch import frame_gap  # noqa: E402
from inspector.station.genicam import GenICamSource  # noqa: E402
from inspector.station.sources import Camera  # noqa: E402

SIZES = {"2.3 MP": (1920, 1200), "5 MP": (2448, 2048)}
FORMATS = {"Mono8": (1, np.uint8), "Mono12": (1, np.uint16), "BayerRG8": (1, np.uint8), "RGB8": (3, np.uint8),
           "RGBa8": (4, np.uint8)}


def bench_conversion(repeats: int) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(0)
    rows = []
    for size_name, (w, h) in SIZES.items():
        for fmt, (channels, dtype) in FORMATS.items():
            top = 4096 if fmt == "Mono12" else 256
            data = rng.integers(0, top, size=w * h * channels, dtype=np.uint32).astype(dtype)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                to_rgb(data, w, h, fmt)
                times.append((time.perf_counter() - t0) * 1000)
            rows.append((size_name, fmt, float(np.median(times))))
        rgb = rng.integers(0, 256, size=w * h * 3, dtype=np.uint8)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.array(rgb, copy=True)
            times.append((time.perf_counter() - t0) * 1000)
        rows.append((size_name, "copy of an RGB8 buffer (reader thread, every frame)", float(np.median(times))))
    return rows


def bench_simulator(grabs: int, fps: float) -> dict[str, float]:
    spec = CameraSpec.model_validate({"kind": "genicam", "fps": fps, "genicam": {
        "cti": ["genicam-simulator"], "serial": "0", "roi": [0, 0, 800, 800], "pixel_format": "RGBa8"}})
    cam = Camera(GenICamSource(spec), spec)
    if not cam.connect():
        raise SystemExit(f"simulator did not open: {cam.last_error}")
    grab_ms, ids = [], []
    try:
        for _ in range(grabs):
            frame = cam.grab(time.perf_counter())
            grab_ms.append(frame.grab_ms)
            ids.append(frame.camera_frame_id)
    finally:
        cam.close()
    gaps = sum(frame_gap(a, b) for a, b in itertools.pairwise(ids))
    return {"median": float(np.median(grab_ms)), "p95": float(np.percentile(grab_ms, 95)),
            "max": float(np.max(grab_ms)), "period": 1000.0 / fps, "id_gaps": gaps, "grabs": grabs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grabs", type=int, default=60)
    ap.add_argument("--fps", type=float, default=50.0)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "camera.md"), help="file, or - for stdout")
    args = ap.parse_args()
    conv = bench_conversion(args.repeats)
    sim = bench_simulator(args.grabs, args.fps)
    lines = [
        "# GenICam camera path",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {cpu_name()}, Python {platform.python_version()}, "
        f"harvesters {version('harvesters')}, genicam {version('genicam')}, numpy {np.__version__}",
        "",
        f"Command: `python benchmarks/camera.py --grabs {args.grabs} --fps {args.fps:g} --repeats {args.repeats}`",
        "",
        "## Pixel-format conversion to RGB (median ms per frame, one thread)",
        "",
        "Paid on the capture thread for the frames parts claim; RGB8 is already RGB (a view, no work). The reader "
        "thread copies every buffer before handing it back to the producer (last row).",
        "",
        "| format | " + " | ".join(SIZES) + " |",
        "|---|" + "---:|" * len(SIZES),
    ]
    for fmt in (*FORMATS, "copy of an RGB8 buffer (reader thread, every frame)"):
        cells = [f"{ms:.2f}" for size, f, ms in conv if f == fmt]
        lines.append(f"| {fmt} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Simulator, free-running at {args.fps:g} fps, 800x800 RGBa8: trigger -> validated frame",
        "",
        f"{sim['grabs']} grabs: median {sim['median']:.1f} ms, p95 {sim['p95']:.1f} ms, max {sim['max']:.1f} ms "
        f"(frame period {sim['period']:.1f} ms); frame-id gaps between grabs: {sim['id_gaps']} "
        "(each grab takes the first frame after its trigger, so gaps are expected when grabs are slower than "
        "the frame rate)",
        "",
    ]
    text = "\n".join(lines)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(text)


if __name__ == "__main__":
    main()
