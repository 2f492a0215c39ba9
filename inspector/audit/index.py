"""The index beside the audit files: one SQLite database (WAL) per log folder, ``.index/index.sqlite``.

One row per inspection (seq, time, part id, line, verdict, score, defect, model version, file + row)
and per event, written by the audit writer right after each HDF5 flush, plus the embedding side files
of :mod:`inspector.audit.vectors`. The HDF5 files stay the record of truth: the index is rebuilt from
them when it is missing, damaged or behind (:mod:`inspector.audit.catalog`), so losing it loses nothing.
Only the holder of the folder's writer lock writes it; any number of readers query it meanwhile (WAL).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.audit.folder import index_dir
from inspector.audit.schema import decode_str
from inspector.audit.vectors import SideFiles, normalise, signatures

DB_NAME = "index.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("OK", "NG", "FAULT")  # verdict class: a part that was not inspected is FAULT
COLUMNS = ("id", "seq", "time_ns", "part_id", "line", "verdict", "status", "score", "threshold", "defect", "fault",
           "model", "model_version", "file", "row")
EVENT_COLUMNS = ("id", "time_ns", "after_seq", "kind", "who", "what", "old", "new", "file", "row")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, rows INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0, emb_dim INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS inspections(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL,
    part_id TEXT NOT NULL, line TEXT NOT NULL, verdict TEXT NOT NULL, status TEXT NOT NULL, score REAL,
    threshold REAL, defect TEXT NOT NULL, fault TEXT NOT NULL, model TEXT NOT NULL, model_version TEXT NOT NULL,
    file_id INTEGER NOT NULL REFERENCES files(id), row INTEGER NOT NULL, UNIQUE(file_id, row));
CREATE INDEX IF NOT EXISTS inspections_part ON inspections(part_id, time_ns);
CREATE INDEX IF NOT EXISTS inspections_time ON inspections(time_ns);
CREATE INDEX IF NOT EXISTS inspections_status ON inspections(status, time_ns);
CREATE INDEX IF NOT EXISTS inspections_line ON inspections(line, time_ns);
CREATE INDEX IF NOT EXISTS inspections_defect ON inspections(defect, time_ns);
CREATE INDEX IF NOT EXISTS inspections_model_version ON inspections(model_version, time_ns);
CREATE INDEX IF NOT EXISTS inspections_seq ON inspections(seq);
CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, after_seq INTEGER NOT NULL,
    kind TEXT NOT NULL, who TEXT NOT NULL, what TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL,
    file_id INTEGER NOT NULL REFERENCES files(id), row INTEGER NOT NULL, UNIQUE(file_id, row));
CREATE INDEX IF NOT EXISTS events_time ON events(time_ns);
CREATE TABLE IF NOT EXISTS vec_runs(file_id INTEGER NOT NULL, row_start INTEGER NOT NULL, row_end INTEGER NOT NULL,
    model TEXT NOT NULL, PRIMARY KEY(file_id, row_start));
"""


class IndexStaleError(Exception):
    """The index does not line up with the write it was given (the writer catches it and catches up from HDF5)."""


@dataclass(frozen=True)
class Query:
    """Filters of ``inspector log query`` and the History view; None = any."""

    part_id: str | None = None
    start_ns: int | None = None  # inclusive
    end_ns: int | None = None  # exclusive
    line: str | None = None
    status: str | None = None  # OK | NG | FAULT
    defect: str | None = None
    model_version: str | None = None

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        """SQL ``WHERE`` clause (empty without filters) and its bound values; ``alias``: a table prefix."""
        terms, args = [], []
        for column, value in (("part_id", self.part_id), ("line", self.line), ("status", self.status),
                              ("defect", self.defect), ("model_version", self.model_version)):
            if value is not None:
                terms.append(f"{alias}{column} = ?")
                args.append(value)
        if self.start_ns is not None:
            terms.append(f"{alias}time_ns >= ?")
            args.append(int(self.start_ns))
        if self.end_ns is not None:
            terms.append(f"{alias}time_ns < ?")
            args.append(int(self.end_ns))
        return (" WHERE " + " AND ".join(terms)) if terms else "", args


