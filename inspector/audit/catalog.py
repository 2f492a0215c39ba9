"""Keeping the index in step with the HDF5 files: catch up, rebuild, open for readers.

The HDF5 files are the record of truth. :func:`sync` compares what the index holds per file with
the files themselves and indexes what is missing (a new folder, an index deleted or damaged, records
written while the index could not be written); rows of deleted files are dropped. Writing the index
needs the folder's writer lock: the station's writer does it at its start and after each write;
:func:`open_index` does it for a reader when no station holds the folder.

A folder this process may not write (a read-only share, an archive copy years later) is read through its
own index when that is complete; otherwise the index is built from the files into a private folder in the
user's cache (:func:`private_index_dir`), never into the log folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from pathlib import Path

from inspector.audit.folder import LOCK_NAME, AuditLogError, claim_writer_lock, index_dir, log_files
from inspector.audit.index import DB_NAME, LogIndex
from inspector.audit.reader import AuditReader, AuditReadError
from inspector.files import FolderLock

_logger = logging.getLogger(__name__)
_BLOCK = 4096


def open_writable(folder: Path, where: Path | None = None) -> LogIndex:
    """The folder's index for writing (writer lock held); a damaged or foreign-version index is started anew.

    ``where``: the index's folder when it is not ``<folder>/.index`` (a private index, :func:`open_index`).
    """
    try:
        return LogIndex(folder, where=where)
    except sqlite3.DatabaseError as exc:
        _logger.warning("audit index of %s is unusable (%s); rebuilding it from the HDF5 files", folder, exc)
        discard(folder, where)
        return LogIndex(folder, where=where)


def discard(folder: Path, where: Path | None = None) -> None:
    """Delete the index and its side files (they are rebuilt from the HDF5 files)."""
    where = Path(where) if where is not None else index_dir(folder)
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
    missing); while a station runs, its writer keeps it current. A folder this process may not write is
    read through its own index when complete, else through a private one (:func:`private_index_dir`).
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
        except OSError as exc:  # the lock file cannot be created or opened: a read-only folder
            _logger.info("%s is read-only for this process (%s)", folder, exc)
            return _open_read_only(folder)
        if lock is not None:
            try:
                with open_writable(folder) as index:
                    added = sync(index, folder)
                if added:
                    _logger.info("index of %s: %d record(s) added from the HDF5 files", folder, added)
            except (OSError, sqlite3.OperationalError) as exc:  # the index folder or database is not writable
                _logger.info("index of %s cannot be written (%s)", folder, exc)
                lock.release()
                return _open_read_only(folder)
            finally:
                lock.release()  # (releasing twice is harmless)
    if not (index_dir(folder) / DB_NAME).is_file():
        msg = (f"{folder}: no index yet (the running station builds it at its start: restart it, or query "
               "again once it has stopped)")
        raise AuditReadError(msg)
    return LogIndex(folder, readonly=True)


def private_index_dir(folder: Path) -> Path:
    """Where the index of a log folder this process may not write is built: the user's cache, per folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return base / "inspector" / "history-index" / key


def behind(index: LogIndex, folder: Path) -> bool:
    """Whether the index misses records or events of the folder's readable files, or lists deleted files."""
    state = index.file_state()
    files = log_files(folder)
    if set(state) - {p.name for p in files}:
        return True
    for path in files:
        try:
            with AuditReader(path) as reader:
                n, n_events = len(reader), reader.event_count()
        except AuditReadError:
            continue  # sync skips it too
        rows, events, dim = state.get(path.name, (0, 0, 0))  # (an empty file is never indexed)
        if (rows, events) != (n, n_events) or (dim and index.side_files(path.name, dim).rows() < rows):
            return True
    return False


def _open_read_only(folder: Path) -> LogIndex:
    """The index of a folder this process may not write: its own when complete, else a private one."""
    try:
        own = LogIndex(folder, readonly=True)
    except sqlite3.Error as exc:
        why = f"its index cannot be read ({exc})"
    else:
        if not behind(own, folder):
            return own
        own.close()
        why = "its index is behind the files"
    where = private_index_dir(folder)
    _logger.warning("%s is read-only and %s: indexing it into %s", folder, why, where)
    where.mkdir(parents=True, exist_ok=True)
    (where / "log-folder.txt").write_text(f"{Path(folder).resolve()}\n", encoding="utf-8")
    lock = FolderLock(where, LOCK_NAME)
    try:
        lock.acquire()  # another viewer of the same folder may be building it: wait for it
        with open_writable(folder, where) as index:
            sync(index, folder)
    finally:
        lock.release()
    return LogIndex(folder, readonly=True, where=where)
