"""Keeping the index in step with the HDF5 files: catch up, rebuild, open for readers.

The HDF5 files are the record of truth. :func:`sync` compares what the index holds per file with
the files themselves and indexes what is missing (a new folder, an index deleted or damaged, records
written while the index could not be written); rows of deleted files are dropped. Writing the index
needs the folder's writer lock: the station's writer does it at its start and after each write;
:func:`open_index` does it for a reader when no station holds the folder.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from inspector.audit.folder import AuditLogError, claim_writer_lock, index_dir, log_files
from inspector.audit.index import DB_NAME, LogIndex
from inspector.audit.reader import AuditReader, AuditReadError

_logger = logging.getLogger(__name__)
_BLOCK = 4096


def open_writable(folder: Path) -> LogIndex:
    """The folder's index for writing (writer lock held); a damaged or foreign-version index is started anew."""
    try:
        return LogIndex(folder)
    except sqlite3.DatabaseError as exc:
        _logger.warning("audit index of %s is unusable (%s); rebuilding it from the HDF5 files", folder, exc)
        discard(folder)
        return LogIndex(folder)


def discard(folder: Path) -> None:
    """Delete the index and its side files (they are rebuilt from the HDF5 files)."""
    where = index_dir(folder)
    if where.is_dir():
        for path in where.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)


def sync(index: LogIndex, folder: Path) -> int:
    """Index every record and event of ``folder``'s files not yet indexed; returns the records added."""
    state = index.file_state()
    files = log_files(folder)
    for name in set(state) - {p.name for p in files}:
        index.forget(name)
    added = 0
    for path in files:
        rows, events, dim = state.get(path.name, (0, 0, 0))
        try:
            reader = AuditReader(path)
        except AuditReadError as exc:
            _logger.warning("index: %s", exc)
            continue
        try:
            with reader:
                added += _sync_file(index, reader, rows, events, dim)
        except (AuditReadError, ValueError) as exc:
            _logger.warning("index: %s: %s (indexed as far as readable)", path.name, exc)
    return added


def _sync_file(index: LogIndex, reader: AuditReader, rows: int, events: int, dim: int) -> int:
    name = reader.path.name
    n = len(reader)
    n_events = reader.event_count()
    if n < rows or n_events < events or (dim and index.side_files(name, dim).rows() < rows):
        _logger.warning("index of %s does not match the file; re-indexing it", name)
        index.forget(name)
        rows = events = 0
    elif dim:
        index.side_files(name, dim).truncate(rows)
    for start in range(rows, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        index.add_records(name, start, reader.table(start, stop), reader.embeddings(start, stop))
    if n_events > events:
        index.add_events(name, events, reader.event_table(events))
    return n - rows


def open_index(folder: Path, *, refresh: bool = True) -> LogIndex:
    """The folder's index for reading (queries, the History view).

    ``refresh``: when no station holds the folder, bring the index up to date first (building it if
    missing); while a station runs, its writer keeps it current.
    """
    folder = Path(folder)
    if not folder.is_dir():
        msg = f"{folder}: no such log folder (log.folder / --log-dir)"
        raise AuditReadError(msg)
    if refresh:
        try:
            lock = claim_writer_lock(folder)
        except AuditLogError:
            lock = None
        if lock is not None:
            try:
                with open_writable(folder) as index:
                    added = sync(index, folder)
                if added:
                    _logger.info("index of %s: %d record(s) added from the HDF5 files", folder, added)
            finally:
                lock.release()
    if not (index_dir(folder) / DB_NAME).is_file():
        msg = (f"{folder}: no index yet (the running station builds it at its start: restart it, or query "
               "again once it has stopped)")
        raise AuditReadError(msg)
    return LogIndex(folder, readonly=True)
