"""The audit history at plant scale: queries, similar-part search and the GUI's History view at N records.

    python benchmarks/history_scale.py --records 1000000 --workdir /tmp/hist --json history_scale.json

Synthesises N realistic records (1 part/s ending now, 2 lines, 6 % NG in three defect classes, 0.2 % FAULT,
512-wide CLIP-like embeddings in clusters, 32 px heatmaps, a 3 kB JPEG thumbnail, a full frame for no part)
through the real writer (HDF5 + index, daily files), then measures in a fresh process:

- ``query_part_ms_p50``: one part id (random, 50 lookups);
- ``query_ng_last_hour_ms_p50``: every NG of the last hour;
- ``similar_search_ms_p50``: top 50 by a query embedding (a stored part's, perturbed), 20 searches;
- ``gui_history_open_s``: QA's History viewer (``inspector history``, :mod:`gui.viewer`, offscreen Qt) from
  its first reload to its first page painted, in the measuring process, which imports neither the station
  nor torch / open_clip (checked: ``gui_heavy_modules`` must be empty; ``gui_process`` says which GUI);
- ``peak_rss_mb``: that process's peak resident memory (queries, searches and the viewer): of it,
  ``gui_imports_rss_mb`` is the process after importing the viewer, before any history is read,
  ``queries_peak_rss_mb`` the peak of the queries and searches alone (before the GUI import) and
  ``gui_history_added_rss_mb`` what the open History view added; the writer's peak is ``write_peak_rss_mb``;
- ``station_gui_*``: the same History view inside the station GUI's process, measured in a third process
  that imports the station GUI (``gui.main_window``: the station, torch, open_clip) first:
  ``station_gui_imports_rss_mb`` (its baseline), ``station_gui_history_added_rss_mb`` (what the view adds
  there), ``station_gui_history_open_s`` and ``station_gui_peak_rss_mb``.

``--workdir`` keeps the synthesised log: a second run with the same N skips the writing (``--rewrite`` forces it).
Done-when of issue #18 at 1,000,000 records: part <= 50 ms, NG last hour <= 200 ms, search <= 500 ms,
GUI <= 3 s, peak RSS <= 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

DIM = 512
BATCH = 500


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write(folder: Path, n: int) -> dict:
    import cv2

    from inspector.audit.h5log import AuditWriter
    from inspector.audit.media import encode_thumbnail
    from inspector.audit.records import AuditRecord
    from inspector.config.log import LogSpec

    rng = np.random.default_rng(18)
    centres = rng.standard_normal((64, DIM)).astype(np.float32)
    thumb = encode_thumbnail(cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (5, 5), 0), 160)
    heat = rng.random((32, 32)).astype(np.float16)
    t_end = time.time_ns()
    t0 = time.perf_counter()
    spec = LogSpec(rotate="daily", heatmap_px=32, fsync_interval_s=None, min_free_mb=50, queue_size=1000)
    with AuditWriter(folder, spec, station="bench", embedding_dim=DIM) as writer:
        for start in range(0, n, BATCH):
            batch = []
            size = min(BATCH, n - start)
            roll = rng.random(size)
            emb = centres[rng.integers(0, 64, size)] + 0.7 * rng.standard_normal((size, DIM)).astype(np.float32)
            for k in range(size):
                i = start + k
                fault = roll[k] < 0.002
                ng = not fault and roll[k] < 0.062
                defect = "FAULT" if fault else (("scratch", "dent", "stain")[i % 3] if ng else None)
                batch.append(AuditRecord(
                    seq=i + 1, time_ns=t_end - (n - i) * 10**9, part_id=f"B{i:09d}", line=("ring", "disc")[i % 2],
                    verdict="NG" if ng or fault else "OK", score=float(roll[k]), threshold=0.5, defect=defect,
                    fault="camera timeout" if fault else None, trigger="plc", model="ViT-B-16/laion2b",
                    model_version="v3", embedding=None if fault else emb[k], heatmap=None if fault else heat,
                    thumbnail_jpeg=thumb, roi=(0, 0, 160, 120), stage_ms={"total": 80.0}))
            writer.write(batch)
    secs = time.perf_counter() - t0
    return {"write_s": round(secs, 1), "write_records_per_s": round(n / secs), "write_peak_rss_mb": round(_rss_mb()),
            "log_mb": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6)}


def measure(folder: Path) -> dict:
    from inspector.audit.index import LogIndex, Query

    out: dict = {"rss_before_mb": round(_vm_rss_mb())}
    index = LogIndex(folder, readonly=True)
    n = index.total()
    rng = np.random.default_rng(7)
    ids = [f"B{i:09d}" for i in rng.integers(0, n, 50)]
    times = []
    for part in ids:
        t = time.perf_counter()
        rows = index.query(Query(part_id=part))
        times.append(time.perf_counter() - t)
        assert len(rows) == 1, part
    out["query_part_ms_p50"] = round(float(np.median(times)) * 1e3, 2)
    newest = index.query(Query(), limit=1)[0]["time_ns"]
    times = []
    for _ in range(20):
        t = time.perf_counter()
        rows = index.query(Query(status="NG", start_ns=newest - 3600 * 10**9))
        times.append(time.perf_counter() - t)
    out["query_ng_last_hour_ms_p50"] = round(float(np.median(times)) * 1e3, 2)
    out["ng_last_hour_rows"] = len(rows)
    from inspector.audit.reader import AuditReader

    times = []
    for rec in index.query(Query(status="OK"), limit=20 * 997)[::997]:
        with AuditReader(folder / rec["file"]) as reader:
            vec = reader.embeddings(rec["row"], rec["row"] + 1)[0].astype(np.float32)
        query = vec + 0.2 * rng.standard_normal(DIM).astype(np.float32)
        t = time.perf_counter()
        found = index.similar(query, 50, model="ViT-B-16/laion2b")
        times.append(time.perf_counter() - t)
        assert found and found[0][0] == rec["id"], "the perturbed part must rank first"
    out["similar_search_ms_p50"] = round(float(np.median(times)) * 1e3, 1)
    index.close()
    out["queries_peak_rss_mb"] = round(_rss_mb())  # index + search alone, before any GUI import
    out.update(gui_open(folder))
    out["peak_rss_mb"] = round(_rss_mb())  # the whole process: queries, searches and the viewer
    out["records"] = n
    return out


def _open_view(app, view) -> float:
    """Seconds from the view's reload to its first page painted (offscreen)."""
    done: list[float] = []
    view.loaded.connect(lambda: done.append(time.perf_counter()))
    t0 = time.perf_counter()
    view.reload()
    while not done and time.perf_counter() - t0 < 300:
        app.processEvents()
        time.sleep(0.002)
    view.table.viewport().repaint()  # the first page painted
    app.processEvents()
    secs = time.perf_counter() - t0
    assert view.model.rowCount() > 0, view.summary.text()
    return secs


