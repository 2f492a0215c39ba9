"""The history view's data, without Qt: audit records of a log folder, filters, CSV export, CLIP search.

Search ranks stored records by the cosine similarity of their stored global CLIP embedding to a query
embedding: the text encoder's embedding of a phrase ("scratch near the hole") or the image embedding
of an example (a selected record, or an image file), computed by the caller with the line's engine
(:func:`inspector.tuning.search.query_embedding`). Only records made with the same backbone as the
query are comparable; the others are left out and counted.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.audit.export import CSV_COLUMNS
from inspector.audit.h5log import log_files
from inspector.audit.reader import AuditReader, AuditReadError

ALL = "(all)"
FAULT = "FAULT"


@dataclass
class HistoryRow:
    file: Path
    index: int  # row in that file
    record: dict[str, Any]
    embedding: np.ndarray | None  # float32 [D] (None for parts that were not inspected)

    @property
    def verdict_class(self) -> str:
        """OK, NG or FAULT (a part that was not inspected)."""
        return FAULT if self.record.get("fault") else str(self.record.get("verdict", ""))


@dataclass
class History:
    rows: list[HistoryRow] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def values(self, key: str) -> list[str]:
        return sorted({str(r.record.get(key) or "") for r in self.rows} - {""})


def load_history(folder: Path) -> History:
    """Every record (and event) of the audit files in ``folder``, oldest first; also live files."""
    out = History()
    for path in log_files(Path(folder)):
        try:
            reader = AuditReader(path)
        except AuditReadError as exc:
            out.unreadable.append(str(exc))
            continue
        with reader:
            records = reader.records()
            emb = reader.embeddings().astype(np.float32) if len(records) else np.empty((0, 0), np.float32)
            for i, rec in enumerate(records):
                vec = emb[i] if i < len(emb) else None
                if vec is not None and not np.isfinite(vec).all():
                    vec = None
                out.rows.append(HistoryRow(path, i, rec, vec))
            for ev in reader.events():
                ev["file"] = path.name
                out.events.append(ev)
    out.rows.sort(key=lambda r: (int(r.record["time_ns"]), int(r.record["seq"])))
    return out


@dataclass(frozen=True)
class HistoryFilter:
    start: dt.datetime | None = None  # local time, inclusive
    end: dt.datetime | None = None
    verdict: str = ALL  # ALL | OK | NG | FAULT
    line: str = ALL
    defect: str = ALL

    def match(self, row: HistoryRow) -> bool:
        rec = row.record
        t = dt.datetime.fromtimestamp(int(rec["time_ns"]) / 1e9)
        if self.start is not None and t < self.start:
            return False
        if self.end is not None and t > self.end:
            return False
        if self.verdict != ALL and row.verdict_class != self.verdict:
            return False
        if self.line != ALL and rec.get("line") != self.line:
            return False
        return not (self.defect != ALL and (rec.get("defect") or "") != self.defect)


def apply_filter(history: History, flt: HistoryFilter) -> list[int]:
    return [i for i, row in enumerate(history.rows) if flt.match(row)]


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, bool):
        return int(value)
    return "" if value is None else value


def export_rows(rows: Sequence[HistoryRow], out: Path) -> int:
    """Write the given records to CSV with the audit export's columns (plus ``ms_total``); returns the count."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*CSV_COLUMNS, "ms_total"])
        for row in rows:
            rec = {**row.record, "file": row.file.name}
            writer.writerow([_cell(rec.get(c)) for c in CSV_COLUMNS] + [_cell(rec["ms"].get("total", math.nan))])
    return len(rows)


# ---------------------------------------------------------------------------------- CLIP search
@dataclass
class SearchResult:
    ranked: list[tuple[int, float]]  # (row index in History.rows, cosine similarity), best first
    skipped_other_model: int = 0
    skipped_no_embedding: int = 0


def rank(history: History, candidates: Sequence[int], query: np.ndarray, model: str | None = None) -> SearchResult:
    """Rank ``candidates`` by cosine similarity to ``query``; ``model`` keeps only that backbone's records."""
    query = np.asarray(query, np.float32)
    query = query / max(float(np.linalg.norm(query)), 1e-12)
    out = SearchResult([])
    idx, vecs = [], []
    for i in candidates:
        row = history.rows[i]
        if row.embedding is None or row.embedding.shape != query.shape:
            out.skipped_no_embedding += row.embedding is None
            out.skipped_other_model += row.embedding is not None
            continue
        if model is not None and row.record.get("model") != model:
            out.skipped_other_model += 1
            continue
        idx.append(i)
        vecs.append(row.embedding)
    if idx:
        mat = np.stack(vecs)
        mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
        sims = mat @ query
        order = np.argsort(-sims, kind="stable")
        out.ranked = [(idx[k], float(sims[k])) for k in order]
    return out


def record_media(row: HistoryRow) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(image, heatmap) of a record: the full frame when stored, else the thumbnail; the low-res map."""
    with AuditReader(row.file) as reader:
        image = reader.frame(row.index)
        if image is None:
            image = reader.thumbnail(row.index)
        heat = reader.heatmap(row.index)
    return image, (heat.astype(np.float32) if heat is not None else None)
