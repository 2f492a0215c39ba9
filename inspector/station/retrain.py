"""Retrain and model versions for the engineer's retrain panel, without Qt.

Two trainers behind one small protocol:

* :class:`PipelineTrainer` runs ``inspector.training.train_line`` (adapter training with Lightning,
  held-out validation, model registry, promotion gate) with ``promote=False``: a finished run is a
  registered *candidate*; the engineer approves it (``ModelRegistry.promote`` + ``apply_version``,
  a hot swap between two frames) or rolls back (``ModelRegistry.rollback``). Both are audit-logged
  through the station.
* :class:`RefitTrainer`, used only when ``inspector.training`` cannot be imported: a fresh fit of the
  line's few-shot heads from its sample folder on a second engine; approving swaps that engine in.

Either way the line keeps inspecting while the run works: training reads the running engine's
backbone (stateless forward passes) and never writes into the engine until approval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inspector.engine import FewShotSet, Inspector
from inspector.station.handle import StationHandle
from inspector.tuning.engineering import auroc, threshold_estimate

_logger = logging.getLogger(__name__)

BASE = "base"
# Share of the progress bar per pipeline stage (training dominates).
_STAGE_SPAN = {"load": (0.0, 0.04), "synthesize": (0.04, 0.1), "encode": (0.1, 0.35), "train": (0.35, 0.88),
               "evaluate": (0.88, 0.92), "gate": (0.92, 0.95), "register": (0.95, 0.98), "promote": (0.98, 0.99),
               "done": (1.0, 1.0)}


@dataclass(frozen=True)
class TrainEvent:
    """One progress report for the panel: ``fraction`` in [0, 1], the stage, metrics known so far."""

    stage: str
    fraction: float
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""


class Cancelled(Exception):
    """The engineer cancelled the run."""


@dataclass
class VersionRow:
    """A model version as the panel lists it."""

    version: str
    status: str  # active | candidate | retired | rejected
    created: str
    metrics: dict[str, float] = field(default_factory=dict)
    gate_refused: str = ""  # the gate's reasons when it refused this version


class ModelBook(Protocol):
    def rows(self) -> list[VersionRow]: ...

    def can_rollback(self) -> bool: ...

    def approve(self, handle: StationHandle, version: str, who: str, force: bool = False) -> None: ...

    def rollback(self, handle: StationHandle, who: str) -> str: ...


class Trainer(Protocol):
    name: str

    def run(self, handle: StationHandle, who: str, progress: Callable[[TrainEvent], None],
            cancel: threading.Event, max_epochs: int | None = None) -> str:
        """Train the current line; returns the candidate version's name."""

    def book(self, handle: StationHandle) -> ModelBook: ...


# ================================================================================== pipeline
def _version_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    new = metrics.get("new", {}) if isinstance(metrics, dict) else {}
    out: dict[str, float] = {}
    for key, name, scale in (("threshold", "threshold", 1.0), ("false_reject_rate", "false reject %", 100.0),
                             ("escape_rate", "escape %", 100.0), ("auroc", "AUROC", 1.0), ("f1", "F1", 1.0)):
        value = new.get(key)
        if isinstance(value, int | float) and np.isfinite(value):
            out[name] = float(value) * scale
    return out


class RegistryBook:
    """Versions of the line in ``inspector.training``'s registry (``<model_dir>/<line>/vN``)."""

    def __init__(self, handle: StationHandle) -> None:
        from inspector.training import ModelRegistry

        self.registry = ModelRegistry(handle.registry_dir, handle.line)

    def rows(self) -> list[VersionRow]:
        deployment = self.registry.deployment()
        stack = [str(v) for v in deployment.get("stack", [BASE])]
        rolled_back = {h.get("previous") for h in deployment.get("history", []) if h.get("action") == "rollback"}
        deployed = stack[-1]

        def status(name: str) -> str:
            if name == deployed:
                return "active"
            if name in stack:
                return "retired"
            return "rejected" if name in rolled_back else "candidate"

        rows = [VersionRow(BASE, status(BASE), "", {})]
        for info in self.registry.versions():
            gate = info.metrics.get("gate") or {}
            refused = "" if gate.get("passed", True) else "; ".join(gate.get("reasons", [])) or "gate refused"
            rows.append(VersionRow(info.version, status(info.version), info.created[:19].replace("T", " "),
                                   _version_metrics(info.metrics), refused))
        return rows

    def can_rollback(self) -> bool:
        return len(self.registry.deployment().get("stack", [])) >= 2

    def approve(self, handle: StationHandle, version: str, who: str, force: bool = False) -> None:
        from inspector.training import apply_version

        info = self.registry.get(version)
        gate = info.metrics.get("gate") or {}
        forced = not gate.get("passed", True)
        if forced and not force:
            msg = f"the promotion gate refused {version}: {'; '.join(gate.get('reasons', []))}"
            raise ValueError(msg)
        self.registry.promote(version, who=who, forced=forced, reason="approved in the station GUI" if forced else "",
                              gate=gate or None, audit=handle.log_event)
        inspector = handle.inspector
        if inspector is not None and inspector.line.name == self.registry.line:
            apply_version(inspector, self.registry, version)  # between two frames

    def rollback(self, handle: StationHandle, who: str) -> str:
        from inspector.training import apply_version

        _old, new = self.registry.rollback(who=who, reason="rolled back in the station GUI", audit=handle.log_event)
        inspector = handle.inspector
        if inspector is not None and inspector.line.name == self.registry.line:
            apply_version(inspector, self.registry, new)
        return new


