"""Audit events handed to the running station by another process (``inspector models promote`` ...).

An audit folder has one writer: the running station. A command that changes the station while it
runs cannot open the log, so it posts its event here instead: one JSON file per event in
``<log folder>/inbox/``, written to a temporary name, fsynced and renamed, so the station sees whole
events only. The station's log sink writes pending events with its next write (at the latest within
a second when idle) and deletes each file only after the write that holds it was flushed. An event
is therefore recorded at least once: a station killed between its flush and the delete writes it
again after its restart (same ``time_ns``, so a duplicate is recognisable). Files that cannot be read
are renamed ``*.bad`` and reported in the log, never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

from inspector.audit.records import AuditEvent
from inspector.files import atomic_write_text

_logger = logging.getLogger(__name__)

INBOX_DIR = "inbox"
_FIELDS = ("kind", "who", "what", "old", "new", "time_ns")


def inbox_dir(folder: Path) -> Path:
    return Path(folder) / INBOX_DIR


def post(folder: Path, event: AuditEvent) -> Path:
    """Store ``event`` durably for the station writing ``folder``; returns the file."""
    box = inbox_dir(folder)
    box.mkdir(parents=True, exist_ok=True)
    stamp = event.time_ns or time.time_ns()
    data = {"kind": event.kind, "who": event.who, "what": event.what, "old": event.old, "new": event.new,
            "time_ns": stamp}
    name = f"{stamp:020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    atomic_write_text(box / name, json.dumps(data))  # a hidden temp file, fsynced, renamed: whole or absent
    return box / name


def pending(folder: Path) -> list[tuple[Path, AuditEvent]]:
    """Posted events, oldest first (hidden temp files of unfinished posts are not seen).

    Unreadable files are set aside as ``*.bad`` and named in the result as a ``log_inbox_error`` event,
    so QA sees that something was handed in and could not be read.
    """
    box = inbox_dir(folder)
    try:
        names = sorted(n for n in os.listdir(box) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return []
    out: list[tuple[Path, AuditEvent]] = []
    for name in names:
        path = box / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            event = AuditEvent(*(str(data[k]) for k in _FIELDS[:5]), time_ns=int(data["time_ns"]))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = path.with_name(name + ".bad")
            try:
                os.replace(path, bad)
            except OSError:
                _logger.exception("cannot set aside the unreadable inbox file %s", path)
                continue
            _logger.error("audit inbox: %s is unreadable (%s); kept as %s", path, exc, bad.name)
            event = AuditEvent("log_inbox_error", "station", f"unreadable event file kept as {bad.name}: {exc}")
            out.append((bad, event))  # "done" with a .bad file leaves it in place
            continue
        out.append((path, event))
    return out


def done(paths: list[Path]) -> None:
    """The events of ``paths`` are in the flushed log: remove their files (``*.bad`` files stay)."""
    for path in paths:
        if path.name.endswith(".bad"):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _logger.warning("audit inbox: cannot remove %s after logging it (%s); it may be logged again", path, exc)

