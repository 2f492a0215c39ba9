"""Retrain one line: data -> views -> features -> heads -> held-out validation -> registry -> gate -> promotion.

:func:`train_line` is the one entry point (CLI, GUI, scripts); the steps of a run are
:class:`inspector.training.steps.LineTraining`, its records :mod:`inspector.training.records`. It never
touches the deployed model until the very end: a run that is cancelled, diverges or fails registers nothing and the
line keeps what it runs. A finished run always registers its version (with metrics and model
card); it is deployed only when the gate passes (or the engineer forces it, which is logged),
and when the caller passes the running engine the swap happens in it between two frames.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from inspector.config import LineConfig, StationConfig
from inspector.training.deploy import apply_version
from inspector.training.errors import InsufficientDataError, TrainingCancelledError, TrainingDivergedError
from inspector.training.gate import GateDecision, decide
from inspector.training.progress import CancelToken, Emitter, Observer, TrainingEvent
from inspector.training.records import card_record, metrics_record
from inspector.training.registry import AuditHook, current_user
from inspector.training.steps import LineTraining, global_rank

if TYPE_CHECKING:
    from inspector.engine import Inspector

_logger = logging.getLogger(__name__)


@dataclass
class TrainingReport:
    """What a run did: the registered version, whether it was deployed, and the evidence."""

    line: str
    version: str | None
    promoted: bool
    forced: bool
    decision: GateDecision | None
    deployed_before: str
    deployed_after: str
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict[str, float] = field(default_factory=dict)
    path: Path | None = None

    @property
    def summary(self) -> str:
        if self.version is None:
            return f"line {self.line}: nothing registered"
        new = self.metrics.get("new", {})
        text = (f"line {self.line}: {self.version} registered (AUROC {new.get('auroc', float('nan')):.3f}, "
                f"F1 {new.get('f1', float('nan')):.3f})")
        if self.promoted:
            return text + f", deployed{' (FORCED)' if self.forced else ''} (was {self.deployed_before})"
        if self.decision is not None and not self.decision.passed:
            return text + f"; gate refused it, {self.deployed_after} stays: " + "; ".join(self.decision.reasons)
        return text + f"; not deployed, {self.deployed_after} stays"



def _stopper(cancel: CancelToken | threading.Event | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, CancelToken):
        return lambda: cancel.cancelled
    return cancel.is_set


@contextlib.contextmanager
def _training_scope() -> Iterator[None]:
    """Lightning's deterministic mode is process-wide: give the station its own setting back."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def build_inspector(station: StationConfig, line: LineConfig) -> Inspector:
    """A fresh (unfitted) engine of the line: backbone, text embeddings (cached), extractor."""
    from inspector.backbone.loading import load_backbone
    from inspector.engine import Inspector
    from inspector.text.embeddings import TextEmbeddingCache

    backbone = load_backbone(line.model, station.resolve(station.model_dir))
    return Inspector(line, backbone, TextEmbeddingCache(station.resolve(station.cache_dir)))


