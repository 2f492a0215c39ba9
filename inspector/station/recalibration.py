"""Threshold proposals from production parts (``decision.recalibration``), kept beside the audit log.

The running station feeds every decided part to a :class:`ProductionSampler` (a sink of the loop,
stopped before the log closes, so a proposal made by the last part is still logged). Per line it
keeps the scores of the parts judged **OK with margin** (score below live threshold - margin;
never NG, never FAULT) under one model version and one live threshold; a change of either starts a
new sample. Every ``after_parts`` parts it re-estimates the good-score tail from that truncated
sample (:mod:`inspector.decision.recalibrate`) and, when the live threshold's estimated
false-reject interval misses the target, records a **proposal** (audit event
``threshold_proposal``). An engineer sees before / after and applies it (the one threshold path,
:func:`~inspector.station.threshold.set_live_threshold`, method ``production``) or dismisses it
(audit event ``threshold_proposal_dismissed``).

State lives in ``<log folder>/.threshold-proposals.json`` (sample and proposal per line), so a
restart goes on with the sample it had and an engineer's GUI sees what the running loop proposed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.decision.recalibrate import propose_threshold
from inspector.files import atomic_write_text
from inspector.station.threshold import now

if TYPE_CHECKING:
    from inspector.config import LineConfig
    from inspector.station.results import StationResult

_logger = logging.getLogger(__name__)

PROPOSALS_NAME = ".threshold-proposals.json"
EVENT_PROPOSED = "threshold_proposal"
EVENT_DISMISSED = "threshold_proposal_dismissed"
SAVE_EVERY = 50  # parts between writes of the sample (a crash loses at most this many scores)

LogEvent = Callable[..., None]


@dataclass(frozen=True)
class ThresholdProposal:
    """What the production parts say about a line's live threshold, and what to change it to."""

    line: str
    version: str
    live: float
    proposed: float
    target: float
    interval: tuple[float, float]  # expected false-reject rate of ``proposed`` (90 %)
    live_false_reject: float  # estimated false-reject rate of ``live`` today
    live_interval: tuple[float, float]
    parts: int  # parts inspected in the sample's span (every verdict)
    used: int  # of them judged OK with margin: the fit's data
    ng: int
    faults: int
    cutoff: float
    when: str
    status: str = "pending"  # pending | consistent (nothing to change) | applied | dismissed
    decided_by: str = ""
    decided_when: str = ""
    why: str = ""

    @property
    def actionable(self) -> bool:
        return self.status == "pending"

    def describe(self) -> str:
        """One line for people: before -> after."""
        now_text = (f"live {self.live:.4f} rejects ~{_pct(self.live_false_reject)} of good parts "
                    f"({_pct(self.live_interval[0])}-{_pct(self.live_interval[1])})")
        head = f"line {self.line} ({self.version}), {self.parts} parts, {self.used} OK with margin: {now_text}"
        if self.status == "consistent":
            return f"{head}; consistent with the target {_pct(self.target)}: no change proposed"
        return (f"{head} -> proposed {self.proposed:.4f} for {_pct(self.target)} "
                f"({_pct(self.interval[0])}-{_pct(self.interval[1])})")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"], data["live_interval"] = list(self.interval), list(self.live_interval)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ThresholdProposal:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("interval", "live_interval"):
            known[key] = tuple(float(v) for v in known[key])
        return cls(**known)


def _pct(value: float) -> str:
    return f"{100 * value:.2g} %" if value < 0.01 else f"{100 * value:.1f} %"


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


