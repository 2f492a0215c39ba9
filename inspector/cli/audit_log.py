"""Audit events of CLI commands that change a station (promote, rollback, calibrate, train).

A command that changes the configuration or the deployed model records who, when and old -> new
in the station's HDF5 audit log folder (``log.folder`` of the config, or ``--log-dir``), with the
same :class:`~inspector.audit.h5log.AuditWriter` the station uses. The folder has one writer at a
time: while a station runs on it the change is refused (nothing is changed) and the message says
to stop the station or to make the change in the station GUI, which records it through the
running station.
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


@contextlib.contextmanager
def audited(station: StationConfig, args: argparse.Namespace) -> Iterator[Recorder]:
    """Hold the station's audit folder for one change; yields the function that records it.

    Raises InspectorError before anything changes when the folder cannot be written (a running
    station holds it, no permission, disk full).
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
    try:
        writer = AuditWriter(folder, station.log, station=station.station, software=f"inspector {__version__} cli")
    except AuditLogError as exc:
        msg = (f"this change cannot be recorded in the audit log, so nothing was changed: {exc}. Stop the station "
               "first, or make the change in the station GUI (it records it through the running station).")
        raise InspectorError(msg) from None
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
