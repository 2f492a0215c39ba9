"""Exports of audit files for QA: CSV (one row per inspection) and image folders."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Literal

import cv2

from inspector.audit.reader import AuditReader, resolve_files

CSV_COLUMNS: tuple[str, ...] = (
    "seq", "timestamp", "part_id", "line", "verdict", "score", "threshold", "defect", "defect_index",
    "defect_confidence", "fault", "trigger", "frame_ref", "truth", "model", "model_name", "weights_sha256",
    "model_version", "config_hash", "untrained", "n_regions", "camera_frame_id", "camera_time_ns",
    "mutual_parts", "file",
)


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, bool):
        return int(value)
    return value


def export_csv(path: Path, out: Path) -> int:
    """Write every inspection of a file (or folder of files) to ``out``; returns the row count.

    Columns: :data:`CSV_COLUMNS`, then ``ms_<stage>`` for every stage latency.
    """
    files = resolve_files(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer: Any = None
        stages: tuple[str, ...] = ()
        for file in files:
            with AuditReader(file) as reader:
                if writer is None:
                    stages = reader.stages
                    writer = csv.writer(fh)
                    writer.writerow([*CSV_COLUMNS, *(f"ms_{s}" for s in stages)])
                for rec in reader:
                    rec["file"] = file.name
                    ms = rec["ms"]
                    writer.writerow([_cell(rec.get(c, -1)) for c in CSV_COLUMNS]  # files before camera ids: -1
                                    + [_cell(ms.get(s, float("nan"))) for s in stages])
                    rows += 1
    return rows


def export_images(path: Path, out_dir: Path, which: Literal["ng", "all"] = "ng") -> int:
    """Write thumbnails (and full frames where stored) as ``<seq>_<part>_<verdict>.png``; returns the count."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for file in resolve_files(path):
        with AuditReader(file) as reader:
            for i, rec in enumerate(reader):
                if which == "ng" and rec["verdict"] != "NG":
                    continue
                safe_part = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in rec["part_id"])
                stem = f"{rec['seq']:08d}_{safe_part}_{rec['verdict']}"
                for kind, image in (("frame", reader.frame(i)), ("thumb", reader.thumbnail(i))):
                    if image is not None:
                        cv2.imwrite(str(out_dir / f"{stem}_{kind}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                        count += 1
    return count
