"""Retrain and model versions for the engineer's retrain panel, without Qt.

``inspector.training`` (adapter training, model registry) is being built; until it offers a public
``train_line`` with a progress callback and a registry, the panel runs :class:`RefitTrainer`: a fresh
fit of the line's few-shot heads (references, probe, fusion statistics, calibration) from the current
sample folder, on a new engine that shares the loaded backbone, while the line keeps inspecting with
the old one. A finished fit is a *candidate*; approving swaps it in between two frames' worth of
downtime (:meth:`gui.station.StationHandle.replace_engine`), rolling back re-installs the previous one.
Both are written to the audit log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from gui.engineering import auroc, threshold_estimate
from gui.station import StationHandle
from inspector.engine import FewShotSet, Inspector


@dataclass(frozen=True)
class TrainEvent:
    """One progress report: ``fraction`` in [0, 1], the stage, and metrics known so far."""

    stage: str
    fraction: float
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""


class Cancelled(Exception):
    """The engineer cancelled the run."""


Status = Literal["candidate", "active", "retired", "rejected"]


@dataclass
class ModelVersion:
    version: str
    inspector: Inspector
    created: float
    metrics: dict[str, float]
    status: Status = "candidate"
    note: str = ""


class Trainer(Protocol):
    name: str

    def run(self, handle: StationHandle, progress: Callable[[TrainEvent], None],
            cancel: threading.Event) -> ModelVersion: ...


class RefitTrainer:
    """Re-fit the line's few-shot heads from its sample folder (see the module doc)."""

    name = "few-shot refit"

    def run(self, handle: StationHandle, progress: Callable[[TrainEvent], None],
            cancel: threading.Event) -> ModelVersion:
        t0 = time.perf_counter()
        line = handle.line_config()
        if line.fewshot.folder is None:
            msg = f"line {line.name} has no few-shot folder (fewshot.folder); capture samples first"
            raise ValueError(msg)
        folder = handle.config.resolve(line.fewshot.folder)

        def check() -> None:
            if cancel.is_set():
                raise Cancelled("retrain cancelled")

        progress(TrainEvent("reading samples", 0.02, message=str(folder)))
        data = FewShotSet.from_folder(folder, line.fewshot.max_shots)
        n_def = sum(len(v) for v in data.defects.values())
        metrics = {"good samples": float(len(data.good)), "defect samples": float(n_def)}
        if len(data.good) < 2:
            msg = f"{folder}/good has {len(data.good)} readable image(s); capture at least 2 good parts"
            raise ValueError(msg)
        progress(TrainEvent("reading samples", 0.15, dict(metrics), f"{len(data.good)} good, {n_def} defect"))
        check()
        engine = handle.build_engine(line)
        progress(TrainEvent("text prompts encoded", 0.25, dict(metrics)))
        check()
        # The fit is one call; the line keeps inspecting meanwhile (it only shares the read-only backbone).
        report = engine.fit(data.good, data.defects)
        check()
        progress(TrainEvent("heads fitted", 0.85, dict(metrics), f"heads: {', '.join(report.heads)}"))
        est = threshold_estimate(engine.good_scores, engine.defect_scores, engine.threshold)
        metrics["threshold"] = float(engine.threshold)
        if est.false_reject is not None:
            metrics["false reject %"] = 100.0 * est.false_reject
        if est.escape is not None:
            metrics["escape %"] = 100.0 * est.escape
        separation = auroc(engine.good_scores, engine.defect_scores)
        if separation is not None:
            metrics["AUROC"] = separation
        metrics["fit s"] = time.perf_counter() - t0
        version = f"fit-{time.strftime('%Y%m%d-%H%M%S')}"
        engine.model_version = version  # recorded with every part inspected by this engine
        progress(TrainEvent("validated", 1.0, dict(metrics), f"candidate {version}"))
        return ModelVersion(version, engine, time.time(), metrics)


def find_trainer() -> Trainer:
    """The trainer the panel runs (the refit until inspector.training offers a pipeline; see the module doc)."""
    return RefitTrainer()


class VersionBook:
    """Versions of the current line seen in this session: the active one, candidates, retired ones."""

    def __init__(self) -> None:
        self.versions: list[ModelVersion] = []
        self._lock = threading.Lock()

    def seed(self, inspector: Inspector) -> None:
        """Record the engine the station started with as the active version."""
        with self._lock:
            if any(v.inspector is inspector for v in self.versions):
                return
            for v in self.versions:
                if v.status == "active":
                    v.status = "retired"
            est = threshold_estimate(inspector.good_scores, inspector.defect_scores, inspector.threshold)
            metrics = {"threshold": float(inspector.threshold)}
            if est.false_reject is not None:
                metrics["false reject %"] = 100.0 * est.false_reject
            if est.escape is not None:
                metrics["escape %"] = 100.0 * est.escape
            self.versions.append(ModelVersion(inspector.model_version, inspector, time.time(), metrics, "active",
                                              "at start"))

    def add(self, version: ModelVersion) -> None:
        with self._lock:
            self.versions.append(version)

    @property
    def active(self) -> ModelVersion | None:
        return next((v for v in reversed(self.versions) if v.status == "active"), None)

    def previous(self) -> ModelVersion | None:
        """The version that was active before the current one (the rollback target)."""
        return next((v for v in reversed(self.versions) if v.status == "retired"), None)

    def approve(self, handle: StationHandle, version: ModelVersion, who: str) -> None:
        old = self.active
        handle.replace_engine(version.inspector, who, "model_promote",
                              f"model {version.version} approved for line {version.inspector.line.name}",
                              {"version": old.version if old else ""}, {"version": version.version,
                                                                       **_rounded(version.metrics)})
        with self._lock:
            if old is not None:
                old.status = "retired"
            version.status = "active"

    def rollback(self, handle: StationHandle, who: str) -> ModelVersion:
        target, current = self.previous(), self.active
        if target is None or current is None:
            msg = "no earlier version to roll back to"
            raise ValueError(msg)
        handle.replace_engine(target.inspector, who, "model_rollback",
                              f"model {current.version} rolled back to {target.version}",
                              {"version": current.version}, {"version": target.version})
        with self._lock:
            current.status = "rejected"
            target.status = "active"
            # Keep the order meaningful: the re-activated version moves to the end.
            self.versions.remove(target)
            self.versions.append(target)
        return target


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items() if np.isfinite(v)}
