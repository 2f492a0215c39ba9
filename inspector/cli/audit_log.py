"""Audit events of CLI commands that change a station (promote, rollback, calibrate, train).

A command that changes the configuration or the deployed model records who, when and old -> new
in the station's HDF5 audit log folder (``log.folder`` of the config, or ``--log-dir``), with the
same :class:`~inspector.audit.h5log.AuditWriter` the station uses. The folder has one writer at a
time. While a station runs on it, a change the running station applies by itself (a model
promotion or rollback: it follows the registry) is handed to that station, which writes the event
into its log (:mod:`inspector.audit.inbox`); any other change is refused (nothing is changed) and
the message says to stop the station or to make the change in the station GUI.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.errors import InspectorError

if TYPE_CHECKING:
    from inspector.config import StationConfig

_logger = logging.getLogger(__name__)

# (kind, who, what, old, new): the signature of inspector.training.registry.AuditHook
Recorder = Callable[[str, str, str, object, object], None]


def add_audit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--who", metavar="NAME", help="who makes the change, for the audit log (default: OS user)")
    parser.add_argument("--log-dir", type=Path, metavar="DIR",
                        help="the station's audit log folder (default: log.folder of the config)")


def who(args: argparse.Namespace) -> str:
    """The name recorded with the change: ``--who``, else the OS user; the OS user is added when they differ."""
    from inspector.training.registry import current_user

    user = current_user()
    named = (getattr(args, "who", None) or "").strip()
    if not named or named == user:
        return user
    return f"{named} (os:{user})"


def log_folder(station: StationConfig, args: argparse.Namespace) -> Path | None:
    """The audit folder the station writes to; None when the config disables the log."""
    if getattr(args, "log_dir", None) is not None:
        return Path(args.log_dir)
    if not station.log.enabled:
        return None
    return station.resolve(station.log.folder)


def running_station(folder: Path) -> str | None:
    """Who runs a station on ``folder`` (``pid 123 on host``), or None when no station holds it."""
    from inspector.station.standby import STATION_LOCK_NAME, station_lock

    if not (folder / STATION_LOCK_NAME).exists():
        return None
    lock = station_lock(folder)
    try:
        return None if lock.try_acquire() else lock.holder()
    finally:
        lock.release()


@contextlib.contextmanager
def audited(station: StationConfig, args: argparse.Namespace, *, via_station: bool = False) -> Iterator[Recorder]:
    """Hold the station's audit folder for one change; yields the function that records it.

    ``via_station``: the running station applies this change by itself (promotion, rollback), so while
    one runs the event is handed to it instead of refusing. Raises InspectorError before anything
    changes when the change cannot be recorded (a running station holds the folder, no permission,
    disk full).
    """
    from inspector import __version__
    from inspector.audit.h5log import AuditLogError, AuditWriter

    folder = log_folder(station, args)
    if folder is None:
        _logger.warning("log.enabled is false: this change is not recorded in an audit log")

        def to_logger(kind: str, who: str, what: str, old: object, new: object) -> None:
            _logger.warning("%s by %s: %s (%s -> %s)", kind, who, what, old, new)

        yield to_logger
        return
    holder: str | None = None
    try:
        writer = AuditWriter(folder, station.log, station=station.station, software=f"inspector {__version__} cli")
    except AuditLogError as exc:
        holder = running_station(folder) if via_station else None
        if holder is None:
            msg = (f"this change cannot be recorded in the audit log, so nothing was changed: {exc}. Stop the station "
                   "first, or make the change in the station GUI (it records it through the running station).")
            raise InspectorError(msg) from None
    if holder is not None:
        yield _hand_in(folder, holder)
        return
    try:
        yield writer.log_event
    finally:
        writer.close()


def check_writable(station: StationConfig, args: argparse.Namespace) -> None:
    """Fail now (not after a long run) if a change made later could not be recorded."""
    with audited(station, args):
        pass


def recorder(station: StationConfig, args: argparse.Namespace) -> Recorder:
    """A hook that opens the audit folder for each event (for long commands that must not hold it)."""

    def record(kind: str, who: str, what: str, old: object, new: object) -> None:
        with audited(station, args) as log:
            log(kind, who, what, old, new)

    return record


def _hand_in(folder: Path, holder: str) -> Recorder:
    """A recorder that posts events to the running station's inbox (it writes them into its log)."""
    import time

    from rich.console import Console

    from inspector.audit import inbox
    from inspector.audit.records import AuditEvent, to_text

    def record(kind: str, who: str, what: str, old: object, new: object) -> None:
        path = inbox.post(folder, AuditEvent(kind, who, what, to_text(old), to_text(new), time.time_ns()))
        Console(stderr=True).print(f"recorded through the running station ({holder}): {kind} handed to its "
                                   f"audit log ({path.parent.name}/{path.name})", highlight=False, soft_wrap=True)

    return record
