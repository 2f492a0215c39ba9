"""A log folder: its audit files in order, its writer lock, and where its index lives."""

from __future__ import annotations

import re
from pathlib import Path

from inspector.audit.schema import SUFFIX
from inspector.errors import InspectorError
from inspector.files import FolderLock

LOCK_NAME = ".writer.lock"
INDEX_DIR = ".index"  # the SQLite index and the embedding side files (inspector.audit.index)
_STAMP_RE = re.compile(r"_(\d{8}T\d{6}Z)(?:_(\d+))?$")


class AuditLogError(InspectorError):
    """The audit log cannot be written (folder, disk space, another writer, HDF5 error)."""


def claim_writer_lock(folder: Path) -> FolderLock:
    """The folder's writer lock, taken now; :class:`AuditLogError` naming the holder when another has it."""
    return FolderLock(folder, LOCK_NAME).claim(lambda owner: AuditLogError(
        f"audit log folder {folder} is in use by {owner}; each station needs its own log folder "
        "(log.folder or --log-dir)"))


def log_files(folder: Path) -> list[Path]:
    """Audit files in ``folder``, oldest first (names end with their UTC creation time)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.suffix == SUFFIX and p.is_file()]

    def order(path: Path) -> tuple[str, int, str]:
        m = _STAMP_RE.search(path.stem)
        return (m.group(1), int(m.group(2) or 0), path.name) if m else ("", 0, path.name)

    return sorted(files, key=order)


def index_dir(folder: Path) -> Path:
    return Path(folder) / INDEX_DIR