class ProposalBook:
    """Per line: the production sample and the latest proposal, in ``<folder>/.threshold-proposals.json``."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / PROPOSALS_NAME
        with _LOCKS_GUARD:  # the loop's sampler and the GUI's handle share the file within a process
            self.lock = _LOCKS.setdefault(str(self.path.resolve()), threading.RLock())

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"lines": {}}
        except (OSError, ValueError) as exc:
            _logger.error("%s unreadable (%s); threshold proposals start afresh", self.path, exc)
            return {"lines": {}}
        return data if isinstance(data.get("lines"), dict) else {"lines": {}}

    def update(self, line: str, **entries: Any) -> None:
        """Set entries (``sample``, ``proposal``) of ``line``, keeping the others."""
        with self.lock:
            data = self.read()
            data["lines"].setdefault(line, {}).update(entries)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data) + "\n")

    def proposal(self, line: str) -> ThresholdProposal | None:
        entry = self.read()["lines"].get(line, {}).get("proposal")
        try:
            return ThresholdProposal.from_json(entry) if entry else None
        except (KeyError, TypeError, ValueError):
            _logger.error("threshold proposal of line %s in %s is damaged; ignored", line, self.path)
            return None

    def decide(self, line: str, status: str, who: str, why: str) -> ThresholdProposal:
        """Mark the pending proposal of ``line`` applied or dismissed (an error when there is none)."""
        with self.lock:
            current = self.proposal(line)
            if current is None or not current.actionable:
                msg = f"line {line} has no pending threshold proposal"
                raise LookupError(msg)
            decided = replace(current, status=status, decided_by=who, decided_when=now(), why=why)
            self.update(line, proposal=decided.to_json())
            return decided


@dataclass
class _Sample:
    version: str
    threshold: float
    scores: deque[float]
    parts: int = 0  # since the last proposal (every verdict)
    used_total: int = 0
    ng: int = 0
    faults: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "threshold": self.threshold, "scores": [round(s, 6) for s in self.scores],
                "parts": self.parts, "used_total": self.used_total, "ng": self.ng, "faults": self.faults}


class ProductionSampler:
    """Observer of published parts: keeps each line's OK-with-margin scores and proposes thresholds."""

    def __init__(self, folder: Path, line_config: Callable[[str], LineConfig], log_event: LogEvent) -> None:
        self.book = ProposalBook(folder)
        self._line_config = line_config
        self._log_event = log_event
        self._samples: dict[str, _Sample] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        for line, entry in self.book.read()["lines"].items():
            data = entry.get("sample")
            try:
                window = self._line_config(line).decision.recalibration.window
                self._samples[line] = _Sample(str(data["version"]), float(data["threshold"]),
                                              deque((float(s) for s in data["scores"]), maxlen=window),
                                              int(data["parts"]), int(data["used_total"]), int(data["ng"]),
                                              int(data["faults"]))
            except (KeyError, TypeError, ValueError):
                continue  # no sample, a line no longer configured, or a damaged one: start afresh

    def __call__(self, sr: StationResult) -> None:
        with self._lock:
            self._observe(sr)

    def _observe(self, sr: StationResult) -> None:
        try:
            spec = self._line_config(sr.line).decision.recalibration
        except KeyError:
            return
        if spec.after_parts == 0:
            return
        sample = self._samples.get(sr.line)
        result = sr.result
        if result is None or sr.fault is not None:
            if sample is not None:
                sample.faults += 1
                sample.parts += 1
            return
        threshold = float(result.threshold)
        if sample is None or (sample.version, sample.threshold) != (sr.model.version, threshold):
            # Another model version or live threshold: another score scale / cutoff, another sample.
            sample = self._samples[sr.line] = _Sample(sr.model.version, threshold, deque(maxlen=spec.window))
        sample.parts += 1
        if result.verdict != "OK":
            sample.ng += 1
        elif result.score < threshold - spec.margin:
            sample.scores.append(float(result.score))
            sample.used_total += 1
        if sample.parts >= spec.after_parts:
            self._propose(sr.line, sample, spec.margin)
            sample.parts = sample.ng = sample.faults = 0
            self.book.update(sr.line, sample=sample.to_json())
        elif sample.parts % SAVE_EVERY == 0:
            self.book.update(sr.line, sample=sample.to_json())

    def flush(self) -> None:
        """Write every line's sample (at stop)."""
        with self._lock:
            for line, sample in self._samples.items():
                self.book.update(line, sample=sample.to_json())

    def _propose(self, line: str, sample: _Sample, margin: float) -> None:
        import numpy as np

        target = self._line_config(line).decision.calibration.target_false_reject
        cutoff = sample.threshold - margin
        try:
            est = propose_threshold(np.asarray(sample.scores), cutoff, target, sample.threshold)
        except ValueError as exc:
            _logger.warning("line %s: no threshold proposal after %d parts: %s", line, sample.parts, exc)
            return
        calib = est.calibration
        lo, hi = est.live_interval
        consistent = lo <= target <= hi
        proposal = ThresholdProposal(
            line, sample.version, sample.threshold, calib.threshold, target, calib.false_reject_interval or (0.0, 1.0),
            est.live_false_reject, est.live_interval, sample.parts, len(sample.scores), sample.ng, sample.faults,
            cutoff, now(), status="consistent" if consistent else "pending")
        self.book.update(line, proposal=proposal.to_json())
        _logger.info("production check: %s", proposal.describe())
        if not consistent:
            with contextlib.suppress(Exception):  # the log being down must not stop the sampler
                self._log_event(EVENT_PROPOSED, "station", proposal.describe()[:500], "", proposal.to_json())
