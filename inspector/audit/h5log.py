"""HDF5 audit log writer: one record per part, crash-safe (SWMR), rotating by day or size.

Crash-safety guarantee
----------------------
A record is **published** when :meth:`AuditWriter.write` has returned for it: the writer has
appended it to every dataset and called ``flush()`` in SWMR mode. From that moment the record is
in the operating system's file cache, ordered so that the file is consistent, and it survives the
station process dying in any way (``kill -9``, segfault, OOM killer): the file opens and holds
every published record. A record being written when the process dies is either complete or absent.
Power cuts additionally need the data on the disk: the writer fsyncs at most every
``log.fsync_interval_s`` (default 1 s; 0 = every write), so a power cut loses at most that window
on storage that honours fsync.

In the station (:mod:`inspector.station.sinks`) the log writer runs on its own thread and writes
each record as soon as it arrives (batching only what queued up meanwhile). The PLC reply is sent
without waiting for it, so a verdict the PLC received in the last few milliseconds before a crash
(the log lag, ``LoopStats.sinks``) may be missing; observers (dashboard, GUI, ``inspector run``
output) are told about a verdict only after it is published, so anything an operator saw is in the
log. The one exception is counted and recorded: a record the log could not take (queue full, write
failed) still reaches the observers, and a ``log_gap`` event names its seq in the file.
``tests/audit/test_crash.py`` SIGKILLs writer processes at arbitrary points and
``tests/station/test_kill.py`` a running station; both reopen the file and find every published record.

Files and readers
-----------------
Files are created with the HDF5 1.10 library bounds (:data:`LIBVER`, the oldest that has SWMR), so
that HDF5 1.10 tools (Debian 12's ``h5dump``, older MATLAB / HDFView) read them;
they are written in SWMR mode: read a live file with ``h5py.File(path, "r", swmr=True)`` (or
:class:`inspector.audit.reader.AuditReader`). Closed files
(rotated, or at a clean stop) open with any HDF5 tool (h5py, ``h5dump``). A file left open by a
crash is sealed by the next writer on the same folder (:func:`inspector.audit.recovery.seal`,
what ``h5clear -s`` does), and until then it is readable with ``swmr=True``. A folder has one
writer at a time (lock file ``.writer.lock``). Files are never reopened for appending: a new run
or a rotation always starts a new file, so a damaged file can never take earlier ones with it.

When writes fail (disk full, quota, a dying medium) the write raises :class:`AuditLogError`, the
file is set aside as it was at its last flush (HDF5 can neither close nor keep writing such a file)
and the next write starts a new file, after a probe write shows the folder takes data again. A
set-aside file is sealed by the next writer on the folder, like a crashed one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from inspector.audit import catalog, recovery
from inspector.audit.folder import LOCK_NAME, AuditLogError, claim_writer_lock, log_files
from inspector.audit.index import IndexStaleError, LogIndex
from inspector.audit.records import AuditEvent, AuditRecord, event_rows, record_rows, to_text
from inspector.audit.schema import (
    EMBEDDING_CHUNK,
    EVENT_CHUNK,
    EVENT_DTYPE,
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAME_CHUNK,
    HEATMAP_CHUNK,
    INSPECTION_DTYPE,
    STAGES,
    SUFFIX,
    TABLE_CHUNK,
    THUMB_CHUNK,
    fixed_attrs,
)
from inspector.config.log import LogSpec

_logger = logging.getLogger(__name__)

__all__ = ["LIBVER", "LOCK_NAME", "AuditLogError", "AuditWriter", "claim_writer_lock", "log_files"]

_DISK_CHECK_S = 5.0
_PROBE_BYTES = 256 * 1024
# Oldest bounds with SWMR: "latest" (HDF5 2.0 under h5py 3.16) writes layouts 1.10 tools cannot open.
LIBVER = ("v110", "v110")
_INDEX_RETRY_S = 60.0


def _utc_stamp(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _local_day(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ns / 1e9).date()


class AuditWriter:
    """Appends records and events to the current file of a log folder; not thread-safe (one owner).

    ``embedding_dim`` is the embedding width of the first file; a record with another width (a
    changeover to another backbone) starts a new file.
    """

    def __init__(
        self,
        folder: Path,
        spec: LogSpec | None = None,
        *,
        station: str = "station",
        embedding_dim: int = 512,
        software: str = "",
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.folder = Path(folder)
        self.spec = spec or LogSpec()
        self.station = station
        self.software = software
        self.run_id = uuid.uuid4().hex[:16]
        self._clock_ns = clock_ns
        self._emb_dim = int(embedding_dim)
        self._file: h5py.File | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        self._path: Path | None = None
        self._day: dt.date | None = None
        self._last_fsync = 0.0
        self._last_disk_check = 0.0
        self._previous: str = ""
        self._pending_reason = "start"
        self.records_written = 0
        self.files: list[Path] = []  # files this writer created, oldest first
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock = claim_writer_lock(self.folder)
        except OSError as exc:
            msg = (f"audit log folder {self.folder}: {exc.strerror or exc}; set log.folder or --log-dir to a "
                   "writable folder")
            raise AuditLogError(msg) from None
        self.recovered: list[Path] = [p for p in log_files(self.folder) if recovery.seal(p)]
        for path in self.recovered:
            _logger.warning("audit file %s was left open by a crashed run; sealed it (no record lost)", path)
        self.last_seq = self._scan_last_seq()
        self._to_index: list[tuple[str, str, int, np.ndarray, np.ndarray | None]] = []  # kind, file, row, rows, emb
        self._index_retry = 0.0
        self.index: LogIndex | None = None
        self._open_index()
        self._apply_retention()

    # ------------------------------------------------------------------ properties
    @property
    def path(self) -> Path | None:
        """The file being written (None before the first write and after close)."""
        return self._path

    @property
    def embedding_dim(self) -> int:
        return self._emb_dim

    # ------------------------------------------------------------------ writing
    def write(self, records: Sequence[AuditRecord], events: Iterable[AuditEvent] = ()) -> None:
        """Append records (and events) and flush: on return they are published (see module doc)."""
        events = list(events)
        if not records and not events:
            return
        try:
            start = 0
            while start < len(records):
                stop = start
                dim = self._record_dim(records[start])
                while stop < len(records) and self._record_dim(records[stop]) == dim:
                    stop += 1
                self._prepare(records[start].time_ns, dim)
                self._append_records(records[start:stop])
                start = stop
            if events:
                self._prepare(events[0].time_ns or self._clock_ns(), None)
                self._append_events(events)
            self._flush()
        except AuditLogError:
            self._to_index.clear()
            self._abandon()
            raise
        except Exception as exc:  # h5py raises OSError / RuntimeError / ValueError / KeyError
            where = self._path or self.folder
            self._to_index.clear()
            self._abandon(broken=True)
            msg = f"audit log {where}: write failed ({exc}); the next write starts a new file"
            raise AuditLogError(msg) from exc
        self._update_index()
        if self._file is not None and self._path is not None and self._path.stat().st_size > self.spec.max_mb * 1e6:
            self.rotate("size")

    def log_event(self, kind: str, who: str, what: str, old: object = "", new: object = "") -> None:
        """Record a change (config, threshold, model, line) or an incident, and flush it."""
        self.write((), [AuditEvent(kind, who, what, to_text(old), to_text(new), self._clock_ns())])

    def rotate(self, reason: str = "manual") -> None:
        """Close the current file; the next write starts a new one."""
        if self._file is None:
            return
        self._close_file()
        self._pending_reason = reason
        self._apply_retention()

    def close(self) -> None:
        """Flush, fsync and close the file (it is then sealed), and release the folder."""
        try:
            self._close_file()
        finally:
            if self.index is not None:
                self.index.close()
                self.index = None
            self._lock.release()

    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _record_dim(self, record: AuditRecord) -> int:
        return int(record.embedding.shape[-1]) if record.embedding is not None else self._emb_dim

    def _prepare(self, time_ns: int, dim: int | None) -> None:
        """Make sure the right file is open for a record of this time and embedding width."""
        if self._file is not None:
            if self.spec.rotate == "daily" and _local_day(time_ns) != self._day:
                self.rotate("daily")
            elif dim is not None and dim != self._emb_dim:
                self.rotate(f"embedding width {self._emb_dim} -> {dim}")
        if dim is not None:
            self._emb_dim = dim
        now = time.monotonic()
        if now - self._last_disk_check > _DISK_CHECK_S or self._file is None:
            self._last_disk_check = now
            self._check_disk()
        if self._file is None:
            self._open_file(time_ns)

    def _check_disk(self) -> None:
        free_mb = shutil.disk_usage(self.folder).free / 1e6
        if free_mb < self.spec.min_free_mb:
            msg = (f"audit log folder {self.folder}: only {free_mb:.0f} MB free (log.min_free_mb is "
                   f"{self.spec.min_free_mb:.0f}); free disk space or move the log (log.folder / --log-dir)")
            raise AuditLogError(msg)

    def _new_path(self, time_ns: int) -> Path:
        base = f"{self.station}_{_utc_stamp(time_ns)}"
        path = self.folder / f"{base}{SUFFIX}"
        k = 1
        while path.exists():
            path = self.folder / f"{base}_{k}{SUFFIX}"
            k += 1
        return path

    def _probe_writable(self) -> None:
        """Write, sync and remove a small file before a new log file is created.

        A folder that takes no data (full disk or quota, a file-size limit, a dying medium) must fail
        here, with a clear error: inside HDF5, starting SWMR on a new file whose writes fail crashes the
        process (segmentation fault with h5py 3.16 / HDF5 2.0; benchmarks/faults.py ``disk``).
        """
        probe = self.folder / f".probe-{os.getpid()}"
        try:
            with probe.open("wb") as fh:
                fh.write(bytes(_PROBE_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            msg = (f"audit log folder {self.folder}: cannot write ({exc.strerror or exc}); free disk space or move "
                   "the log (log.folder / --log-dir)")
            raise AuditLogError(msg) from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def _open_file(self, time_ns: int) -> None:
        self._probe_writable()
        path = self._new_path(time_ns)
        spec = self.spec
        f = h5py.File(path, "w-", libver=LIBVER)
        try:
            f.attrs.update(fixed_attrs({
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "station": self.station,
                "run_id": self.run_id,
                "created_utc": dt.datetime.fromtimestamp(time_ns / 1e9, dt.UTC).isoformat(),
                "host": socket.gethostname(),
                "software": self.software,
                "stages": STAGES,
                "embedding_dim": self._emb_dim,
                "heatmap_px": spec.heatmap_px,
                "previous_file": self._previous,
                "opened_because": self._pending_reason,
            }))
            gz = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
            ds = {
                "inspections": f.create_dataset("inspections", (0,), INSPECTION_DTYPE, maxshape=(None,),
                                                chunks=(TABLE_CHUNK,), **gz),
                "events": f.create_dataset("events", (0,), EVENT_DTYPE, maxshape=(None,), chunks=(EVENT_CHUNK,),
                                           **gz),
                # Uncompressed on purpose: SWMR rewrites a compressed partial chunk at every flush
                # (measured 2.6x file growth), and embeddings barely compress anyway.
                "stage_ms": f.create_dataset("stage_ms", (0, len(STAGES)), np.float32, maxshape=(None, len(STAGES)),
                                             chunks=(TABLE_CHUNK, len(STAGES)), fillvalue=np.nan),
                "embedding": f.create_dataset("embedding", (0, self._emb_dim), np.float16,
                                              maxshape=(None, self._emb_dim), chunks=(EMBEDDING_CHUNK, self._emb_dim),
                                              fillvalue=np.nan),
                "thumbnails": f.create_dataset("thumbnails", (0,), np.uint8, maxshape=(None,), chunks=(THUMB_CHUNK,)),
                "frames": f.create_dataset("frames", (0,), np.uint8, maxshape=(None,), chunks=(FRAME_CHUNK,)),
            }
            if spec.heatmap_px > 0:
                p = spec.heatmap_px
                ds["heatmap"] = f.create_dataset("heatmap", (0, p, p), np.float16, maxshape=(None, p, p),
                                                 chunks=(HEATMAP_CHUNK, p, p), fillvalue=np.nan)
            ds["stage_ms"].attrs.update(fixed_attrs({"stages": STAGES}))
            f.flush()  # a write failure shows here as an exception, not inside the SWMR start (see above)
            f.swmr_mode = True
        except BaseException:
            _set_aside(f, {})
            path.unlink(missing_ok=True)
            raise
        self._file, self._ds, self._path = f, ds, path
        self._day = _local_day(time_ns)
        self.files.append(path)
        _logger.info("audit log: writing %s", path)

    def _append_records(self, records: Sequence[AuditRecord]) -> None:
        ds = self._ds
        table, emb, stages, heat = record_rows(records, self._emb_dim, self.spec.heatmap_px if "heatmap" in ds else 0)
        table["thumb_offset"], table["thumb_size"] = self._append_blobs(ds["thumbnails"],
                                                                        [r.thumbnail_jpeg for r in records])
        table["frame_offset"], table["frame_size"] = self._append_blobs(ds["frames"], [r.frame_png for r in records])
        start = ds["inspections"].shape[0]
        _extend(ds["embedding"], start, emb)
        _extend(ds["stage_ms"], start, stages)
        if heat is not None:
            _extend(ds["heatmap"], start, heat)
        _extend(ds["inspections"], start, table)  # last: the table length is what readers trust
        self._to_index.append(("r", self._path.name if self._path else "", start, table, emb))
        self.records_written += len(records)
        self.last_seq = max(self.last_seq, max(r.seq for r in records))

    def _append_events(self, events: Sequence[AuditEvent]) -> None:
        events_ds = self._ds["events"]
        start, rows = events_ds.shape[0], event_rows(events, self.last_seq, self._clock_ns)
        _extend(events_ds, start, rows)
        self._to_index.append(("e", self._path.name if self._path else "", start, rows, None))

    @staticmethod
    def _append_blobs(dataset: h5py.Dataset, blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        sizes = np.array([len(b) for b in blobs], dtype=np.uint64)
        start = dataset.shape[0]
        offsets = start + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
        total = int(sizes.sum())
        if total:
            data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
            _extend(dataset, start, data)
        offsets[sizes == 0] = 0
        return offsets, sizes.astype(np.uint32)

    def _flush(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        interval = self.spec.fsync_interval_s
        now = time.monotonic()
        if interval is not None and now - self._last_fsync >= interval:
            os.fsync(self._file.id.get_vfd_handle())
            self._last_fsync = now

    def _close_file(self) -> None:
        if self._file is None:
            return
        f, path = self._file, self._path
        ds, self._file, self._ds, self._path = self._ds, None, {}, None
        try:
            f.flush()
            os.fsync(f.id.get_vfd_handle())
        except Exception:
            _set_aside(f, ds)
            raise
        f.close()
        self._previous = path.name if path else ""
        _logger.info("audit log: closed %s", path)

    def _abandon(self, broken: bool = False) -> None:
        """After a failed write: drop the file (what was published in it stays readable).

        ``broken``: an HDF5 write or flush failed, so the file is set aside without touching it again.
        """
        if self._file is not None:
            if broken:
                _set_aside(self._file, self._ds)
            else:
                with contextlib.suppress(Exception):
                    self._close_file()
            self._file, self._ds, self._path = None, {}, None
            self._pending_reason = "previous write failed"

    # ------------------------------------------------------------------ the index (inspector.audit.index)
    def _open_index(self) -> None:
        """Open the folder's index and catch it up with the files; a failure costs the index, never the log."""
        try:
            self.index = catalog.open_writable(self.folder)
            added = catalog.sync(self.index, self.folder)
            if added:
                _logger.info("audit index of %s: %d record(s) indexed from the HDF5 files", self.folder, added)
            self._index_behind = False
        except (sqlite3.Error, OSError, IndexStaleError, ValueError) as exc:
            _logger.warning("audit index of %s cannot be written (%s); retried later, the HDF5 log is unaffected",
                            self.folder, exc)
            self._index_behind = True

    def _update_index(self) -> None:
        """Index what the last write published (after its flush: the HDF5 file is ahead, never behind)."""
        items, self._to_index = self._to_index, []
        if self.index is None or self._index_behind:
            if time.monotonic() >= self._index_retry:
                self._index_retry = time.monotonic() + _INDEX_RETRY_S
                if self.index is not None:
                    self.index.close()
                self._open_index()  # catches up from the files, this write included
            return
        try:
            for kind, name, start, rows, emb in items:
                if kind == "r":
                    self.index.add_records(name, start, rows, emb)
                else:
                    self.index.add_events(name, start, rows)
        except (sqlite3.Error, OSError, IndexStaleError, ValueError) as exc:
            _logger.warning("audit index of %s fell behind (%s); it catches up from the HDF5 files", self.folder, exc)
            self._index_behind = True

    def _scan_last_seq(self) -> int:
        # Capped SWMR metadata retries (recovery.open_swmr): a damaged file must not stall the start-up.
        for path in reversed(log_files(self.folder)):
            cut = recovery.truncation(path)
            if cut is not None:
                _logger.warning("audit file %s is truncated (%d of %d bytes); skipped when resuming the sequence",
                                path, *cut)
                continue
            try:
                with recovery.open_swmr(path) as f:
                    table = f["inspections"]
                    if table.shape[0]:
                        return int(table[table.shape[0] - 1]["seq"])
            except (OSError, KeyError) as exc:
                _logger.warning("audit file %s is unreadable (%s); skipped when resuming the sequence", path, exc)
        return 0

    def _apply_retention(self) -> None:
        if self.spec.keep_days is None:
            return
        cutoff = time.time() - self.spec.keep_days * 86400
        for path in log_files(self.folder):
            if path != self._path and path.stat().st_mtime < cutoff:
                try:
                    path.unlink()
                    _logger.info("audit log: deleted %s (older than log.keep_days)", path)
                    if self.index is not None:  # its index rows and embedding side files go with it
                        self.index.forget(path.name)
                except (OSError, sqlite3.Error) as exc:
                    _logger.warning("audit log: cannot delete old file %s: %s", path, exc)


