"""Read audit files, also while the station writes them (SWMR) and after a crash.

Plain h5py works too: ``h5py.File(path, "r", swmr=True)["inspections"][:]``; this module adds
decoded strings, timestamps, media and summaries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from inspector.audit import recovery
from inspector.audit.folder import log_files
from inspector.audit.media import decode_image
from inspector.audit.schema import FORMAT_NAME, STAGES, decode_str
from inspector.decision.result import VerdictCounts
from inspector.errors import ImageDecodeError, InspectorError

_logger = logging.getLogger(__name__)

# Columns added after the first files were written, and what a file without them means.
_ADDED_COLUMNS: dict[str, Any] = {"camera_frame_id": -1, "camera_time_ns": -1, "mutual_parts": -1}
_STRING_FIELDS = ("part_id", "line", "verdict", "defect", "fault", "trigger", "frame_ref", "truth", "model",
                  "model_name", "weights_sha256", "model_version", "config_hash")


# What h5py / HDF5 / numpy raise on a damaged file; the reader turns them into AuditReadError.
_DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError)
_DAMAGED_FIX = ("keep the file for analysis and restore it from a backup if there is one; the station's other "
                "files are not affected (`inspector log summary FOLDER` lists what is readable)")


class AuditReadError(InspectorError):
    """A file is not an audit log or cannot be read."""


def iso_utc(time_ns: int) -> str:
    """UTC ISO-8601 with milliseconds, e.g. 2026-05-11T08:15:00.123Z (``invalid time <ns>`` if out of range)."""
    try:
        stamp = dt.datetime.fromtimestamp(int(time_ns) / 1e9, dt.UTC)
    except (OverflowError, OSError, ValueError):  # a damaged row: say so instead of failing the whole read
        return f"invalid time {int(time_ns)}"
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


@dataclass
class LogSummary(VerdictCounts):
    """Counts and ranges of one or more audit files."""

    files: list[str] = field(default_factory=list)
    records: int = 0
    ok: int = 0
    ng: int = 0
    faults: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    missing_seqs: int = 0  # gaps in the sequence (dropped records; see the events)
    first_time: str = ""
    last_time: str = ""
    lines: dict[str, int] = field(default_factory=dict)
    defects: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 / p95 / max of stage "total"
    open_files: list[str] = field(default_factory=list)  # still being written, or left open by a crash
    unreadable: list[str] = field(default_factory=list)


class AuditReader:
    """One audit file; opened SWMR so it can be read while written and after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            msg = f"{self.path}: no such audit file (see the station's log folder, log.folder / --log-dir)"
            raise AuditReadError(msg)
        cut = recovery.truncation(self.path)
        if cut is not None:
            # Checked first: in SWMR mode HDF5 retries unreadable metadata with backoff for minutes (a hang).
            msg = (f"{self.path}: audit file is truncated ({cut[0]} of {cut[1]} bytes: cut short by a full "
                   f"disk or an interrupted copy); {_DAMAGED_FIX}")
            raise AuditReadError(msg)
        # SWMR only for files a writer has (or had, before a crash) open: a closed file is read plainly,
        # so damaged metadata fails at once instead of going through SWMR's read retries.
        self._swmr = recovery.open_flags(self.path) not in (0, None)
        try:
            self._f = recovery.open_swmr(self.path) if self._swmr else h5py.File(self.path, "r")
        except _DAMAGE as exc:
            msg = f"{self.path}: not a readable HDF5 audit file ({exc}); {_DAMAGED_FIX}"
            raise AuditReadError(msg) from None
        try:
            ours = (_attr(self._f.attrs.get("format")) == FORMAT_NAME
                    and isinstance(self._f.get("inspections"), h5py.Dataset))
            if ours:
                self.attrs: dict[str, Any] = {k: _attr(v) for k, v in self._f.attrs.items()}
                stages = self.attrs.get("stages", STAGES)
                self.stages: tuple[str, ...] = tuple(str(x) for x in stages) if isinstance(stages, tuple) else STAGES
                len(self)  # the table's shape must be readable
        except (AuditReadError, *_DAMAGE) as exc:
            self._f.close()
            msg = f"{self.path}: damaged audit file, its header cannot be read ({exc}); {_DAMAGED_FIX}"
            raise AuditReadError(msg) from None
        if not ours:
            self._f.close()
            msg = f"{self.path}: HDF5 file but not an inspector audit log (no 'inspections' table)"
            raise AuditReadError(msg)

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn h5py's errors on a damaged file into AuditReadError naming the file and what was read."""
        try:
            yield
        except _DAMAGE as exc:
            why = f"{type(exc).__name__}: {exc}"
            msg = f"{self.path}: damaged audit file, {what} cannot be read ({why}); {_DAMAGED_FIX}"
            raise AuditReadError(msg) from None

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> int:
        """Pick up records written since opening (live files); returns the record count."""
        if not self._swmr:  # a closed file does not grow
            return len(self)
        with self._reading("the live datasets"):
            for ds in self._f.values():
                if isinstance(ds, h5py.Dataset):
                    ds.refresh()
        return len(self)

    def __len__(self) -> int:
        with self._reading("the record count"):
            return int(self._f["inspections"].shape[0])

    @property
    def is_open_for_write(self) -> bool:
        """True while a writer has the file (or a crashed one left it unsealed)."""
        return bool(recovery.open_flags(self.path))

    # ------------------------------------------------------------------ records
    def table(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Raw structured rows (bytes fields) of the inspections table."""
        with self._reading(f"inspections[{start}:{stop if stop is not None else ''}]"):
            rows = self._f["inspections"][start:stop]
        if rows.dtype.names is None or "seq" not in rows.dtype.names:
            msg = f"{self.path}: damaged audit file, the inspections table has no records layout; {_DAMAGED_FIX}"
            raise AuditReadError(msg)
        return rows

    def records(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """Rows as dicts with decoded strings, ``timestamp`` (UTC ISO) and stage latencies (``ms``)."""
        rows = self.table(start, stop)
        stages = self.stage_ms(start, stop)
        out = []
        with self._reading("the inspection records"):
            for i, row in enumerate(rows):
                rec: dict[str, Any] = {name: row[name].item() for name in rows.dtype.names if name != "roi"}
                for name in _STRING_FIELDS:
                    rec[name] = decode_str(row[name])
                rec["roi"] = tuple(int(v) for v in row["roi"])
                rec["timestamp"] = iso_utc(row["time_ns"])
                rec["untrained"] = bool(row["untrained"])
                for name, default in _ADDED_COLUMNS.items():
                    rec.setdefault(name, default)
                rec["ms"] = ({s: float(stages[i, k]) for k, s in enumerate(self.stages) if k < stages.shape[1]
                              and np.isfinite(stages[i, k])} if i < len(stages) else {})
                out.append(rec)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        step = 1024
        for start in range(0, len(self), step):
            yield from self.records(start, start + step)

    def stage_ms(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = len(self) if stop is None else min(stop, len(self))
        with self._reading("the stage latencies"):
            return self._f["stage_ms"][start:stop]

    def embeddings(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float16 [N, D] global embeddings (rows of parts not inspected are NaN)."""
        n = len(self) if stop is None else min(stop, len(self))
        with self._reading("the embeddings"):
            return self._f["embedding"][start:n]

    def heatmap(self, i: int) -> np.ndarray | None:
        with self._reading(f"the heatmap of record {i}"):
            if "heatmap" not in self._f:
                return None
            heat = self._f["heatmap"][i]
        return None if np.isnan(heat).all() else heat

    def thumbnail(self, i: int) -> np.ndarray | None:
        """RGB thumbnail of record ``i`` (None when not stored)."""
        with self._reading(f"record {i}"):
            row = self._f["inspections"][i]
            where = int(row["thumb_offset"]), int(row["thumb_size"])
        return self._blob("thumbnails", i, *where)

    def frame(self, i: int) -> np.ndarray | None:
        """Full RGB frame of record ``i`` (None when not stored: see log.save_full_frames)."""
        with self._reading(f"record {i}"):
            row = self._f["inspections"][i]
            where = int(row["frame_offset"]), int(row["frame_size"])
        return self._blob("frames", i, *where)

    def _blob(self, name: str, i: int, offset: int, size: int) -> np.ndarray | None:
        if size == 0:
            return None
        with self._reading(f"the {name} blob of record {i}"):
            data = self._f[name][offset : offset + size].tobytes()
        try:
            return decode_image(data)
        except (ImageDecodeError, cv2.error) as exc:
            msg = (f"{self.path}: record {i}: stored {name[:-1]} is damaged ({exc}); its other fields are readable; "
                   f"{_DAMAGED_FIX}")
            raise AuditReadError(msg) from None

    def event_count(self) -> int:
        with self._reading("the events table"):
            return int(self._f["events"].shape[0])

    def event_table(self, start: int = 0) -> np.ndarray:
        """Raw structured rows of the events table from ``start``."""
        with self._reading("the events table"):
            return self._f["events"][start:]

    def blob(self, name: str, i: int) -> bytes:
        """The stored bytes (JPEG / PNG) of record ``i``'s ``thumbnails`` or ``frames`` blob (b"" when none)."""
        key = {"thumbnails": "thumb", "frames": "frame"}[name]
        with self._reading(f"the {name} blob of record {i}"):
            row = self._f["inspections"][i]
            offset, size = int(row[f"{key}_offset"]), int(row[f"{key}_size"])
            return self._f[name][offset : offset + size].tobytes() if size else b""

    def events(self) -> list[dict[str, Any]]:
        out = []
        with self._reading("the events table"):
            rows = self._f["events"][:]
            for row in rows:
                ev = {name: decode_str(row[name]) for name in ("kind", "who", "what", "old", "new")}
                ev["time_ns"], ev["after_seq"] = int(row["time_ns"]), int(row["after_seq"])
                ev["timestamp"] = iso_utc(row["time_ns"])
                out.append(ev)
        return out


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in ("O", "S"):
        return tuple(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def resolve_files(path: Path) -> list[Path]:
    """A file, or every audit file of a folder (oldest first)."""
    path = Path(path)
    if path.is_dir():
        files = log_files(path)
        if not files:
            msg = f"{path}: no audit files (*.h5) in this folder"
            raise AuditReadError(msg)
        return files
    if not path.exists():
        msg = f"{path}: no such file or folder"
        raise AuditReadError(msg)
    return [path]


def summarize(path: Path) -> LogSummary:
    """Summary of a file or of every file in a folder."""
    summary = LogSummary()
    seqs: list[np.ndarray] = []
    totals: list[np.ndarray] = []
    counters: dict[str, Counter[str]] = {k: Counter() for k in ("lines", "defects", "models", "events")}
    times: list[int] = []
    for file in resolve_files(path):
        try:
            reader = AuditReader(file)
        except AuditReadError as exc:
            _logger.warning("%s", exc)
            summary.unreadable.append(str(file))
            continue
        try:  # read everything first: a file damaged half-way adds nothing, and is listed as unreadable
            with reader:
                is_open = reader.is_open_for_write
                rows = reader.table()
                k = reader.stages.index("total") if "total" in reader.stages else None
                stage_ms = reader.stage_ms() if len(rows) and k is not None else None
                kinds = [e["kind"] for e in reader.events()]
        except AuditReadError as exc:
            _logger.warning("%s", exc)
            summary.unreadable.append(str(file))
            continue
        summary.files.append(str(file))
        if is_open:
            summary.open_files.append(str(file))
        n = len(rows)
        summary.records += n
        verdicts = rows["verdict"]
        faults = rows["fault"] != b""
        summary.faults += int(faults.sum())
        summary.ok += int(((verdicts == b"OK") & ~faults).sum())
        summary.ng += int(((verdicts == b"NG") & ~faults).sum())
        seqs.append(rows["seq"].astype(np.int64))
        if n:
            times += [int(rows["time_ns"].min()), int(rows["time_ns"].max())]
            if stage_ms is not None and k is not None and stage_ms.ndim == 2 and k < stage_ms.shape[1]:
                totals.append(stage_ms[:, k])
        counters["lines"].update(decode_str(v) for v in rows["line"])
        counters["defects"].update(decode_str(v) for v, f in zip(rows["defect"], faults) if v and not f)
        counters["models"].update(decode_str(v) for v in rows["model"])
        counters["events"].update(kinds)
    if seqs and sum(len(s) for s in seqs):
        allseq = np.unique(np.concatenate(seqs))
        summary.first_seq, summary.last_seq = int(allseq[0]), int(allseq[-1])
        summary.missing_seqs = int(allseq[-1] - allseq[0] + 1 - len(allseq))
    if times:
        summary.first_time, summary.last_time = iso_utc(min(times)), iso_utc(max(times))
    for key, counter in counters.items():
        setattr(summary, key, dict(counter.most_common()))
    if totals:
        t = np.concatenate(totals)
        t = t[np.isfinite(t)]
        if t.size:
            summary.latency_ms = {"p50": float(np.percentile(t, 50)), "p95": float(np.percentile(t, 95)),
                                  "max": float(t.max())}
    return summary
