"""Which process is the active station of a log folder, and the warm standby that waits to replace it.

A station process that dies (``kill -9``, a crash, an OOM kill) is normally restarted by the service
manager, and a new Python process spends seconds importing torch / open_clip and loading the line
before it can answer the PLC again. A *warm standby* (``inspector run --standby``) is a second
process that has already done all of that and waits on the folder's station lock; the kernel hands
it the lock the moment the active process ends, however it ends, and it starts the line at once:
seals the crashed audit file, opens the camera and the PLC port, and answers the next trigger.

The lock is ``<log folder>/.station.lock`` (POSIX ``flock``): every ``inspector run`` holds it for its
whole life, so a second station on the same folder is refused, and a standby simply blocks on it.

The running station also remembers its product line (``<log folder>/.station-line.json``, written at
start and after every changeover), so a restart or a takeover resumes the line the PLC or the operator
last chose instead of the config's first line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.errors import InspectorError
from inspector.files import FolderLock, atomic_write_text

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no station lock, no standby
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from inspector.config import StationConfig

_logger = logging.getLogger(__name__)

STATION_LOCK_NAME = ".station.lock"
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)  # (POSIX: a child process such as a camera helper never inherits it)
LINE_MEMORY_NAME = ".station-line.json"


class StationBusyError(InspectorError):
    """Another process is the active station of this log folder."""


def station_lock(folder: Path) -> FolderLock:
    """The (not yet taken) station lock of a log folder: ``try_acquire`` to start, ``acquire`` to wait as a standby."""
    path = Path(folder) / STATION_LOCK_NAME
    try:
        return FolderLock(folder, STATION_LOCK_NAME)
    except OSError as exc:
        msg = f"cannot create the station lock {path}: {exc}; check log.folder (or --log-dir) is writable"
        raise InspectorError(msg) from exc


def claim_station(folder: Path) -> FolderLock:
    """The lock of an active station, taken now; :class:`StationBusyError` naming the holder when taken."""
    return station_lock(folder).claim(lambda holder: StationBusyError(
        f"a station is already running on log folder {folder} ({holder}); stop it first, or start this one "
        "with --standby to wait as its warm standby"))


def wait_writer_free(folder: Path, timeout_s: float = 5.0) -> bool:
    """Wait until no process holds the audit writer lock of ``folder`` (a dying station releases it last).

    The kernel releases a killed process's locks one descriptor at a time: the station lock can come
    free a moment before the audit writer's lock does.
    """
    from inspector.audit.h5log import LOCK_NAME

    path = Path(folder) / LOCK_NAME
    if fcntl is None or not path.exists():
        return True
    deadline = time.monotonic() + timeout_s
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
    finally:
        os.close(fd)


def station_fingerprint(station: StationConfig) -> str:
    """sha256 over the config file and every line's few-shot folder listing (names, sizes, mtimes).

    A standby loaded its lines when it started; if any of this changed while it waited it reloads
    before it takes over, so it never runs lines older than what a fresh start would load.
    """
    digest = hashlib.sha256()
    if station.source is not None:
        with contextlib.suppress(OSError):
            digest.update(Path(station.source).read_bytes())
    for line in station.lines:
        if line.fewshot.folder is None:
            continue
        root = station.resolve(line.fewshot.folder)
        digest.update(f"{line.name}\0{root}\n".encode())
        for path in sorted(root.rglob("*")) if root.is_dir() else ():
            with contextlib.suppress(OSError):
                st = path.stat()
                digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def resumable_line(station: StationConfig, folder: Path) -> str | None:
    """The line the last station on ``folder`` ran, if this config still has it (else None, with a warning)."""
    line = remembered_line(folder)
    if line is None:
        return None
    if line not in {x.name for x in station.lines}:
        _logger.warning("the last station on %s ran line %r, which this config does not have; starting on %s",
                        folder, line, station.line().name)
        return None
    _logger.info("resuming line %s (the line the last station on %s was running)", line, folder)
    return line


def remembered_line(folder: Path) -> str | None:
    """The line the last station on this log folder was running (None: nothing remembered or unreadable)."""
    path = Path(folder) / LINE_MEMORY_NAME
    try:
        line = json.loads(path.read_text(encoding="utf-8")).get("line")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        _logger.warning("ignoring %s (%s); starting on the configured line", path, exc)
        return None
    return line if isinstance(line, str) and line else None


def remember_line(folder: Path, line: str) -> None:
    """Record the running line (temp file + fsync + rename: a crash leaves the old or the new one)."""
    path = Path(folder) / LINE_MEMORY_NAME
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        atomic_write_text(path, json.dumps({"line": line, "since": since}))
    except OSError as exc:  # never stops the station: a restart then starts on the configured line
        _logger.warning("cannot record the running line in %s: %s", path, exc)
