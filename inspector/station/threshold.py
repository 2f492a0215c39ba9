"""One live threshold per line: its record, where it is kept, and the one path that changes it.

A :class:`ThresholdRecord` says what a line decides with: the value, how it was chosen (method,
target, false-reject interval when the calibration has one), from which files (with their hashes),
for which model version, who chose it, when and why. :class:`ThresholdBook` keeps, per line, the
record of each model version and which one is live, in ``<log folder>/.live-thresholds.json``
(beside the line memory): that file is the single source of truth a restart comes up with.

:func:`set_live_threshold` is the only way a threshold becomes live: it sets the engine's
threshold (when an engine is given), writes the book and records ``threshold_change`` (old -> new,
who, why) in the audit log. Approve, roll back, prompt apply, threshold apply, ``inspector
calibrate`` and the mutual head's switch-on (station/mutual.py) all call it; :func:`threshold_for`
says which record a model version runs with.

Precedence: the book's record of a version wins. The YAML's ``decision.threshold`` is the
engineer's hand-written threshold of the ``base`` heads: it seeds base's record when there is none,
and when it differs from the value the record last saw in the file (someone edited the YAML), the
file wins and the change is recorded like any other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.files import atomic_write_text

if TYPE_CHECKING:
    from inspector.config import LineConfig
    from inspector.engine import Inspector
    from inspector.training.registry import ModelRegistry

_logger = logging.getLogger(__name__)

THRESHOLDS_NAME = ".live-thresholds.json"
BASE = "base"  # the registry's name for "no trained adapter" (inspector.training.registry.BASE)
EVENT_KIND = "threshold_change"

LogEvent = Callable[..., None]  # (kind, who, what, old="", new="") -> None


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def file_hashes(paths: Iterable[Path | str], limit: int = 64) -> dict[str, str]:
    """sha256 (first 16 hex digits) of each readable file, by name; at most ``limit`` files."""
    out: dict[str, str] = {}
    for path in list(paths)[:limit]:
        try:
            out[str(path)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        except OSError:
            out[str(path)] = "unreadable"
    return out


@dataclass(frozen=True)
class ThresholdRecord:
    """The live threshold of a line and where it came from (see the module doc)."""

    value: float
    method: str  # manual | config | version | false_reject | f1 | cost | production | engine | mutual_on
    version: str = BASE
    target: float | None = None
    interval: tuple[float, float] | None = None
    files: dict[str, str] = field(default_factory=dict)  # file -> sha256 prefix
    who: str = "station"
    when: str = ""
    why: str = ""
    config_value: float | None = None  # the YAML's decision.threshold when this was recorded

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval) if self.interval is not None else None
        return data

    def summary(self) -> dict[str, Any]:
        """The record for an audit event: the file list as a count and one digest (an event field is short)."""
        data = self.to_json()
        files = data.pop("files")
        data["files"] = len(files)
        data["files_sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        data["why"] = self.why[:160]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ThresholdRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        interval = known.get("interval")
        known["interval"] = tuple(float(x) for x in interval) if interval else None
        known["value"] = float(known["value"])
        return cls(**known)

    def same_choice(self, other: ThresholdRecord | None) -> bool:
        """Same value, version and origin (who / when / why aside): re-applying it is no change."""
        return other is not None and (self.value, self.version, self.method) == (other.value, other.version,
                                                                                  other.method)

    def source(self) -> str:
        """One line for the GUI / CLI: where this value came from."""
        how = {"manual": "set by hand", "config": "the config file's decision.threshold",
               "version": f"model {self.version}'s calibration", "production": "recalibrated from production parts",
               "mutual_on": "recalibrated from the mutual buffer at switch-on",
               "engine": "the engine's own calibration"}.get(self.method, f"calibrated ({self.method})")
        parts = [how]
        if self.target is not None:
            parts.append(f"target {100 * self.target:.1f} %")
        if self.interval is not None:
            parts.append(f"expected {100 * self.interval[0]:.1f}-{100 * self.interval[1]:.1f} %")
        if self.who or self.when:
            parts.append(f"by {self.who} {self.when.replace('T', ' ')[:19]}".rstrip())
        return ", ".join(parts)


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


class ThresholdBook:
    """Per line: the record of each model version and the live one, in ``<folder>/.live-thresholds.json``."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / THRESHOLDS_NAME
        # One lock per file in this process: the GUI's handle and the running loop's follower each hold a
        # book on the same file, and a change (read, compare, write, log) must not interleave with another.
        with _LOCKS_GUARD:
            self.lock = _LOCKS.setdefault(str(self.path.resolve()), threading.RLock())

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"lines": {}}
        except (OSError, ValueError) as exc:  # a damaged book: start from the config, loudly
            _logger.error("%s unreadable (%s); thresholds come from the config and model versions", self.path, exc)
            return {"lines": {}}
        return data if isinstance(data.get("lines"), dict) else {"lines": {}}

    def record(self, line: str, version: str) -> ThresholdRecord | None:
        entry = self._read()["lines"].get(line, {}).get("versions", {}).get(version)
        return ThresholdRecord.from_json(entry) if entry else None

    def live(self, line: str) -> ThresholdRecord | None:
        """The record the line runs with now (None: nothing recorded yet)."""
        version = self._read()["lines"].get(line, {}).get("live")
        return self.record(line, version) if version is not None else None

    def put(self, line: str, record: ThresholdRecord, *, live: bool = True) -> None:
        with self.lock:
            data = self._read()
            entry = data["lines"].setdefault(line, {"live": None, "versions": {}})
            entry.setdefault("versions", {})[record.version] = record.to_json()
            if live:
                entry["live"] = record.version
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data, indent=2) + "\n")


