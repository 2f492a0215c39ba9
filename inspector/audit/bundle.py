"""A self-contained export of a time range for a customer complaint: HDF5 + CSV, with SHA-256 checksums.

``<out>/`` holds ``<station>_<stamp>.h5`` (the records of the range with every field, embedding, heatmap,
thumbnail and stored frame, in the audit format: any HDF5 tool, ``inspector log ...``), ``inspections.csv``,
``events.csv``, ``README.txt`` and ``SHA256SUMS`` (``sha256sum -c SHA256SUMS`` checks the bundle).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.audit.catalog import open_index
from inspector.audit.export import export_csv
from inspector.audit.folder import INDEX_DIR, LOCK_NAME
from inspector.audit.h5log import AuditWriter
from inspector.audit.index import EVENT_COLUMNS, Query
from inspector.audit.reader import AuditReader, AuditReadError, iso_utc
from inspector.audit.records import AuditEvent, AuditRecord
from inspector.config.log import LogSpec
from inspector.files import sha256_file

_FIELDS = ("seq", "time_ns", "part_id", "line", "verdict", "score", "threshold", "defect", "defect_index", "fault",
           "trigger", "frame_ref", "truth", "model", "model_name", "weights_sha256", "model_version", "config_hash",
           "n_regions", "mutual_parts")


@dataclass(frozen=True)
class Bundle:
    folder: Path
    records: int
    events: int
    files: tuple[str, ...]


def export_bundle(folder: Path, out: Path, start_ns: int | None = None, end_ns: int | None = None) -> Bundle:
    """Write the records and events of ``[start_ns, end_ns)`` of log ``folder`` to the new folder ``out``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        msg = f"{out}: folder exists and is not empty; give a new folder for the bundle"
        raise AuditReadError(msg)
    with open_index(folder) as index:
        rows = index.query(Query(start_ns=start_ns, end_ns=end_ns), newest_first=False)
        events = index.events(start_ns, end_ns)
    if not rows and not events:
        msg = f"{folder}: no inspection or event in the requested time range"
        raise AuditReadError(msg)
    out.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[int]] = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(int(r["row"]))
    writer: AuditWriter | None = None
    try:
        for name, picked in by_file.items():
            with AuditReader(Path(folder) / name) as reader:
                if writer is None:
                    spec = LogSpec(rotate="size", max_mb=1e6, min_free_mb=0, fsync_interval_s=None,
                                   heatmap_px=int(reader.attrs.get("heatmap_px", 32)))
                    writer = AuditWriter(out, spec, station=str(reader.attrs.get("station", "station")),
                                         embedding_dim=int(reader.attrs.get("embedding_dim", 512)),
                                         software=str(reader.attrs.get("software", "")))
                writer.write([_record(reader, i) for i in picked])
        if writer is None:
            writer = AuditWriter(out, LogSpec(rotate="size", min_free_mb=0))
        writer.write((), [AuditEvent(e["kind"], e["who"], e["what"], e["old"], e["new"], e["time_ns"])
                          for e in events])
    finally:
        if writer is not None:
            writer.close()
    shutil.rmtree(out / INDEX_DIR, ignore_errors=True)  # the bundle is the files; an index is rebuilt on demand
    (out / LOCK_NAME).unlink(missing_ok=True)
    export_csv(out, out / "inspections.csv")
    with (out / "events.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *EVENT_COLUMNS[1:]])
        w.writerows([[iso_utc(e["time_ns"]), *(e[c] for c in EVENT_COLUMNS[1:])] for e in events])
    span = f"{iso_utc(start_ns) if start_ns is not None else 'start'} .. {iso_utc(end_ns) if end_ns else 'end'}"
    (out / "README.txt").write_text(
        f"Inspection records of log folder {Path(folder).resolve()} from {span} (UTC, end exclusive).\n"
        f"{len(rows)} inspection(s), {len(events)} event(s). *.h5: the audit records (HDF5, readable with\n"
        "h5dump / HDFView / h5py; layout in docs/history.md). Check with: sha256sum -c SHA256SUMS\n", encoding="utf-8")
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    (out / "SHA256SUMS").write_text("".join(f"{sha256_file(out / f)}  {f}\n" for f in files), encoding="utf-8")
    return Bundle(out, len(rows), len(events), tuple(files))


def _record(reader: AuditReader, i: int) -> AuditRecord:
    rec = reader.records(i, i + 1)[0]
    emb = reader.embeddings(i, i + 1)[0]
    return AuditRecord(
        **{k: rec[k] for k in _FIELDS}, defect_confidence=_num(rec["defect_confidence"]),
        untrained=bool(rec["untrained"]), roi=tuple(rec["roi"]), stage_ms=rec["ms"],
        embedding=emb if np.isfinite(emb).all() else None, heatmap=reader.heatmap(i),
        thumbnail_jpeg=reader.blob("thumbnails", i), frame_png=reader.blob("frames", i))


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)