def gui_open(folder: Path) -> dict:
    """The stand-alone viewer (what ``inspector history`` runs) in this process: no station, no torch."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from gui.viewer import HistoryWindow

    app = QApplication.instance() or QApplication([])
    imported = _vm_rss_mb()
    window = HistoryWindow(folder)
    window.resize(1600, 900)
    window.show()
    secs = _open_view(app, window.view)
    opened = _vm_rss_mb()
    heavy = sorted(m for m in ("torch", "open_clip") if m in sys.modules)
    assert not heavy, f"the viewer imported {heavy}: its figures would not be the viewer's"
    window.close()
    return {"gui_process": "inspector history", "gui_history_open_s": round(secs, 2),
            "gui_imports_rss_mb": round(imported), "gui_history_added_rss_mb": round(opened - imported),
            "gui_heavy_modules": heavy}


def station_gui_open(folder: Path) -> dict:
    """The History view inside the station GUI's process (the station, torch and open_clip imported first)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    import gui.main_window  # noqa: F401  (the station GUI's imports: the station, torch, open_clip)
    from gui.views.history import HistoryView

    class Handle:  # what the History view reads of a StationHandle (the line never started)
        log_dir = folder
        inspector = None

    app = QApplication.instance() or QApplication([])
    imported = _vm_rss_mb()
    view = HistoryView(Handle(), lambda *_: None)  # type: ignore[arg-type]
    view.resize(1600, 900)
    view.show()
    secs = _open_view(app, view)
    opened = _vm_rss_mb()
    view.shutdown()
    return {"station_gui_history_open_s": round(secs, 2), "station_gui_imports_rss_mb": round(imported),
            "station_gui_history_added_rss_mb": round(opened - imported), "station_gui_peak_rss_mb": round(_rss_mb())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rewrite", action="store_true", help="write the log again even if --workdir holds it")
    ap.add_argument("--phase", choices=("all", "write", "measure", "station-gui"), default="all",
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = args.workdir / f"logs-{args.records}"
    if args.phase == "write":
        print(json.dumps(write(folder, args.records)))
        return 0
    if args.phase == "measure":
        print(json.dumps(measure(folder)))
        return 0
    if args.phase == "station-gui":
        print(json.dumps(station_gui_open(folder)))
        return 0
    result: dict = {"records": args.records, "host": platform.node(), "cpus": os.cpu_count()}
    stamp = folder / ".complete"
    if args.rewrite or not stamp.exists():
        shutil.rmtree(folder, ignore_errors=True)
        child = [sys.executable, __file__, "--records", str(args.records), "--workdir", str(args.workdir)]
        res = subprocess.run([*child, "--phase", "write"], capture_output=True, text=True, check=True)
        result.update(json.loads(res.stdout.strip().splitlines()[-1]))
        stamp.write_text(json.dumps(result))
    else:
        result.update(json.loads(stamp.read_text()))
    child = [sys.executable, __file__, "--records", str(args.records), "--workdir", str(args.workdir)]
    for phase in ("measure", "station-gui"):
        res = subprocess.run([*child, "--phase", phase], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return res.returncode
        result.update(json.loads(res.stdout.strip().splitlines()[-1]))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