def config_record(line: LineConfig, who: str = "config file") -> ThresholdRecord | None:
    """The YAML's hand-written base threshold as a record (None when the file fixes none)."""
    value = line.decision.threshold
    if value is None:
        return None
    calib = line.decision.calibration
    rec = calib.record or {}
    return ThresholdRecord(float(value), "config", BASE, target=rec.get("target_false_reject"), who=who, when=now(),
                           why="decision.threshold in the station config", config_value=float(value))


def threshold_for(line: LineConfig, version: str, book: ThresholdBook | None, calibrated: float | None,
                  engine_value: float | None = None, *, file_wins: bool = True) -> ThresholdRecord:
    """The record ``version`` of ``line`` runs with (see the module doc for the precedence).

    ``calibrated``: the version's own calibrated threshold (registry metrics; for base the engine's
    calibration); ``engine_value``: the engine's current value, the last resort. ``file_wins``: a
    hand edit of the YAML (``line`` as read at start) beats base's record; off for swaps within a run,
    where ``line`` may predate the book's last record.
    """
    kept = book.record(line.name, version) if book is not None else None
    if version == BASE:
        from_file = config_record(line)
        edited = file_wins and kept is not None and kept.config_value != (from_file.value if from_file else None)
        if from_file is not None and (kept is None or edited):
            return from_file  # no record yet, or the file was edited by hand since: the file wins
    if kept is not None:
        return kept
    if calibrated is not None:
        method = "version" if version != BASE else "engine"
        return ThresholdRecord(float(calibrated), method, version, who="station", when=now(),
                               why=f"{version}'s own calibrated threshold", config_value=line.decision.threshold)
    value = 0.5 if engine_value is None else float(engine_value)
    return ThresholdRecord(value, "engine", version, who="station", when=now(), why="the engine's default",
                           config_value=line.decision.threshold)


