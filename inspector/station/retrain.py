"""Retrain and model versions for the engineer's retrain panel, without Qt.

:class:`PipelineTrainer` runs :func:`inspector.training.train_line` (adapter training with Lightning,
held-out validation, model registry, promotion gate) with ``promote=False``: a finished run is a
registered *candidate*. :class:`RegistryBook` lists the line's versions; the engineer approves one
(``ModelRegistry.promote``, then a hot swap between two frames) or rolls back
(``ModelRegistry.rollback``): the version and its live threshold change in one step through
``StationHandle.deploy_threshold`` (station/threshold.py, the one path). All audit-logged.

The line keeps inspecting while the run works: training reads the running engine's backbone
(stateless forward passes) and never writes into the engine until approval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspector.station.handle import StationHandle
from inspector.station.threshold import ThresholdRecord
from inspector.training import ModelRegistry, train_line
from inspector.training.registry import BASE

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


@dataclass
class VersionRow:
    """A model version as the panel lists it."""

    version: str
    status: str  # active | candidate | retired | rejected
    created: str
    metrics: dict[str, float] = field(default_factory=dict)
    gate_refused: str = ""  # the gate's reasons when it refused this version
    # The metrics record's held-out arms as written: "new" (this version), "base", "deployed" (with its
    # "version"): each judged on this version's held-out parts. Empty for base.
    heldout: dict[str, dict[str, Any]] = field(default_factory=dict)


# Confusion rows of the approval screen (NG = positive), in the words of the line.
COUNT_ROWS = (("tn", "good judged OK"), ("fp", "good judged NG (false rejects)"), ("tp", "defect judged NG"),
              ("fn", "defect judged OK (escapes)"))
NOT_RECORDED = "not recorded"


def _arm(host: VersionRow, version: str) -> dict[str, Any] | None:
    """``version``'s held-out figures as judged on ``host``'s held-out parts, when ``host``'s record has them."""
    if version == host.version:
        return host.heldout.get("new")
    deployed = host.heldout.get("deployed")
    if isinstance(deployed, dict) and deployed.get("version") == version:
        return deployed
    return host.heldout.get("base") if version == BASE else None


def heldout_pair(now: VersionRow | None, after: VersionRow | None) -> tuple[dict | None, dict | None, str]:
    """Held-out figures of ``now`` and ``after`` for the side-by-side, and whose parts they were counted on.

    Preferably both on the *same* parts (the gate's comparison: a record judges the version that was
    deployed when it was trained, and the base heads, on its own held-out parts); else each on its own.
    """
    for host in (after, now):
        if host is None or now is None or after is None:
            continue
        a, b = _arm(host, now.version), _arm(host, after.version)
        if a is not None and b is not None:
            return a, b, f"{host.version}'s held-out parts"
    return (_arm(now, now.version) if now else None, _arm(after, after.version) if after else None,
            "each version's own held-out parts")


def _threshold_text(record: ThresholdRecord | None) -> str:
    """The value and where it comes from; a version's own calibration is not yet anyone's act (no by / when)."""
    if record is None:
        return "-"
    source = record.source()
    if record.method in ("version", "engine"):
        source = source.split(", by ")[0]
    return f"{record.value:.4g} ({source})"


def approval_rows(now: VersionRow | None, after: VersionRow | None, live_now: float | None,
                  live_after: ThresholdRecord | None) -> tuple[list[tuple[str, str, str]], str]:
    """(what, running now, after the change) rows for an approve / roll back, and a note saying what they are.

    The live thresholds, AUROC and the rates at the operating threshold, then the confusion counts on the
    held-out parts ("not recorded" for versions registered before the counts were kept, and for the base
    heads unless a record judged them).
    """
    a, b, where = heldout_pair(now, after)

    def metric(arm: dict | None, row: VersionRow | None, key: str) -> str:
        # From the same record as the counts (so base, judged on a candidate's parts, has its figures too).
        value = _version_metrics({"new": arm}).get(key) if arm is not None else None
        if value is None and row is not None:
            value = row.metrics.get(key)
        return "-" if value is None else f"{value:.3g}"

    rows = [("version", now.version if now else "-", after.version if after else "-"),
            ("live threshold", "-" if live_now is None else f"{live_now:.4g}", _threshold_text(live_after))]
    rows += [(key, metric(a, now, key), metric(b, after, key)) for key in ("AUROC", "false reject %", "escape %")]

    def parts(arm: dict | None) -> str:
        if arm is None or "n_good" not in arm:
            return NOT_RECORDED
        return f"{arm['n_good']} good / {arm['n_defect']} defect"

    def count(arm: dict | None, key: str) -> str:
        value = arm.get(key) if arm is not None else None
        return NOT_RECORDED if value is None else str(int(value))

    rows.append(("held-out parts", parts(a), parts(b)))
    rows += [(label, count(a, key), count(b, key)) for key, label in COUNT_ROWS]
    note = (f"Counts on {where}, each judged at the operating threshold its validation fold set on other "
            "parts (the calibration that sets a version's live threshold), so they match the false reject "
            "and escape rates.")
    return rows, note


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
            arms = {k: v for k in ("new", "base", "deployed") if isinstance(v := info.metrics.get(k), dict)}
            rows.append(VersionRow(info.version, status(info.version), info.created[:19].replace("T", " "),
                                   _version_metrics(info.metrics), refused, arms))
        return rows

    def can_rollback(self) -> bool:
        return len(self.registry.deployment().get("stack", [])) >= 2

    def approve(self, handle: StationHandle, version: str, who: str, force: bool = False, reason: str = "") -> None:
        info = self.registry.get(version)
        gate = info.metrics.get("gate") or {}
        forced = not gate.get("passed", True)
        if forced and not force:
            msg = f"the promotion gate refused {version}: {'; '.join(gate.get('reasons', []))}"
            raise ValueError(msg)
        old = self.registry.promote(version, who=who, forced=forced,
                                    reason=reason or ("approved in the station GUI" if forced else ""),
                                    gate=gate or None, audit=handle.log_event)
        handle.deploy_threshold(self.registry, version, who, f"model {old} -> {version} approved")

    def rollback(self, handle: StationHandle, who: str, reason: str = "") -> str:
        old, new = self.registry.rollback(who=who, reason=reason or "rolled back in the station GUI",
                                          audit=handle.log_event)
        handle.deploy_threshold(self.registry, new, who, f"model {old} rolled back to {new}")
        return new


class PipelineTrainer:
    """``inspector.training.train_line`` with GUI progress; registers a candidate, never deploys by itself."""

    name = "adapter training (inspector.training)"

    def run(self, handle: StationHandle, who: str, progress: Callable[[TrainEvent], None],
            cancel: threading.Event, max_epochs: int | None = None) -> str:
        """Train the current line; returns the candidate version's name."""
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

    def book(self, handle: StationHandle) -> RegistryBook:
        return RegistryBook(handle)