class PipelineTrainer:
    """``inspector.training.train_line`` with GUI progress; registers a candidate, never deploys by itself."""

    name = "adapter training (inspector.training)"

    def run(self, handle: StationHandle, who: str, progress: Callable[[TrainEvent], None],
            cancel: threading.Event, max_epochs: int | None = None) -> str:
        from inspector.training import train_line

        spec = handle.line_config().training
        epochs = max_epochs or spec.max_epochs
        fits = len(spec.heads) * (spec.validation.folds + 1)  # an upper estimate of (head, fold) fits
        live: dict[str, float] = {}
        state = {"fraction": 0.0, "fits": 0, "last": None}

        def on_event(event: Any) -> None:
            lo, hi = _STAGE_SPAN.get(event.stage, (state["fraction"], state["fraction"]))
            if event.stage == "train":
                key = (event.head, event.fold)
                if key != state["last"]:
                    state["last"] = key
                    state["fits"] += 1
                within = (state["fits"] - 1 + (event.done / event.total if event.total else 0.0)) / max(fits, 1)
                frac = lo + (hi - lo) * min(within, 1.0)
            elif event.total:
                frac = lo + (hi - lo) * event.done / event.total
            else:
                frac = lo
            state["fraction"] = max(state["fraction"], frac)  # never moves back
            if event.head:  # per-head training figures; the run's own come with the final report
                for k, v in event.metrics.items():
                    live[f"{event.head} {k}"] = float(v)
            progress(TrainEvent(event.stage, state["fraction"], dict(live), event.message))

        report = train_line(handle.config, handle.line, inspector=handle.inspector, observers=[on_event],
                            cancel=cancel, max_epochs=epochs, promote=False, who=who, audit=handle.log_event,
                            model_dir=handle.registry_dir)
        if report.version is None:
            msg = "training finished without registering a version"
            raise RuntimeError(msg)
        final = {**live, **_version_metrics(report.metrics)}
        gate = "gate passed" if report.decision is None or report.decision.passed else (
            "gate refused: " + "; ".join(report.decision.reasons))
        progress(TrainEvent("done", 1.0, final, f"candidate {report.version} ({gate})"))
        return report.version

    def book(self, handle: StationHandle) -> ModelBook:
        return RegistryBook(handle)


# ================================================================================== refit fallback
@dataclass
class _Engine:
    version: str
    inspector: Inspector
    created: float
    metrics: dict[str, float]
    status: str = "candidate"


def _engine_metrics(engine: Inspector) -> dict[str, float]:
    est = threshold_estimate(engine.good_scores, engine.defect_scores, engine.threshold)
    metrics = {"threshold": float(engine.threshold)}
    if est.false_reject is not None:
        metrics["false reject %"] = 100.0 * est.false_reject
    if est.escape is not None:
        metrics["escape %"] = 100.0 * est.escape
    separation = auroc(engine.good_scores, engine.defect_scores)
    if separation is not None:
        metrics["AUROC"] = separation
    return metrics