def set_live_threshold(line: str, record: ThresholdRecord, *, book: ThresholdBook | None, log_event: LogEvent,
                       inspector: Inspector | None = None, live: bool = True, by: str = "") -> ThresholdRecord | None:
    """THE path that makes a threshold live: engine, book, audit event. Returns the record it replaced.

    ``by``: who made this change when it is not who chose the value (a rollback restores Dana's
    threshold by Erik's hand); the event names ``by``, the record keeps its author. ``live=False``
    records a version's threshold without running it (a calibration of the base heads while a trained
    version is deployed). Re-applying the live record is no change and logs nothing.
    """
    with book.lock if book is not None else contextlib.nullcontext():
        return _set_live(line, record, book, log_event, inspector, live, by)


def _set_live(line: str, record: ThresholdRecord, book: ThresholdBook | None, log_event: LogEvent,
              inspector: Inspector | None, live: bool, by: str) -> ThresholdRecord | None:
    old = book.live(line) if book is not None else None
    if inspector is not None and live:
        if old is None:  # nothing recorded yet: the engine's value is what ran
            old = ThresholdRecord(float(inspector.threshold), "engine", inspector.model_version, who="station")
        inspector.set_threshold(record.value)
    if not record.when:
        record = replace(record, when=now())
    previous = book.record(line, record.version) if book is not None and not live else old
    if book is not None:
        book.put(line, record, live=live)
    if record.same_choice(previous):
        return old
    was = f"{previous.value:.4f} ({previous.version}, {previous.method})" if previous else "none"
    scope = "live" if live else f"recorded for {record.version} (not live)"
    what = (f"line {line}: threshold {was} -> {record.value:.4f} ({record.version}, {record.method}) {scope}"
            f"{'; ' + record.why if record.why else ''}")
    log_event(EVENT_KIND, by or record.who, what[:500], previous.summary() if previous else "", record.summary())
    return old


def record_for(line: LineConfig, version: str, *, model_dir: Path, book: ThresholdBook | None,
               inspector: Inspector | None = None, who: str = "station", file_wins: bool = False) -> ThresholdRecord:
    """The record ``version`` runs with: :func:`threshold_for` fed from the registry and the engine."""
    from inspector.training.deploy import base_threshold, version_threshold
    from inspector.training.registry import ModelRegistry

    calibrated: float | None = None
    if version == BASE:
        if inspector is not None and inspector.calibration is not None:
            calibrated = float(inspector.calibration.threshold)
    else:
        try:
            calibrated = version_threshold(ModelRegistry(model_dir, line.name), version)
        except Exception:  # a damaged version: the swap itself reports it
            calibrated = None
    engine = None
    if inspector is not None:
        engine = base_threshold(inspector) if version == BASE else inspector.threshold
    record = threshold_for(line, version, book, calibrated, engine, file_wins=file_wins)
    if record.method == "version":  # the version's own threshold becomes live by its deployer's hand
        record = replace(record, who=who)
    elif record.method == "engine" and inspector is not None and inspector.calibration is not None:
        calib = inspector.calibration  # the fit's own calibration: say how sure it is
        record = replace(record, target=calib.expected_false_reject,
                         interval=calib.false_reject_interval)
    return record


def deploy_threshold(line: LineConfig, registry: ModelRegistry, version: str, *, book: ThresholdBook | None,
                     log_event: LogEvent, who: str, why: str = "",
                     inspector: Inspector | None = None) -> ThresholdRecord | None:
    """After a promotion / rollback to ``version``: its record becomes live through the one path.

    With an engine of that line, the engine swaps to ``version`` and its threshold in one step. With
    none (``inspector models`` on a stopped station), only the book changes; None when nothing is
    known yet (base heads never fitted: the next start settles them from the engine's calibration).
    """
    from inspector.training.deploy import apply_version

    record = record_for(line, version, model_dir=registry.root, book=book, inspector=inspector, who=who)
    if record.method in ("version", "engine") and why:
        record = replace(record, why=why)
    if inspector is not None:
        apply_version(inspector, registry, version, record.value)
    elif record.method == "engine":
        return None
    set_live_threshold(line.name, record, book=book, log_event=log_event, inspector=inspector, by=who)
    return record
