"""The History view's data at plant scale, without Qt: pages of the index, counts, similar-part search.

Nothing here loads the whole log: a page is one indexed query (keyset paging, newest first), the counts
are one aggregate, a search reads embedding signatures from the side files and the candidates' rows.
The image, heatmap and full record of a row are read from its HDF5 file when it is shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.audit.catalog import open_index
from inspector.audit.history import ALL, HistoryFilter, HistoryRow
from inspector.audit.index import Query
from inspector.audit.reader import AuditReader

PAGE_ROWS = 200
SEARCH_TOP = 200


def to_query(flt: HistoryFilter) -> Query:
    """The index query of the view's filter (local datetimes, ``ALL`` = any)."""

    def ns(t: dt.datetime | None) -> int | None:
        return None if t is None else int(t.timestamp()) * 10**9

    end = ns(flt.end)
    return Query(start_ns=ns(flt.start), end_ns=None if end is None else end + 1, line=_any(flt.line),
                 status=_any(flt.verdict), defect=_any(flt.defect))


def _any(value: str) -> str | None:
    return None if value == ALL else value


@dataclass
class Page:
    """The first page of a filter, with what the view shows around it."""

    rows: list[HistoryRow]
    counts: dict[str, int]  # OK / NG / FAULT under the filter
    total: int  # every indexed record
    values: dict[str, list[str]] = field(default_factory=dict)  # line / defect choices
    span_ns: tuple[int, int] | None = None  # oldest and newest record


@dataclass
class Ranked:
    """A search's rows within the filter, best first, with their cosine similarity."""

    rows: list[HistoryRow]
    ranked: list[tuple[int, float]]  # (index id, cosine)


class Browser:
    """Reads one log folder through its index (built or caught up on opening when no station holds it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.index = open_index(self.folder)

    def close(self) -> None:
        self.index.close()

    def _row(self, rec: dict[str, Any]) -> HistoryRow:
        return HistoryRow(self.folder / rec["file"], int(rec["row"]), rec, None)

    def first(self, flt: HistoryFilter, *, with_choices: bool = False) -> Page:
        q = to_query(flt)
        rows = [self._row(r) for r in self.index.query(q, limit=PAGE_ROWS)]
        page = Page(rows, self.index.counts(q), self.index.total())
        if with_choices:
            page.values = {k: self.index.values(k) for k in ("line", "defect")}
            lo, hi = self.index.db.execute("SELECT MIN(time_ns), MAX(time_ns) FROM inspections").fetchone()
            page.span_ns = None if lo is None else (int(lo), int(hi))
        return page

    def more(self, flt: HistoryFilter, after: HistoryRow) -> list[HistoryRow]:
        """The page after ``after`` (the last row shown)."""
        before = (int(after.record["time_ns"]), int(after.record["id"]))
        return [self._row(r) for r in self.index.query(to_query(flt), limit=PAGE_ROWS, before=before)]

    def newest_model(self) -> str | None:
        """The backbone (``model`` field) of the newest record that has one: what a text search compares with."""
        row = self.index.db.execute("SELECT model FROM inspections WHERE model != '' AND status != 'FAULT' "
                                    "ORDER BY time_ns DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def similar(self, query: np.ndarray, flt: HistoryFilter, model: str | None) -> Ranked:
        """The ``SEARCH_TOP`` records most like ``query`` (``model``: that backbone's only), kept if in the filter."""
        found = self.index.similar(query, SEARCH_TOP, model=model)
        recs = self.index.by_ids([i for i, _ in found])
        q = to_query(flt)
        keep = [(i, s) for i, s in found if i in recs and matches(recs[i], q)]
        return Ranked([self._row(recs[i]) for i, _ in keep], keep)


def matches(rec: dict[str, Any], q: Query) -> bool:
    for key in ("line", "status", "defect", "part_id", "model_version"):
        want = getattr(q, key)
        if want is not None and rec[key] != want:
            return False
    t = int(rec["time_ns"])
    return not ((q.start_ns is not None and t < q.start_ns) or (q.end_ns is not None and t >= q.end_ns))


def full_records(rows: Sequence[HistoryRow]) -> list[HistoryRow]:
    """The rows with their whole HDF5 record (stage times, ROI, trigger, ...) for detail and export."""
    out: list[HistoryRow] = []
    readers: dict[Path, AuditReader] = {}
    try:
        for row in rows:
            reader = readers.get(row.file) or readers.setdefault(row.file, AuditReader(row.file))
            rec = reader.records(row.index, row.index + 1)[0]
            out.append(HistoryRow(row.file, row.index, {**row.record, **rec}, None))
    finally:
        for reader in readers.values():
            reader.close()
    return out


def embedding_of(row: HistoryRow) -> np.ndarray | None:
    """The stored embedding of one record (None when the part was not inspected)."""
    with AuditReader(row.file) as reader:
        vec = reader.embeddings(row.index, row.index + 1)[0].astype(np.float32)
    return vec if np.isfinite(vec).all() else None