def train_line(
    station: StationConfig,
    line_name: str | None = None,
    *,
    inspector: Inspector | None = None,
    observers: Sequence[Observer] = (),
    cancel: CancelToken | threading.Event | None = None,
    max_epochs: int | None = None,
    promote: bool | None = None,
    force: bool = False,
    who: str | None = None,
    reason: str = "",
    audit: AuditHook | None = None,
    model_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> TrainingReport:
    """Retrain a line's adapter, register the version, gate it, and deploy it if allowed.

    ``inspector``: the running engine of this line; its backbone is reused and a promoted version
    is hot-swapped into it between two frames. Without it a fresh engine is loaded.
    ``promote``: None follows ``training.auto_promote``. ``force`` deploys even when the gate
    refuses (logged, with ``who`` and ``reason``). ``cancel`` stops the run at its next check.
    Raises InsufficientDataError, TrainingCancelledError, TrainingDivergedError (nothing registered).
    """
    t_start = time.perf_counter()
    line = station.line(line_name)
    spec = line.training
    if max_epochs is not None:
        if max_epochs < 1:
            msg = f"max_epochs must be at least 1, got {max_epochs}"
            raise InsufficientDataError(msg)
        spec = spec.model_copy(update={"max_epochs": int(max_epochs)})
    if inspector is not None and inspector.line.name != line.name:
        msg = f"the engine given runs line {inspector.line.name}, not {line.name}"
        raise ValueError(msg)
    who = who or current_user()
    emit = Emitter(list(observers))
    should_stop = _stopper(cancel)
    model_dir = model_dir or station.resolve(station.model_dir)
    cache_dir = cache_dir or station.resolve(station.cache_dir) / "features"
    run = LineTraining(station, line, spec, inspector, emit, should_stop, model_dir, cache_dir)
    deployed_before = run.registry.deployed()
    try:
        with _training_scope():
            t0 = time.perf_counter()
            run.load()
            run.split()
            t0 = run.lap("data", t0)
            if run.inspector is None:
                emit(TrainingEvent("load", f"loading backbone {line.model.name} ..."))
                run.inspector = build_inspector(station, line)
                run.lap("backbone", t0)
            run.check()
            run.prepare_views()
            run.encode()
            run.check()
            from inspector.training.lightning import torch_threads

            with torch_threads(spec.threads):  # small models: see training.threads
                run.train()
                run.assemble()
    except TrainingDivergedError as exc:
        emit(TrainingEvent("done", f"diverged: {exc}"))
        msg = f"{exc}. Nothing was registered; line {line.name} keeps {deployed_before}."
        raise TrainingDivergedError(msg) from None
    except TrainingCancelledError:
        emit(TrainingEvent("done", "cancelled; nothing was registered"))
        raise
    finally:
        with contextlib.suppress(OSError):
            run.prune_runs()

    decision = decide(run.metrics_new, run.metrics_reference, spec.gate, run.deployed_name)
    if global_rank() != 0:  # DDP: the other ranks trained in step with rank 0, which registers
        return TrainingReport(line.name, None, False, False, decision, deployed_before, deployed_before,
                              metrics_record(run, decision), list(run.data.skipped), dict(run.timings))
    emit(TrainingEvent("gate", "gate passed" if decision.passed else "gate refused: " + "; ".join(decision.reasons),
                       metrics={"auroc": run.metrics_new.auroc, "f1": run.metrics_new.f1}))
    run.timings["total_before_register"] = time.perf_counter() - t_start
    t0 = time.perf_counter()
    info = run.registry.register(run.stack, metrics_record(run, decision), card_record(run, who))
    run.registry.save_split_record(run.split_record)
    run.lap("register", t0)
    emit(TrainingEvent("register", f"registered {info.version} at {info.path}", data={"version": info.version}))

    want = spec.auto_promote if promote is None else promote
    promoted = forced = False
    if want and (decision.passed or force):
        forced = not decision.passed
        run.registry.promote(info.version, who=who, forced=forced, reason=reason, gate=decision.to_dict(), audit=audit)
        promoted = True
        if inspector is not None:
            apply_version(inspector, run.registry, info.version)
        emit(TrainingEvent("promote", f"{info.version} deployed{' (forced)' if forced else ''}",
                           data={"version": info.version, "forced": forced}))
    run.timings["total"] = time.perf_counter() - t_start
    report = TrainingReport(line.name, info.version, promoted, forced, decision, deployed_before,
                            run.registry.deployed(), metrics_record(run, decision), list(run.data.skipped),
                            dict(run.timings), {"hits": run.cache.stats.hits, "encoded": run.cache.stats.encoded},
                            info.path)
    emit(TrainingEvent("done", report.summary, data={"version": info.version, "promoted": promoted}))
    return report