# Files whose HDF5 writes failed. HDF5 (2.0, h5py 3.16) cannot close such a file: closing it, or
# letting its dataset objects be freed, fails ("slist already enabled") or crashes the process, and
# so does starting SWMR on a new file after such an attempt (benchmarks/faults.py, scenario disk).
# So they are kept, untouched, until the process ends; what was flushed before the failure stays
# readable (SWMR), and the next writer on the folder seals the file like a crashed one.
_SET_ASIDE: list[tuple[h5py.File, dict[str, h5py.Dataset]]] = []


def _set_aside(f: h5py.File, datasets: dict[str, h5py.Dataset]) -> None:
    # HDF5 flushes every open file when the process ends: that late flush of the half-failed state
    # wrote a record of zeros into the file, and crashed when it failed. /dev/null on the file's
    # descriptor swallows it; the descriptor number stays taken, so nothing else is written through it.
    # Same-process readers of that file fail from then on (HDF5 shares one handle per file).
    with contextlib.suppress(Exception):
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, f.id.get_vfd_handle())
        finally:
            os.close(null)
    _SET_ASIDE.append((f, datasets))
    _logger.warning("audit log: a file whose writes failed is set aside open (%d so far in this process)",
                    len(_SET_ASIDE))


def _extend(dataset: h5py.Dataset, start: int, data: np.ndarray) -> None:
    dataset.resize(start + len(data), axis=0)
    dataset[start : start + len(data)] = data