def _status(verdict: str, fault: str) -> str:
    return "FAULT" if fault else verdict


class LogIndex:
    """The SQLite index of one log folder (``readonly``: a reader's connection, never writes).

    ``where``: the folder holding the index (default ``<folder>/.index``; a private copy for a log folder
    this process may not write, :func:`inspector.audit.catalog.open_index`).
    """

    def __init__(self, folder: Path, *, readonly: bool = False, where: Path | None = None) -> None:
        self.folder = Path(folder)
        self.dir = Path(where) if where is not None else index_dir(self.folder)
        self.path = self.dir / DB_NAME
        self.readonly = readonly
        if readonly:
            self.db = _connect_readonly(self.path)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: a power cut may lose the last transactions; the rebuild from HDF5 restores them.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self.db.execute("PRAGMA busy_timeout=5000")
        version = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            self.db.close()
            msg = f"{self.path}: index schema {version and version[0]} is not {SCHEMA_VERSION}"
            raise sqlite3.DatabaseError(msg)
        self._file_ids: dict[str, int] = {}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LogIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing (writer lock held)
    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def file_state(self) -> dict[str, tuple[int, int, int]]:
        """name -> (rows, events, embedding width) as indexed."""
        return {n: (r, e, d) for n, r, e, d in self.db.execute("SELECT name, rows, events, emb_dim FROM files")}

    def _file_id(self, name: str, dim: int = 0) -> int:
        fid = self._file_ids.get(name)
        if fid is None:
            self.db.execute("INSERT OR IGNORE INTO files(name, emb_dim) VALUES (?, ?)", (name, dim))
            fid = self.db.execute("SELECT id FROM files WHERE name = ?", (name,)).fetchone()[0]
            self._file_ids[name] = fid
        return fid

    def side_files(self, name: str, dim: int) -> SideFiles:
        return SideFiles(self.dir, Path(name).stem, dim)

    def add_records(self, name: str, start: int, table: np.ndarray, embeddings: np.ndarray | None) -> None:
        """Index rows ``start..`` of audit file ``name`` (``table``: its inspection rows; embeddings [n, D])."""
        if not len(table):
            return
        dim = int(embeddings.shape[1]) if embeddings is not None else 0
        with self._txn() as db:
            fid = self._file_id(name, dim)
            rows, known_dim = db.execute("SELECT rows, emb_dim FROM files WHERE id = ?", (fid,)).fetchone()
            if rows != start:
                msg = f"index of {name} holds {rows} rows, a write starts at row {start}"
                raise IndexStaleError(msg)
            if embeddings is not None:
                if known_dim and known_dim != dim:
                    msg = f"{name}: embedding width {dim} after {known_dim}"
                    raise IndexStaleError(msg)
                side = self.side_files(name, dim)
                if side.rows() < start:
                    msg = f"side files of {name} hold {side.rows()} rows, not {start}"
                    raise IndexStaleError(msg)
                side.append(start, embeddings)  # before the commit: a crash leaves them longer, cut next time
            text = {k: [decode_str(v) for v in table[k]] for k in
                    ("part_id", "line", "verdict", "defect", "fault", "model", "model_version")}
            seqs, times = table["seq"].tolist(), table["time_ns"].tolist()
            scores, thresholds = table["score"].tolist(), table["threshold"].tolist()
            db.executemany(
                "INSERT INTO inspections(seq, time_ns, part_id, line, verdict, status, score, threshold, defect, "
                "fault, model, model_version, file_id, row) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(seqs[i], times[i], text["part_id"][i], text["line"][i], text["verdict"][i],
                  _status(text["verdict"][i], text["fault"][i]), _real(scores[i]), _real(thresholds[i]),
                  text["defect"][i], text["fault"][i], text["model"][i], text["model_version"][i], fid, start + i)
                 for i in range(len(table))])
            if embeddings is not None:
                self._add_runs(fid, start, text["model"])
            db.execute("UPDATE files SET rows = ?, emb_dim = ? WHERE id = ?", (start + len(table), dim or known_dim,
                                                                               fid))

    def _add_runs(self, fid: int, start: int, models: Sequence[str]) -> None:
        last = self.db.execute("SELECT row_start, row_end, model FROM vec_runs WHERE file_id = ? "
                               "ORDER BY row_start DESC LIMIT 1", (fid,)).fetchone()
        for i, model in enumerate(models):
            row = start + i
            if last is not None and last[1] == row and last[2] == model:
                last = (last[0], row + 1, model)
                self.db.execute("UPDATE vec_runs SET row_end = ? WHERE file_id = ? AND row_start = ?",
                                (row + 1, fid, last[0]))
            else:
                last = (row, row + 1, model)
                self.db.execute("INSERT INTO vec_runs VALUES (?, ?, ?, ?)", (fid, row, row + 1, model))

    def add_events(self, name: str, start: int, rows: np.ndarray) -> None:
        """Index events ``start..`` of audit file ``name``."""
        if not len(rows):
            return
        with self._txn() as db:
            fid = self._file_id(name)
            known = db.execute("SELECT events FROM files WHERE id = ?", (fid,)).fetchone()[0]
            if known != start:
                msg = f"index of {name} holds {known} events, a write starts at event {start}"
                raise IndexStaleError(msg)
            db.executemany(
                "INSERT INTO events(time_ns, after_seq, kind, who, what, old, new, file_id, row) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(int(r["time_ns"]), int(r["after_seq"]), *(decode_str(r[k]) for k in
                                                            ("kind", "who", "what", "old", "new")), fid, start + i)
                 for i, r in enumerate(rows)])
            db.execute("UPDATE files SET events = ? WHERE id = ?", (start + len(rows), fid))

    def forget(self, name: str) -> None:
        """Drop a file's rows, events and side files (the file was deleted, or is re-indexed)."""
        row = self.db.execute("SELECT id, emb_dim FROM files WHERE name = ?", (name,)).fetchone()
        if row is None:
            return
        fid, dim = row
        with self._txn() as db:
            for table in ("inspections", "events", "vec_runs"):
                db.execute(f"DELETE FROM {table} WHERE file_id = ?", (fid,))
            db.execute("DELETE FROM files WHERE id = ?", (fid,))
        self._file_ids.pop(name, None)
        if dim:
            self.side_files(name, dim).remove()

    # ------------------------------------------------------------------ reading
    def _rows(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        cur = self.db.execute(sql, args)
        return [dict(zip(COLUMNS, r, strict=True)) for r in cur]

    _SELECT = ("SELECT i.id, i.seq, i.time_ns, i.part_id, i.line, i.verdict, i.status, i.score, i.threshold, "
               "i.defect, i.fault, i.model, i.model_version, f.name, i.row FROM inspections i "
               "JOIN files f ON f.id = i.file_id")

    def query(self, q: Query = Query(), *, limit: int | None = None,
              before: tuple[int, int] | None = None, newest_first: bool = True) -> list[dict[str, Any]]:
        """Matching inspections, newest first; ``before`` = (time_ns, id) of the last row of the previous page."""
        where, args = q.where("i.")
        if before is not None:
            cmp = "<" if newest_first else ">"
            where += (" AND " if where else " WHERE ") + f"(i.time_ns, i.id) {cmp} (?, ?)"
            args = [*args, int(before[0]), int(before[1])]
        order = "DESC" if newest_first else "ASC"
        sql = f"{self._SELECT}{where} ORDER BY i.time_ns {order}, i.id {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._rows(sql, args)

    def after_seq(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """Inspections with a seq above ``seq``, in seq order (the results database's replay)."""
        return self._rows(f"{self._SELECT} WHERE i.seq > ? ORDER BY i.seq LIMIT ?", (int(seq), int(limit)))

    def counts(self, q: Query = Query()) -> dict[str, int]:
        """Matching inspections per status (OK / NG / FAULT)."""
        where, args = q.where()
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self.db.execute(f"SELECT status, COUNT(*) FROM inspections{where} GROUP BY status", args):
            out[status] = n
        return out

    def by_ids(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for k in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[k : k + 500]]
            marks = ",".join("?" * len(chunk))
            for row in self._rows(f"{self._SELECT} WHERE i.id IN ({marks})", chunk):
                out[row["id"]] = row
        return out

    def values(self, column: str) -> list[str]:
        """Distinct non-empty values of ``line``, ``defect`` or ``model_version`` (served by their index)."""
        if column not in ("line", "defect", "model_version", "model"):
            msg = f"no distinct values for column {column!r}"
            raise ValueError(msg)
        return [v for (v,) in self.db.execute(f"SELECT DISTINCT {column} FROM inspections ORDER BY 1") if v]

    def events(self, start_ns: int | None = None, end_ns: int | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT e.id, e.time_ns, e.after_seq, e.kind, e.who, e.what, e.old, e.new, f.name, e.row "
               "FROM events e JOIN files f ON f.id = e.file_id WHERE e.time_ns >= ? AND e.time_ns < ? "
               "ORDER BY e.time_ns, e.id")
        lo, hi = start_ns if start_ns is not None else -(2**63), end_ns if end_ns is not None else 2**63 - 1
        return [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in self.db.execute(sql, (lo, hi))]

    def total(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(rows), 0) FROM files").fetchone()[0])

    def similar(self, query: np.ndarray, k: int = 50, *, model: str | None = None,
                candidates: int | None = None) -> list[tuple[int, float]]:
        """Top ``k`` inspections (id, cosine) by stored embedding, best first; ``model``: that backbone only.

        Signatures pick ``candidates`` (default ``max(2000, 40 k)``) per search, re-ranked exactly.
        """
        unit = normalise(np.asarray(query, np.float32)[None])[0]
        dim = unit.shape[0]
        qsig = signatures(unit[None])[0]
        n_cand = candidates or max(2000, 40 * k)
        files = self.db.execute("SELECT id, name FROM files WHERE emb_dim = ? AND rows > 0", (dim,)).fetchall()
        pool: list[tuple[int, int, int, int]] = []  # (-distance, file_id, row)  as a bounded heap
        sides: dict[int, SideFiles] = {}
        for fid, name in files:
            sql, args = "SELECT row_start, row_end FROM vec_runs WHERE file_id = ?", [fid]
            if model is not None:
                sql, args = sql + " AND model = ?", [fid, model]
            ranges = [(int(a), int(b)) for a, b in self.db.execute(sql + " ORDER BY row_start", args)]
            side = sides[fid] = self.side_files(name, dim)
            dist = side.hamming(qsig, ranges)
            if not len(dist):
                continue
            rows = np.concatenate([np.arange(a, b) for a, b in ranges])[: len(dist)]
            take = min(n_cand, len(dist))
            best = np.argpartition(dist, take - 1)[:take]
            for j in best:
                item = (-int(dist[j]), fid, int(rows[j]), 0)
                if len(pool) < n_cand:
                    heapq.heappush(pool, item)
                elif item > pool[0]:
                    heapq.heapreplace(pool, item)
        scored: list[tuple[float, int, int]] = []
        by_file: dict[int, list[int]] = {}
        for _, fid, row, _ in pool:
            by_file.setdefault(fid, []).append(row)
        for fid, rows_ in by_file.items():
            arr = np.array(rows_, dtype=np.int64)
            sims = sides[fid].cosine(unit, arr)
            scored += [(float(s), fid, int(r)) for s, r in zip(sims, arr, strict=True) if np.isfinite(s)]
        top = heapq.nlargest(k, scored)
        out = []
        for sim, fid, row in top:
            found = self.db.execute("SELECT id FROM inspections WHERE file_id = ? AND row = ?", (fid, row)).fetchone()
            if found is not None:
                out.append((int(found[0]), sim))
        return out


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection; ``immutable`` where SQLite cannot create the WAL's shared-memory file.

    A WAL database needs its ``-shm`` file: in a folder this process may not write (a read-only share, an
    archive copy) a closed index has none and ``mode=ro`` fails, but then nobody writes it either.
    """
    if not path.is_file():
        msg = f"unable to open database file {path}"
        raise sqlite3.OperationalError(msg)
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        db.close()
        if os.access(path.parent, os.W_OK):
            raise
        db = sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True, check_same_thread=False)
    return db


def _real(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