class SessionBook:
    """Refit engines of this session: the one the station started with, candidates, retired ones."""

    def __init__(self) -> None:
        self.engines: list[_Engine] = []
        self._lock = threading.Lock()

    def seed(self, inspector: Inspector) -> None:
        with self._lock:
            if any(e.inspector is inspector for e in self.engines):
                return
            for e in self.engines:
                if e.status == "active":
                    e.status = "retired"
            self.engines.append(_Engine(inspector.model_version, inspector, time.time(), _engine_metrics(inspector),
                                        "active"))

    def add(self, engine: _Engine) -> None:
        with self._lock:
            self.engines.append(engine)

    def _find(self, version: str) -> _Engine:
        for e in self.engines:
            if e.version == version:
                return e
        msg = f"no version {version} in this session"
        raise ValueError(msg)

    def rows(self) -> list[VersionRow]:
        return [VersionRow(e.version, e.status, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created)),
                           e.metrics) for e in self.engines]

    def _active(self) -> _Engine | None:
        return next((e for e in reversed(self.engines) if e.status == "active"), None)

    def _previous(self) -> _Engine | None:
        return next((e for e in reversed(self.engines) if e.status == "retired"), None)

    def can_rollback(self) -> bool:
        return self._previous() is not None

    def approve(self, handle: StationHandle, version: str, who: str, force: bool = False) -> None:
        engine, old = self._find(version), self._active()
        handle.replace_engine(engine.inspector, who, "model_promote",
                              f"model {version} approved for line {engine.inspector.line.name}",
                              {"version": old.version if old else ""}, {"version": version, **engine.metrics})
        with self._lock:
            if old is not None:
                old.status = "retired"
            engine.status = "active"

    def rollback(self, handle: StationHandle, who: str) -> str:
        target, current = self._previous(), self._active()
        if target is None or current is None:
            msg = "no earlier version to roll back to"
            raise ValueError(msg)
        handle.replace_engine(target.inspector, who, "model_rollback",
                              f"model {current.version} rolled back to {target.version}",
                              {"version": current.version}, {"version": target.version})
        with self._lock:
            current.status = "rejected"
            target.status = "active"
            self.engines.remove(target)
            self.engines.append(target)
        return target.version


class RefitTrainer:
    """Re-fit the line's few-shot heads from its sample folder (see the module doc)."""

    name = "few-shot refit (inspector.training not available)"

    def __init__(self) -> None:
        self._books: dict[str, SessionBook] = {}

    def book(self, handle: StationHandle) -> ModelBook:
        book = self._books.setdefault(handle.line, SessionBook())
        if handle.inspector is not None:
            book.seed(handle.inspector)
        return book

    def run(self, handle: StationHandle, who: str, progress: Callable[[TrainEvent], None],
            cancel: threading.Event, max_epochs: int | None = None) -> str:
        t0 = time.perf_counter()
        line = handle.line_config()
        if line.fewshot.folder is None:
            msg = f"line {line.name} has no few-shot folder (fewshot.folder); capture samples first"
            raise ValueError(msg)
        folder = handle.config.resolve(line.fewshot.folder)

        def check() -> None:
            if cancel.is_set():
                raise Cancelled("retrain cancelled")

        progress(TrainEvent("load", 0.02, message=str(folder)))
        data = FewShotSet.from_folder(folder, line.fewshot.max_shots)
        n_def = sum(len(v) for v in data.defects.values())
        metrics = {"good samples": float(len(data.good)), "defect samples": float(n_def)}
        if len(data.good) < 2:
            msg = f"{folder}/good has {len(data.good)} readable image(s); capture at least 2 good parts"
            raise ValueError(msg)
        progress(TrainEvent("load", 0.15, dict(metrics), f"{len(data.good)} good, {n_def} defect"))
        check()
        engine = handle.build_engine(line)
        progress(TrainEvent("encode", 0.25, dict(metrics), "text prompts encoded"))
        check()
        report = engine.fit(data.good, data.defects)  # one call; the line keeps inspecting meanwhile
        check()
        progress(TrainEvent("train", 0.85, dict(metrics), f"heads fitted: {', '.join(report.heads)}"))
        metrics.update(_engine_metrics(engine))
        metrics["fit s"] = time.perf_counter() - t0
        version = f"fit-{time.strftime('%Y%m%d-%H%M%S')}"
        engine.model_version = version  # recorded with every part this engine inspects
        book = self._books.setdefault(handle.line, SessionBook())
        if handle.inspector is not None:
            book.seed(handle.inspector)
        book.add(_Engine(version, engine, time.time(), metrics))
        progress(TrainEvent("done", 1.0, dict(metrics), f"candidate {version}"))
        return version


def find_trainer() -> Trainer:
    """The adapter-training pipeline when ``inspector.training`` is importable, else the refit."""
    try:
        from inspector.training import train_line  # noqa: F401
    except Exception as exc:  # Lightning missing, module in progress: the refit still works
        _logger.warning("inspector.training unavailable (%s); retrain runs a few-shot refit", exc)
        return RefitTrainer()
    return PipelineTrainer()
